"""The direct route (core/routes.py, core/engine/direct.py): units computed by EE's
computePixels, with no batch task and no Drive, to the same verified files as the batch route;
auto's move to batch when EE cannot compute a unit interactively; splits; 429s; a restart in
the middle of a fetch. The real worker and earthengine-api against the emulator."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio

from core.demo import DEMO_EMULATOR, demo_products, prepare_demo
from core.emulator.clock import ManualClock
from core.engine.direct import LESSON
from core.engine.runner import open_backends, run_session, start_worker
from core.engine.worker import Worker
from core.outputs.manifest import NAME as MANIFEST
from core.session import load_session_spec
from core.store import Store
from tests.engine.conftest import admin, drive_files, emulator_with, inject, make_session, md5
from tests.engine.test_safety import wait_for

ROOT = Path(__file__).parents[2]


def direct_state(url: str) -> dict:
    return admin(url, "/_emulator/state")["ee"]["direct"]


def assert_direct_and_verified(store: Store, url: str) -> list[Path]:
    """Every unit done by the direct route: its files local and right by MD5, listed in the
    manifest as direct; no task, no Drive file, no part left."""
    assert set(store.counts()) <= {"done", "split"}, store.counts()
    files = store.conn.execute("SELECT * FROM files").fetchall()
    assert files and all(f["state"] == "local" for f in files), [dict(f) for f in files]
    paths = [Path(f["local_path"]) for f in files]
    for f, path in zip(files, paths, strict=True):
        assert md5(path) == f["md5"], path
    out = paths[0].parent
    assert not list(out.rglob("*.part"))
    assert admin(url, "/_emulator/state")["ee"]["tasks"] == []
    assert drive_files(url) == []
    manifest = pd.read_csv(out / MANIFEST)
    assert sorted(manifest["file"]) == sorted(p.name for p in paths)
    assert set(manifest["route"]) == {"direct"}
    return paths


def test_direct_route_gives_the_batch_routes_pixels_without_a_task_or_drive(
        tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "d").mkdir()
    with emulator_with() as emu:
        batch = make_session(tmp_path / "b", emu.url, name="b")
        assert run_session(batch.path).ok
        direct = make_session(tmp_path / "d", emu.url, name="d", folder="eebatch-direct",
                              export={"route": "direct"})
        tasks_before = len(admin(emu.url, "/_emulator/state")["ee"]["tasks"])
        summary = run_session(direct.path)
        assert summary.ok, summary.failed
        state = admin(emu.url, "/_emulator/state")
        assert len(state["ee"]["tasks"]) == tasks_before  # not one export more
        assert state["ee"]["direct"]["succeeded"] == 8
        files = [Path(f["local_path"]) for f in direct.conn.execute("SELECT * FROM files")]
        assert len(files) == 8 and all(f["state"] == "local"
                                       for f in direct.conn.execute("SELECT * FROM files"))
        assert not list((tmp_path / "d" / "out").glob("*.part"))
        assert set(pd.read_csv(tmp_path / "d" / "out" / MANIFEST)["route"]) == {"direct"}
        for path in files:
            twin = tmp_path / "b" / "out" / path.name.replace("d_", "b_", 1)
            with rasterio.open(path) as got, rasterio.open(twin) as want:
                assert got.transform == want.transform and got.crs == want.crs
                assert np.array_equal(got.read(), want.read())
                assert np.ptp(want.read()) > 0  # equal by content, not by an empty tile
            assert md5(path) == direct.conn.execute(
                "SELECT md5 FROM files WHERE local_path = ?", (str(path),)).fetchone()[0]
        assert {r[0] for r in direct.conn.execute("SELECT route FROM units")} == {"direct"}


def test_auto_sends_a_unit_ee_cannot_compute_interactively_by_batch(tmp_path: Path) -> None:
    # Interactive requests get less memory than the smallest tile needs: every unit fails
    # direct with EE's text, and goes by the batch route, unsplit.
    with emulator_with(direct_memory_limit_pixels=1) as emu:
        store = make_session(tmp_path, emu.url, export={"route": "auto"})
        assert {r[0] for r in store.conn.execute("SELECT route FROM units")} == {"direct"}
        summary = run_session(store.path)
        assert summary.ok, summary.failed
        assert direct_state(emu.url)["failed"]  # each tried direct once
        assert {r[0] for r in store.conn.execute("SELECT route FROM units")} == {"batch"}
        assert store.counts() == {"done": 8}  # none split: the batch task had the memory
        moved = store.conn.execute(
            "SELECT COUNT(DISTINCT unit) FROM events WHERE message LIKE "
            "'EE could not compute it directly (%User memory limit exceeded%): it goes by the"
            " batch route'").fetchone()[0]
        assert moved == 8
        files = store.conn.execute("SELECT * FROM files").fetchall()
        assert len(files) == 8 and {f["state"] for f in files} == {"deleted"}
        manifest = pd.read_csv(tmp_path / "out" / MANIFEST)
        assert set(manifest["route"]) == {"batch"} and len(manifest) == 8


def test_auto_learns_what_ee_cannot_compute_and_sends_the_rest_by_batch(
        tmp_path: Path) -> None:
    # Two requests at a time, every tile too heavy: once the first fail, the tiles as big
    # are foreseen to fail too and go by batch without spending a request each.
    with emulator_with(direct_memory_limit_pixels=1) as emu:
        store = make_session(tmp_path, emu.url, export={"route": "auto"},
                             limits={"direct_requests": 2})
        summary = run_session(store.path)
        assert summary.ok, summary.failed
        failed = sum(direct_state(emu.url)["failed"].values())
        assert 1 <= failed <= 2 and store.counts() == {"done": 8}
        foreseen = store.conn.execute(
            "SELECT COUNT(DISTINCT unit) FROM events WHERE message LIKE 'EE could not compute"
            " it directly (foreseen: %'").fetchone()[0]
        assert foreseen == 8 - failed
        assert {r[0] for r in store.conn.execute("SELECT route FROM units")} == {"batch"}


def test_a_restart_remembers_what_auto_learnt_and_sends_no_request_to_learn_it_again(
        tmp_path: Path) -> None:
    failed_directly = ("SELECT COUNT(*) FROM events WHERE id > ? AND message LIKE 'EE could not"
                       " compute it directly (%' AND message NOT LIKE '%(foreseen: %'")
    with emulator_with(direct_memory_limit_pixels=1) as emu:
        store = make_session(tmp_path, emu.url, export={"route": "auto"},
                             limits={"direct_requests": 2})
        # The first two requests are held (a clock only the test moves) while the job is
        # paused; then they fail, and the worker learns from them but sends nothing more.
        clock, emu.ee.direct.clock = emu.ee.direct.clock, ManualClock()
        worker = start_worker(store.path)
        try:
            wait_for(lambda: direct_state(emu.url)["in_flight"] == 2, what="two requests out")
            store.post_command("pause")
            wait_for(lambda: store.setting("paused") is True, what="paused")
            emu.ee.direct.clock = clock
            wait_for(lambda: store.conn.execute(failed_directly, (0,)).fetchone()[0] == 2,
                     what="both units moved to batch")
        finally:
            worker.stop()  # as an SSH drop stops it
            worker.join(30)
        left = store.conn.execute("SELECT COUNT(*) FROM units WHERE route = 'direct'")
        assert left.fetchone()[0] == 6
        before = store.conn.execute("SELECT MAX(id) FROM events").fetchone()[0]
        store.post_command("resume")
        summary = run_session(store.path)
        assert summary.ok, summary.failed
        assert store.counts() == {"done": 8}
        # the six left go by batch, foreseen: none is asked for directly to fail again
        assert store.conn.execute(failed_directly, (before,)).fetchone()[0] == 0
        assert direct_state(emu.url)["requests"] == 2
        assert store.conn.execute(
            "SELECT COUNT(*) FROM events WHERE id > ? AND message LIKE 'EE could not compute"
            " it directly (foreseen: %'", (before,)).fetchone()[0] == 6


def test_an_outage_of_the_direct_route_alone_is_said_once_and_asked_one_request_at_a_time(
        tmp_path: Path) -> None:
    """The real service serves computePixels on an endpoint of its own: out while EE's other
    calls answer. The wait is said once (EE's answering polls used to end it at every poll and
    let every request go out again), one request at a time asks whether it is back, and once
    it is the job ends with nothing failed and no try counted."""
    computed = "POST ee image.computePixels"
    with emulator_with() as emu:
        store = make_session(tmp_path, emu.url, export={"route": "direct"},
                             limits={"direct_requests": 4})
        admin(emu.url, "/_emulator/outage", {"route": "image:computePixels", "seconds": 3600})
        worker = start_worker(store.path)
        try:
            wait_for(lambda: emu.state()["requests"].get(computed, 0) >= 6,
                     what="the route asked again and again while out")
            assert (store.worker_status() or {}).get("down", {}).keys() == {"direct"}
            admin(emu.url, "/_emulator/outage", method="DELETE")
            wait_for(lambda: store.counts() == {"done": 8}, what="every unit done")
        finally:
            worker.stop()
            worker.join(30)
    said = [r[0] for r in store.conn.execute(
        "SELECT message FROM events WHERE message LIKE '%unreachable since%'"
        " OR message LIKE '%answers again%'")]
    assert len(said) == 2, said
    assert said[0].startswith("Earth Engine's direct route unreachable since"), said
    assert said[1].startswith("Earth Engine's direct route answers again"), said
    assert store.conn.execute("SELECT MAX(attempts) FROM units").fetchone()[0] == 1


def test_a_direct_units_tries_count_as_retries_in_the_totals(tmp_path: Path) -> None:
    # A direct unit's tries leave no export attempt behind: the unit's count of tries says
    # them (an answer that failed its check, a request whose retries ran out).
    with emulator_with() as emu:
        store = make_session(tmp_path, emu.url, export={"route": "direct"})
    first, second = (r["id"] for r in store.units()[:2])
    with store.tx():
        store.conn.execute("UPDATE units SET attempts = 3 WHERE id = ?", (first,))
        store.conn.execute("UPDATE units SET attempts = 1 WHERE id = ?", (second,))
    assert store.totals().retries == 2  # as status and the finish line say it


def test_a_damaged_lesson_in_the_store_is_ignored_and_auto_probes_again(
        tmp_path: Path) -> None:
    with emulator_with() as emu:
        store = make_session(tmp_path, emu.url, export={"route": "auto"})
        with store.tx():
            store.set_setting(LESSON, {"too_heavy_at": ["x", 1], "computed_up_to": "a lot"})
        summary = run_session(store.path)
        assert summary.ok, summary.failed
        assert {r[0] for r in store.conn.execute("SELECT route FROM units")} == {"direct"}
        assert store.setting(LESSON)["computed_up_to"] > 0  # written again, as it learnt


def test_a_unit_too_heavy_for_one_direct_request_splits_on_the_direct_route(
        tmp_path: Path) -> None:
    # A whole tile is over the interactive memory limit, its quarters are not.
    with emulator_with(direct_memory_limit_pixels=2000) as emu:  # a tile ~3,100, a quarter ~780
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 1, 0.5]", scale=1000,
                             export={"route": "direct"})
        summary = run_session(store.path)
        assert summary.ok, summary.failed
        counts = store.counts()
        assert counts["split"] == 2 and counts["done"] == 8, counts
        assert {r[0] for r in store.conn.execute("SELECT route FROM units")} == {"direct"}
        assert_direct_and_verified(store, emu.url)


def test_429s_from_a_busy_project_are_retried_and_nothing_fails(tmp_path: Path) -> None:
    # EE lets two requests run at once; eebatch sends up to eight: the rest hear 429 "Too
    # many concurrent requests" and ask again.
    # Each request holds its slot 1 s of wall time (200 simulated s at speed 200), so the
    # eight overlap however loaded the machine is.
    with emulator_with(direct_concurrency=2, direct_latency_seconds=200.0) as emu:
        store = make_session(tmp_path, emu.url, export={"route": "direct"},
                             limits={"direct_requests": 8})
        summary = run_session(store.path)
        assert summary.ok, summary.failed
        state = direct_state(emu.url)
        assert state["rejected"] and state["peak_concurrency"] <= 2
        assert store.conn.execute("SELECT MAX(attempts) FROM units").fetchone()[0] == 1
        assert_direct_and_verified(store, emu.url)


def test_a_500_is_retried_on_its_thread_without_failing_the_unit(tmp_path: Path) -> None:
    with emulator_with() as emu:
        inject(emu.url, route="ee image.computePixels", kind="status", status=500, count=3)
        store = make_session(tmp_path, emu.url, export={"route": "direct"})
        summary = run_session(store.path)
        assert summary.ok, summary.failed
        assert_direct_and_verified(store, emu.url)


def test_kill_9_mid_fetch_then_resume(tmp_path: Path) -> None:
    # Slow answers (every request held 30 s): the kill lands while units are being fetched.
    with emulator_with() as emu:
        inject(emu.url, route="ee image.computePixels", kind="slow", delay=30.0, count=100)
        store = make_session(tmp_path, emu.url, export={"route": "direct"})
        child = subprocess.Popen(
            [sys.executable, "-m", "tui", "run", store.id, "--headless", "--every", "1"],
            cwd=ROOT, env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: store.conn.execute(
                "SELECT COUNT(*) >= 4 FROM units WHERE state = 'downloading'").fetchone()[0],
                "fetches under way", timeout=60)
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        # A part as a write cut by the kill leaves it.
        unit = store.conn.execute(
            "SELECT id FROM units WHERE state = 'downloading' LIMIT 1").fetchone()[0]
        part = tmp_path / "out" / f"t_{unit}.tif.direct.part"
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(b"II*\x00 cut off")
        admin(emu.url, "/_emulator/faults", method="DELETE")

        spec = load_session_spec(store)
        Worker(store, spec, open_backends(spec)).recover()  # what a restart does first
        assert not part.exists()
        assert "downloading" not in store.counts()
        summary = run_session(store.path)

        assert summary.ok, (summary.counts, summary.failed)
        paths = assert_direct_and_verified(store, emu.url)
        assert len(paths) == 8  # one file a unit: none fetched twice into two files
        # A fetch cut off costs no try.
        assert store.conn.execute("SELECT MAX(attempts) FROM units").fetchone()[0] == 1


def test_a_stop_does_not_wait_out_the_requests_in_flight(tmp_path: Path) -> None:
    with emulator_with() as emu:
        # Requests that would keep the stop waiting for ten minutes if it waited for them.
        inject(emu.url, route="ee image.computePixels", kind="slow", delay=600.0, count=8)
        store = make_session(tmp_path, emu.url, export={"route": "direct"})
        worker = start_worker(store.path)
        wait_for(lambda: store.conn.execute(
            "SELECT COUNT(*) = 8 FROM units WHERE state = 'downloading'").fetchone()[0],
            "fetches under way")
        worker.stop()
        worker.join(60)
        assert not worker.is_alive()
        # Let go, not lost: the next start sends them again, at no try's cost.
        assert store.counts() == {"pending": 8}
        assert store.conn.execute("SELECT MAX(attempts) FROM units").fetchone()[0] == 0
        admin(emu.url, "/_emulator/faults", method="DELETE")
        assert run_session(store.path).ok
        assert_direct_and_verified(store, emu.url)


def test_the_demo_by_auto_and_by_direct_gives_one_mosaic(tmp_path: Path) -> None:
    # The demo's own emulator (batch tiles that split, interactive requests with a little
    # less memory), faster. Under auto the bigger tiles come by batch exports and the rest
    # direct; under direct every tile comes direct (the bigger ones split): one mosaic, so
    # each batch-exported tile of the first equals its direct twin of the second.
    config = dataclasses.replace(DEMO_EMULATOR, speed=60.0, drive_listing_lag=0.0)
    mosaics = {}
    routes = {}
    for route in ("auto", "direct"):
        emulator, path = prepare_demo(config=config, route=route)
        try:
            assert run_session(path, emulator_url=emulator.url).ok
        finally:
            emulator.stop()
        ((vrt, _),) = demo_products(path)
        with rasterio.open(vrt) as mosaic:
            mosaics[route] = (mosaic.transform, mosaic.read(masked=True))
        store = Store(path)
        routes[route] = store.route_counts()
        store.close()
    assert routes["auto"]["batch"]["done"] > 10 and routes["auto"]["direct"]["done"] > 10
    assert set(routes["direct"]) == {"direct"}
    (transform, want), (got_transform, got) = mosaics["auto"], mosaics["direct"]
    assert want.count() > 0 and got_transform == transform
    assert np.array_equal(got.mask, want.mask)
    assert np.array_equal(got.filled(0), want.filled(0))
