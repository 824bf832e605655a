"""A whole job to done over HTTP; splits; failures; the API economy of monitoring."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import tifffile

from core.emulator.app import Emulator
from core.engine.runner import load_session_spec, open_backends, run_session
from core.engine.worker import Worker
from core.grid import pixel_size
from core.recipes.catalog import RECIPES
from core.store import Store
from tests.engine.conftest import (
    admin,
    assert_all_done_and_verified,
    emulator_with,
    make_session,
)


def _assert_raster_of_its_unit(store: Store, unit_id: str, path: Path) -> None:
    """The GeoTIFF read back holds the recipe's bands, in its data type, on the pixel grid the
    unit's tile and the job's export scale make: EE snaps the export region outward onto its
    pixel lattice, anchored at the CRS origin, pixels of `scale` metres (here degrees: EE's
    111,319.49 m a degree, grid.pixel_size)."""
    spec = load_session_spec(store)
    assert spec.grid.crs == spec.export.crs == "EPSG:4326"  # the tile's box is in pixel units
    bands = RECIPES[spec.recipe.name].bands(spec.recipe.params)
    assert len({nbytes for _, nbytes in bands}) == 1  # one GeoTIFF holds one data type
    unit = store.unit(unit_id)
    assert unit is not None
    px = pixel_size(spec)
    eps = 1e-9
    left, right = math.floor(unit["west"] / px + eps), math.ceil(unit["east"] / px - eps)
    bottom, top = math.floor(unit["south"] / px + eps), math.ceil(unit["north"] / px - eps)
    with tifffile.TiffFile(path) as tif:
        (series,) = tif.series
        assert series.shape == (len(bands), top - bottom, right - left), (unit_id, series.shape)
        assert series.dtype.itemsize == bands[0][1]
        tags = tif.pages[0].tags
        assert tags["ModelPixelScaleTag"].value[:2] == pytest.approx((px, px))
        x0, y0 = tags["ModelTiepointTag"].value[3:5]
    assert (x0, y0) == pytest.approx((left * px, top * px))
    # It covers the tile and overhangs it by less than a pixel on each side.
    assert x0 <= unit["west"] < x0 + px and y0 >= unit["north"] > y0 - px
    w, h = series.shape[2], series.shape[1]
    assert x0 + w * px >= unit["east"] > x0 + (w - 1) * px
    assert y0 - h * px <= unit["south"] < y0 - (h - 1) * px


def test_whole_job_to_done(tmp_path: Path, emulator: Emulator) -> None:
    store = make_session(tmp_path, emulator.url)
    summary = run_session(store.path)
    assert summary.ok and summary.counts == {"done": 8}
    assert_all_done_and_verified(store, emulator.url)
    files = store.conn.execute("SELECT unit, local_path FROM files ORDER BY id").fetchall()
    assert len(files) == 8  # one GeoTIFF per unit: none is big enough to be sharded
    for unit, path in files:
        _assert_raster_of_its_unit(store, unit, Path(path))
    # Every attempt was recorded with its requestId before it was sent: one per unit.
    attempts = store.conn.execute("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM attempts"
                                  ).fetchone()
    assert tuple(attempts) == (8, 8)


def test_monitoring_is_one_list_per_poll_not_per_task(tmp_path: Path,
                                                      emulator: Emulator) -> None:
    store = make_session(tmp_path, emulator.url, bbox="[0, 0, 4, 2]")  # 32 units
    assert run_session(store.path).ok
    requests = admin(emulator.url, "/_emulator/state")["requests"]
    assert requests.get("GET ee operations.get", 0) == 0  # no per-task status calls
    assert requests["POST ee image.export"] == 32  # no export sent twice without cause
    assert requests["DELETE drive files.delete"] == 32


def _operations_lists(emu: Emulator) -> int:
    return emu.state()["requests"].get("GET ee operations.list", 0)


def _wait_until_no_task_runs(emu: Emulator) -> None:
    deadline = time.monotonic() + 30
    while set(emu.state()["ee"]["operations"]) - {"SUCCEEDED", "FAILED", "CANCELLED"}:
        assert time.monotonic() < deadline, emu.state()["ee"]["operations"]
        time.sleep(0.05)


def _worker(store: Store, url: str) -> Worker:
    spec = load_session_spec(store)
    return Worker(store, spec, open_backends(spec, url))


def test_a_poll_reads_operations_pages_only_until_it_has_seen_our_tasks(
        tmp_path: Path) -> None:
    # Four operations per page, and an earlier job's 32 finished operations in the project
    # (8 pages): EE keeps them for weeks, and operations come newest first.
    with emulator_with(max_page_size=4) as emu:
        assert run_session(make_session(tmp_path, emu.url, name="earlier",
                                        bbox="[0, 0, 4, 2]").path).ok
        ours = make_session(tmp_path, emu.url, name="ours", max_tasks=4)
        worker = _worker(ours, emu.url)
        worker.submit()  # our 4 tasks: the newest 4 operations, page 1
        _wait_until_no_task_runs(emu)
        before = _operations_lists(emu)
        worker.poll()
        assert _operations_lists(emu) - before == 1
        assert ours.counts() == {"exported": 4, "pending": 4}

        # Another job's 8 exports, newer than our next 4: ours are on page 3 now.
        worker.submit()
        _worker(make_session(tmp_path, emu.url, name="other", bbox="[10, 0, 12, 1]",
                             max_tasks=8), emu.url).submit()
        _wait_until_no_task_runs(emu)
        before = _operations_lists(emu)
        worker.poll()
        assert _operations_lists(emu) - before == 3
        assert ours.counts() == {"exported": 8}


def test_the_drive_quota_is_read_when_it_matters_not_at_every_poll(
        tmp_path: Path, emulator: Emulator) -> None:
    store = make_session(tmp_path, emulator.url)
    worker = _worker(store, emulator.url)

    def quota_reads() -> int:
        return emulator.state()["requests"].get("GET drive about.get", 0)

    for _ in range(5):
        worker.poll()
    # Far below its Drive budget: read once (our own bytes in Drive are known without asking).
    assert quota_reads() == 1
    with store.tx():
        store.set_setting("drive_budget", 1000)  # the user lowers it below one output
    worker.submit()  # one unit goes (alone it may); the others wait for Drive space
    for _ in range(5):
        worker.poll()
    assert quota_reads() == 6  # near the limit: every poll reads how much room there is


def test_memory_failure_splits_the_tile_into_four(tmp_path: Path) -> None:
    # 0.5° tiles at 2 km hold about 770 pixels; the limit lets only quarter tiles through.
    with emulator_with(memory_limit_pixels=400) as emu:
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 1, 0.5]", split_depth=1)
        summary = run_session(store.path)
        assert summary.ok, summary.failed
        units = {r["id"]: r for r in store.units()}
        assert {u["state"] for u in units.values()} == {"split", "done"}
        children = [u for u in units.values() if u["parent"]]
        assert len(children) == 8 and all(u["depth"] == 1 for u in children)
        parent = units[children[0]["parent"]]
        assert "User memory limit exceeded" in parent["error"]
        quads = sorted((u["west"], u["south"]) for u in children if u["parent"] == parent["id"])
        assert quads[0] == (parent["west"], parent["south"])
        assert_all_done_and_verified(store, emu.url)


def test_a_tile_that_ran_out_of_memory_is_split_in_its_other_periods_before_it_is_sent(
        tmp_path: Path) -> None:
    # Two 0.5° tiles of ~770 pixels over two months, one task at a time; the limit lets only
    # quarter tiles through. Each tile runs out of memory once, in its first month; in the
    # second it is split before it is sent: two slots spent on failures, not four.
    with emulator_with(memory_limit_pixels=400) as emu:
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 1, 0.5]", split_depth=1,
                             max_tasks=1, extra='\n[time]\nstart = 2023-01-01\n'
                                               'end = 2023-03-01\nstep = "1 month"\n')
        summary = run_session(store.path)
        assert summary.ok, summary.failed
        failed = [t for t in admin(emu.url, "/_emulator/state")["ee"]["tasks"]
                  if "User memory limit exceeded" in (t["error"] or "")]
        assert len(failed) == 2
        parents = {u["id"]: u for u in store.units() if u["depth"] == 0}
        assert {u["state"] for u in parents.values()} == {"split"}
        foreseen = sorted(i for i, u in parents.items() if "foreseen" in (u["error"] or ""))
        assert foreseen == ["r179c360_20230201", "r179c361_20230201"]
        assert "this tile ran out of memory" in parents[foreseen[0]]["error"]
        assert len([u for u in store.units() if u["state"] == "done"]) == 16
        assert_all_done_and_verified(store, emu.url)


def test_only_a_bigger_tile_than_any_that_survived_is_foreseen_to_run_out(
        tmp_path: Path) -> None:
    from core.engine.memory import MemoryLessons

    # Four tiles over two months, as a session holds them after some ran: r179c360 ran out
    # of memory at 1,000 pixels in January, r179c361 (1,200 pixels) succeeded.
    store = make_session(tmp_path, "http://127.0.0.1:9", bbox="[0, 0, 2, 0.5]",
                         extra='\n[time]\nstart = 2023-01-01\nend = 2023-03-01\n'
                               'step = "1 month"\n')
    pixels = {"r179c360": 1000, "r179c361": 1200, "r179c362": 1000, "r179c363": 1300}
    with store.tx():
        for tile, n in pixels.items():
            store.conn.execute("UPDATE units SET est_pixels = ? WHERE tile = ?", (n, tile))
        store.set_unit("r179c360_20230101", "split", error="User memory limit exceeded.")
        store.set_unit("r179c361_20230101", "done")
    lessons = MemoryLessons(store)

    def foresee(unit: str) -> str | None:
        return lessons.foresee(store.unit(unit))

    assert "this tile" in (foresee("r179c360_20230201") or "")  # the same tile, any period
    assert foresee("r179c362_20230101") is None  # as big: content differs
    assert foresee("r179c361_20230101") is None  # not bigger than one that succeeded
    assert "none as big has succeeded" in (foresee("r179c363_20230101") or "")
    assert foresee("r179c363_20230201") is None  # February taught nothing yet
    lessons.succeeded(store.unit("r179c363_20230101"))  # it went through whole after all
    assert foresee("r179c363_20230101") is None


def test_split_stops_at_split_depth_and_fails_with_the_message(tmp_path: Path) -> None:
    with emulator_with(memory_limit_pixels=10) as emu:
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 0.5, 0.5]", split_depth=1)
        summary = run_session(store.path)
        assert not summary.ok
        assert len(summary.failed) == 4
        assert all("User memory limit exceeded" in e and "split_depth = 1" in e
                   for _, e in summary.failed)


def test_internal_errors_are_retried_until_max_attempts(tmp_path: Path) -> None:
    with emulator_with(internal_error_rate=1.0) as emu:
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 0.5, 0.5]", max_attempts=2)
        summary = run_session(store.path)
        (unit, error), = summary.failed
        assert "Internal error" in error and "gave up after 2 attempts" in error
        assert store.unit(unit)["attempts"] == 2


def _max_overlap(store) -> int:  # type: ignore[no-untyped-def]
    """Most units between 'submitted to EE' and 'files gone from Drive' at one moment."""
    rows = store.conn.execute(
        "SELECT a.created AS start, MAX(f.updated) AS stop FROM attempts a"
        " JOIN files f ON f.unit = a.unit GROUP BY a.unit").fetchall()
    moments = sorted([(r["start"], 1) for r in rows] + [(r["stop"], -1) for r in rows])
    live = peak = 0
    for _, delta in moments:
        live += delta
        peak = max(peak, live)
    return peak


def test_drive_budget_bounds_what_is_in_flight(tmp_path: Path, emulator: Emulator) -> None:
    first = make_session(tmp_path, emulator.url, name="a")
    assert run_session(first.path).ok
    size = first.conn.execute("SELECT MAX(est_bytes) FROM units").fetchone()[0]
    # Room for two estimated outputs at a time, while max_tasks would allow 4: the budget
    # governs (and once real sizes are learned, fewer fit).
    job = tmp_path / "b.toml"
    text = first.job_text.replace('name = "a"', 'name = "b"').replace(
        "[limits]", f"[limits]\ndrive_budget = {int(size * 2.5)}")
    job.write_text(text)
    from core.session import create_session

    second, _ = create_session(job)
    assert run_session(second.path).ok
    assert _max_overlap(second) <= 2 < _max_overlap(first)
