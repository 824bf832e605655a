"""A job with [batches] on the dashboard: each batch of a tile and period is a unit of its own,
and the map, the tile's line, its details and `f` show them all, so a failed batch is never
hidden by a done one; and the job form writes a [batches] section that parses."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import Select, Static

from core.batches import BatchSpec
from core.grid import child_id
from core.periods import Period, unit_id
from core.session import create_session
from core.spec import parse_spec
from core.store import Store
from tests.jobs import job_text
from tests.tui.fixtures import T0, set_state
from tests.tui.test_app import ready
from tests.tui.test_job import problem, session_created, settle, type_into
from tui.app import EEBatchApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.details import DetailsScreen
from tui.widgets.common import CODE
from tui.widgets.job_form import BATCH_KEYS, JobForm, field_id
from tui.widgets.tile_map import TileMap
from tui.widgets.tiles_pane import batch_states

ERROR = "Image.load: Image asset 'COPERNICUS/S2_SR' has no image at offset 10."
BATCHES = '\n[batches]\nby = "count"\nsize = 10\ncount = 2\n'


def batch_session(directory: Path, *, months: int = 1) -> Store:
    """4 tiles x `months` periods x 2 batches, every unit pending."""
    job = directory / "batched.toml"
    time = ({"start": dt.date(2023, 6, 1), "end": dt.date(2023, 6 + months, 1),
             "step": "1 month"} if months > 1 else None)
    job.write_text(job_text("batched", region={"bbox": [-124, 33, -122, 35]},
                            grid={"size": 1}, time=time,
                            limits={"max_tasks": 6, "drive_budget": "5 GB"},
                            emulator="http://127.0.0.1:8787") + BATCHES, encoding="utf-8")
    store, plan = create_session(job)
    assert plan.units == 4 * months * 2
    store.conn.execute("UPDATE units SET updated = ?", (T0 - 1000,))
    return store


def split_batch(store: Store, unit: str, *, ts: float, states: tuple[str, ...]) -> None:
    """Replace a batch's unit by its four children in these states, as the worker does
    (core/engine/monitor.py): each child keeps its parent's batch and period."""
    with store.tx() as conn:
        u = conn.execute("SELECT * FROM units WHERE id = ?", (unit,)).fetchone()
        conn.execute("UPDATE units SET state = 'split', updated = ? WHERE id = ?", (ts, unit))
        w, s, e, n = u["west"], u["south"], u["east"], u["north"]
        mx, my = (w + e) / 2, (s + n) / 2
        quads = [(w, my, mx, n), (mx, my, e, n), (w, s, mx, my), (mx, s, e, my)]
        for q, (bounds, state) in enumerate(zip(quads, states, strict=True)):
            tile = child_id(u["tile"], q)
            conn.execute(
                "INSERT INTO units (id, tile, row, col, depth, parent, period, start, end, west,"
                " south, east, north, est_pixels, est_bytes, state, error, updated, batch)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (unit_id(tile, Period(u["period"], None, None), u["batch"]), tile, u["row"],
                 u["col"], u["depth"] + 1, unit, u["period"], u["start"], u["end"], *bounds,
                 u["est_pixels"] // 4, u["est_bytes"] // 4, state,
                 ERROR if state == "failed" else None, ts, u["batch"]))


def tiles(store: Store) -> list[str]:
    return sorted({r["tile"] for r in store.units() if r["depth"] == 0})


def drawn(tile_map: TileMap, tile: str) -> str:
    """The characters the map draws for a tile (at the current zoom and period)."""
    model = tile_map.model
    assert model is not None
    i = model.tile_ids.index(tile)
    old = tile_map.cursor
    tile_map.cursor = (int(model.r[i]), int(model.c[i]))
    x0, x1, y0, y1 = tile_map.cursor_cell()
    tile_map.cursor = old
    return "".join(tile_map._line(y).text[x0:x1] for y in range(y0, y1))


async def cursor_to(pilot: Pilot[object], tile_map: TileMap, tile: str) -> None:
    model = tile_map.model
    assert model is not None
    i = model.tile_ids.index(tile)
    tile_map.focus()
    tile_map.set_cursor(int(model.r[i]), int(model.c[i]))
    await pilot.pause()


def tile_line(app: EEBatchApp) -> str:
    return str(app.query_one("#tile-line", Static).render())


def test_many_batches_read_in_a_few_words() -> None:
    """Runs of neighbours in one state; past four runs, counts and the failed ones named."""
    assert batch_states({0: "done", 1: "done", 2: "failed", 3: "done"}) == (
        "b0-b1 done, b2 failed, b3 done")
    many = {b: "failed" if b in (7, 19, 30, 31) else "done" for b in range(40)}
    assert batch_states(many) == "40 batches: 36 done, 4 failed (b7, b19, b30, …)"


async def test_a_failed_later_batch_shows_on_the_map_the_line_and_the_details(
        tmp_path: Path) -> None:
    """Tile a: b0 done, b1 failed; tile b: b0 failed, b1 done. Both are failed on the map
    whichever batch the store lists last, and each says which batch failed and why."""
    store = batch_session(tmp_path)
    a, b, c, _ = tiles(store)
    set_state(store, f"{a}_b0", "done", ts=T0, attempt="SUCCEEDED", progress=1.0)
    set_state(store, f"{a}_b1", "failed", ts=T0 + 1, attempt="FAILED", error=ERROR)
    set_state(store, f"{b}_b0", "failed", ts=T0 + 2, attempt="FAILED", error=ERROR)
    set_state(store, f"{b}_b1", "done", ts=T0 + 3, attempt="SUCCEEDED", progress=1.0)
    set_state(store, f"{c}_b0", "done", ts=T0 + 4, attempt="SUCCEEDED", progress=1.0)
    set_state(store, f"{c}_b1", "done", ts=T0 + 5, attempt="SUCCEEDED", progress=1.0)
    app = EEBatchApp(store.path, poll_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        tile_map = app.query_one(TileMap)
        for tile in (a, b):
            assert set(drawn(tile_map, tile)) == {"✗"}, tile
        assert set(drawn(tile_map, c)) == {"█"}  # done only when every batch is
        await cursor_to(pilot, tile_map, a)
        line = tile_line(app)
        assert line.startswith(f"{a} · ") and "b0 done, b1 failed" in line, line
        # at 80 columns the states stay in sight: the coordinates and key hint give way
        assert len(line) <= app.query_one("#tile-line").content_region.width, line
        await cursor_to(pilot, tile_map, b)
        assert "b0 failed, b1 done" in tile_line(app)
        await cursor_to(pilot, tile_map, a)
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, DetailsScreen)
        assert "batches  b0 done, b1 failed" in screen.plain
        assert f"b1 failed: {ERROR}" in " ".join(screen.plain.split())
        ids = [line.split()[1] for line in screen.plain.splitlines()
               if line[:2] in ("█ ", "✗ ")]
        assert ids == [f"{a}_b0", f"{a}_b1"]
    store.close()


async def test_a_done_batch_after_a_failed_one_keeps_the_tile_failed_and_f_finds_it(
        tmp_path: Path) -> None:
    """Live: b1 of a tile fails, then its b0 finishes. The later change must not paint over
    the failure; `f` goes to the tile; a split batch shows its children's states."""
    store = batch_session(tmp_path, months=2)
    a, b, _, _ = tiles(store)
    june, july = "20230601", "20230701"
    set_state(store, f"{a}_{july}_b0", "running", ts=T0, attempt="RUNNING", progress=0.5)
    set_state(store, f"{a}_{july}_b1", "failed", ts=T0 + 1, attempt="FAILED", error=ERROR)
    app = EEBatchApp(store.path, poll_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        tile_map = app.query_one(TileMap)
        set_state(store, f"{a}_{july}_b0", "done", ts=T0 + 10, attempt="SUCCEEDED",
                  progress=1.0)
        split_batch(store, f"{b}_{june}_b1", ts=T0 + 11,
                    states=("done", "done", "done", "failed"))
        set_state(store, f"{b}_{june}_b0", "done", ts=T0 + 12, attempt="SUCCEEDED",
                  progress=1.0)
        app.poll_now()
        await pilot.pause()
        model = tile_map.model
        assert model is not None
        i, j = model.tile_ids.index(a), model.tile_ids.index(b)
        assert (model.tile_quads(None)[i] == CODE["failed"]).all()
        # each period on its own: a failed in July only, b's split batch in June only
        assert (model.tile_quads(0)[i] == CODE["pending"]).all()
        assert (model.tile_quads(1)[i] == CODE["failed"]).all()
        assert model.tile_quads(0)[j].tolist() == [CODE["done"]] * 3 + [CODE["failed"]]
        assert model.tile_quads(None)[j].tolist()[3] == CODE["failed"]
        await cursor_to(pilot, tile_map, tiles(store)[3])
        await pilot.press("f")
        assert tile_map.selected_tile() == i
        # over both periods each batch shows its most urgent state: June's b0 is pending
        assert "b0 pending, b1 failed" in tile_line(app)
        await pilot.press("f")
        assert tile_map.selected_tile() == j
        assert f"{b} (split)" in tile_line(app)
        await pilot.press("t")  # June alone
        assert tile_map.period == 0 and "b0 done, b1 failed" in tile_line(app)
        await pilot.press("f")
        assert tile_map.selected_tile() == j  # a's failure is July's
        await pilot.press("t")  # July alone
        await pilot.press("f")
        assert tile_map.selected_tile() == i and "b0 done, b1 failed" in tile_line(app)
        await pilot.press("t", "t")  # all periods again
        await cursor_to(pilot, tile_map, b)
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, DetailsScreen)
        plain = " ".join(screen.plain.split())
        assert f"{june} b0 done, b1 failed" in plain and f"b1 failed: {ERROR}" in plain
        assert f"{july} b0-b1 pending" in plain
    store.close()


async def test_the_form_writes_batches_that_parse_and_the_plan_counts_them(
        session: Store) -> None:
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("e")
        await settle(pilot)
        form = app.screen.query_one(JobForm)
        size = form.query_one("#" + field_id("batches.size"))
        assert size.disabled  # no [batches]: its keys mean nothing yet
        assert "[batches]" not in form.build()
        by = form.query_one("#" + field_id("batches.by"), Select)
        by.value = "date"
        await settle(pilot)
        # by date takes a step (and [time], which this job lacks): said under their fields
        assert size.disabled and not form.query_one("#" + field_id("batches.step")).disabled
        assert "is required" in problem(form, "batches.step")
        assert "needs a [time] section" in problem(form, "batches.by") and not form.valid
        for key in ("batches.by", "batches.step"):  # each with a hint of one line at 80x24
            form.query_one("#" + field_id(key)).focus()
            await pilot.pause()
            hint = form.query_one("#" + field_id(key)).parent.parent.query_one(".hint")
            assert hint.region.height == 1, (key, str(hint.render()))
        await type_into(pilot, form, "batches.step", "1 month")
        by.value = "count"
        await settle(pilot)
        assert form.query_one("#" + field_id("batches.step")).disabled
        assert "step" not in form.build()  # greyed: left out of the file
        # by count needs its size: the problem shows under that field, and Start waits
        assert "is required" in problem(form, "batches.size") and not form.valid
        for key in BATCH_KEYS[:3]:
            form.query_one("#" + field_id(key)).focus()
            await pilot.pause()
            hint = form.query_one("#" + field_id(key)).parent.parent.query_one(".hint")
            assert hint.region.height == 1, (key, str(hint.render()))
        await type_into(pilot, form, "batches.size", "50")
        await settle(pilot)
        assert "is required" in problem(form, "batches.count")
        await type_into(pilot, form, "batches.count", "3")
        await settle(pilot)
        assert form.valid, form.problems
        summary = str(form.query_one("#summary", Static).render())
        assert "216 units (72 tiles × 1 period × 3 batches)" in summary, summary
        preview = str(form.query_one("#preview", Static).render())
        assert "Units    216  (72 tiles x 1 period x 3 batches)" in preview, preview
        assert "Batches  3 a period: 50 images each" in preview
        spec = parse_spec(form.build(), session.job_path)
        assert spec.batches == BatchSpec("count", size=50, count=3)
        # or the collection's size: 120 images in batches of 50 are 3 batches
        await type_into(pilot, form, "batches.images", "120")
        await settle(pilot)
        assert "give count" in problem(form, "batches.images")  # not both
        await type_into(pilot, form, "batches.count", " ")
        await settle(pilot)
        assert form.valid, form.problems
        assert parse_spec(form.build(), session.job_path).batches == BatchSpec(
            "count", size=50, count=3, images=120)
        await type_into(pilot, form, "batches.images", " ")
        await type_into(pilot, form, "batches.count", "3")
        await settle(pilot)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await session_created(app)
        await pilot.pause()
    job = tomllib.loads(session.job_path.read_text(encoding="utf-8"))
    assert job["batches"] == {"by": "count", "size": 50, "count": 3}
    new = app.return_value
    assert new is not None
    created = Store(new)
    try:
        batches = created.conn.execute(
            "SELECT batch, COUNT(*) FROM units GROUP BY batch ORDER BY batch").fetchall()
        assert [tuple(r) for r in batches] == [(0, 72), (1, 72), (2, 72)]
    finally:
        created.close()


async def test_batches_by_none_takes_the_section_out(tmp_path: Path) -> None:
    """A job file with [batches], by set back to none: the form's batch keys go, the plan
    is one unit per tile and period again."""
    store = batch_session(tmp_path)
    app = EEBatchApp(store.path, poll_interval=None)
    async with app.run_test(size=(160, 50)) as pilot:
        await ready(pilot)
        await pilot.press("e")
        await settle(pilot)
        form = app.query_one(JobForm)
        assert form.query_one("#" + field_id("batches.by"), Select).value == "count"
        assert form.query_one("#" + field_id("batches.count")).value == "2"
        assert "8 units (4 tiles × 1 period × 2 batches)" in str(
            form.query_one("#summary", Static).render())
        form.query_one("#" + field_id("batches.by"), Select).value = "none"
        await settle(pilot)
        assert form.valid and parse_spec(form.build(), store.job_path).batches is None
        assert "batches" not in tomllib.loads(form.build())
        assert "Units    4  (4 tiles x 1 period)" in str(form.query_one("#preview").render())
    store.close()
