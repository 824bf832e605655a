"""The results view (v): real jobs run to their end on the emulator, then the dashboard opened
on them shows each period's mosaic with its tiles and a quicklook that is a picture, a table
job's row count and first rows, and what an unfinished session still misses."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot

from core.engine.runner import run_session
from core.store import Store
from tests.assembly.conftest import MEMORY_LIMIT, make_job, make_session
from tests.engine.conftest import emulator_with
from tests.tui.test_app import ready, wait_for
from tui.app import EEBatchApp
from tui.screens.results import ResultsScreen
from tui.widgets.quicklook import Quicklook

HERE = Path(__file__).parent
MONTHS = {"start": "2023-06-01", "end": "2023-08-01", "step": "1 month"}


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """Two months of ten 1° tiles whose southern ones split, run to the end: (session, out)."""
    tmp = tmp_path_factory.mktemp("results-image")
    mp = pytest.MonkeyPatch()
    mp.setenv("EEBATCH_HOME", str(tmp / "home"))
    try:
        with emulator_with(memory_limit_pixels=MEMORY_LIMIT) as emu:
            store = make_session(make_job(tmp, emu.url, time=MONTHS))
            assert run_session(store.path).ok
            path = store.path
            store.close()
        yield path, tmp / "out"
    finally:
        mp.undo()


def tile_counts(session: Path, period: str) -> tuple[int, int]:
    """(whole tiles, split parts) the store has done in a period."""
    store = Store(session)
    try:
        units = [u for u in store.units() if u["period"] == period and u["state"] == "done"]
    finally:
        store.close()
    return sum(u["depth"] == 0 for u in units), sum(u["depth"] > 0 for u in units)


async def open_results(pilot: Pilot[object]) -> ResultsScreen:
    await ready(pilot)
    await pilot.press("v")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ResultsScreen)
                   and pilot.app.screen.loads, "showing the results")
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, ResultsScreen)
    return screen


async def test_each_periods_mosaic_with_its_tiles_and_a_quicklook_that_is_a_picture(
        image_run: tuple[Path, Path]) -> None:
    session, out = image_run
    app = EEBatchApp(session, poll_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_results(pilot)
        text = "\n".join(screen.lines)
        for period, folder in (("2023-06-01", "20230601"), ("2023-07-01", "20230701")):
            assert f"{period}  mosaic  {out / folder / 'mosaic.vrt'}" in text, text
        # the northern tiles whole, the southern ones split in four parts
        whole, parts = tile_counts(session, "20230601")
        assert parts and whole, (whole, parts)
        assert text.count(f"{whole} tiles and {parts} split parts · 56×") == 2, text
        assert "still missing" not in text and "no product yet" not in text
        pictures = screen.query(Quicklook)
        assert len(pictures) == 2
        first = pictures.first()
        assert 0 < first.size.width <= 76 and first.size.height > 3  # fits 80 columns
        colours = first.colours()
        assert len(colours) > 20, colours  # a picture, not a blank or one colour
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ResultsScreen)


async def test_an_unfinished_period_is_listed_as_missing(image_run: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    session, _ = image_run
    copy = tmp_path / session.name  # the shared run stays as it is
    shutil.copy(session, copy)
    store = Store(copy)
    july = [u for u in store.units() if u["period"] == "20230701"]
    tiles = sorted({u["tile"] for u in july if u["depth"] == 0})
    whole = [u["tile"] for u in july if u["depth"] == 0 and u["state"] == "done"][:2]
    split = next(u["tile"] for u in july if u["depth"] == 0 and u["state"] == "split")
    with store.tx() as conn:  # three tiles of July (one split) back to be done again
        for u in july:
            if u["tile"] in whole or u["tile"].startswith(split + "."):
                conn.execute("UPDATE units SET state = 'pending' WHERE id = ?", (u["id"],))
    store.close()
    app = EEBatchApp(copy, poll_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_results(pilot)
        text = "\n".join(screen.lines)
        assert (f"2023-07-01: {len(tiles) - 3} of {len(tiles)} tiles done, mosaic after the "
                "rest") in text, text
        assert "2023-06-01  mosaic" in text  # the finished month still shows its mosaic


async def test_nothing_assembled_yet_says_so_and_what_is_missing(tmp_path: Path) -> None:
    store = make_session(make_job(tmp_path, "http://127.0.0.1:9", time=MONTHS))
    app = EEBatchApp(store.path, poll_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_results(pilot)
        assert screen.lines[0] == ("no product yet: the mosaic of each period is assembled "
                                   "when its tiles are done")
        assert "2023-06-01: 0 of 11 tiles done, mosaic after the rest" in screen.lines
        assert "2023-07-01: 0 of 11 tiles done, mosaic after the rest" in screen.lines
        assert not screen.query(Quicklook)
    store.close()


async def test_a_table_jobs_row_count_and_first_rows(tmp_path: Path) -> None:
    shutil.copy(HERE.parent / "assembly" / "table_recipes.py", tmp_path)
    with emulator_with() as emu:
        store = make_session(make_job(
            tmp_path, emu.url, region={"bbox": [0.2, 40.0, 1.8, 40.5]}, time=MONTHS,
            recipe={"name": "python", "kind": "table", "function": "table_recipes:features"}))
        assert run_session(store.path).ok
    app = EEBatchApp(store.path, poll_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_results(pilot)
        out = tmp_path / "out"
        assert screen.lines[0] == f"table  {out / 'table.csv'} and table.parquet"
        assert screen.lines[1].startswith("12 rows · "), screen.lines
        assert "from 4 files · first 5" in screen.lines[1]
        table = screen.query_one("DataTable")
        assert table.row_count == 5  # type: ignore[attr-defined]
        header = screen.lines[2].split()
        assert header[:3] == ["unit", "tile", "period"] and "label" in header
        assert screen.lines[3].split()[2] == "20230601"  # a first row, with its period
        assert "f0" in screen.lines[3].split() and "f1" in screen.lines[4].split()
        assert not screen.query(Quicklook)
    store.close()


async def test_the_palette_opens_the_results(image_run: tuple[Path, Path]) -> None:
    session, _ = image_run
    app = EEBatchApp(session, poll_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Results")
        await wait_for(pilot, lambda: "Results" in str(
            [str(o.prompt) for o in app.screen.query("CommandList").first().options]  # type: ignore[attr-defined]
            if app.screen.query("CommandList") else ""), "offering Results")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen)
                       and app.screen.loads, "showing the results")


async def test_under_no_color_the_quicklook_is_grey_and_says_why(
        image_run: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    session, _ = image_run
    monkeypatch.setenv("NO_COLOR", "1")
    app = EEBatchApp(session, poll_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.no_color
        screen = await open_results(pilot)
        assert screen.lines.count("(grey: NO_COLOR is set)") == 2
        assert len(screen.query(Quicklook)) == 2
