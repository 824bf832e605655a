"""Opening and quitting the dashboard with a worker in its process: a finished session opens
without one, a demo reopened later gets a fresh emulator and finishes, and quitting with tasks
in flight asks whether to hand them to a headless worker, stop, or stay."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot

from core.emulator.app import Emulator
from core.session import load_session_spec
from core.states import ACTIVE
from core.store import Store
from tests.engine.conftest import emulator_with
from tests.engine.conftest import make_session as make_emulator_session
from tests.tui.test_app import header_text, quit_app, ready, wait_for
from tui.app import EEBatchApp
from tui.launch import prepare_app
from tui.screens.quit import QuitScreen
from tui.widgets.common import size
from tui.widgets.drive_meter import DriveMeter


def demo_session() -> Path:
    """A demo session as `eebatch demo` leaves it after `q`: its emulator gone with it."""
    from core.demo import prepare_demo

    emulator, path = prepare_demo()
    emulator.stop()
    return path


def settle_units(path: Path, keep: int) -> list[str]:
    """Mark every planned unit done but the `keep` northernmost (which never split in the
    demo): a demo quit just before its end. Returns the units left."""
    store = Store(path)
    try:
        ids = [r[0] for r in store.conn.execute(
            "SELECT id FROM units ORDER BY row, col")]
        left = ids[:keep]
        marks = ",".join("?" * len(left))
        with store.tx() as conn:
            conn.execute(f"UPDATE units SET state = 'done', updated = ? WHERE id NOT IN ({marks})",
                         (time.time(), *left))
        return left
    finally:
        store.close()


async def test_a_finished_demo_reopens_finished_without_a_worker() -> None:
    path = demo_session()
    settle_units(path, 0)
    app, starter = prepare_app(path)
    try:
        assert app.worker is None  # nothing to do: no worker, no backend needed
        async with app.run_test(size=(120, 40)) as pilot:
            await ready(pilot)
            app.poll_now()
            await pilot.pause()
            header = header_text(app)
            assert "✓ finished" in header and "failed" not in header, header
            assert not [n for n in app._notifications if n.severity == "error"]
            await quit_app(pilot)
    finally:
        starter.close()


async def test_a_demo_quit_before_the_end_finishes_when_reopened() -> None:
    path = demo_session()
    left = settle_units(path, 3)
    app, starter = prepare_app(path)
    try:
        assert app.worker is not None and starter.emulator is not None  # a fresh emulator
        app.poll_interval = 0.2
        async with app.run_test(size=(120, 40)) as pilot:
            await ready(pilot)
            await wait_for(pilot, lambda: app.counts and set(app.counts) == {"done"},
                           "finishing the 3 units left", timeout=120,
                           seen=lambda: f"(counts {app.counts}, header {header_text(app)!r})")
            assert "worker failed" not in header_text(app)
            # Finished, the Drive pane says what the job made, where, and what is left in Drive.
            pane = app.query_one("#drive-pane")
            meter = app.query_one(DriveMeter)
            assert pane.border_title == "Output"
            shown = meter.render().plain
            store = Store(path)
            try:
                output = load_session_spec(store).output_dir
                made = store.totals()
            finally:
                store.close()
            assert made.files >= 3 and made.bytes > 0  # the 3 units' files, downloaded
            assert f"✓ {made.files:,} files, {size(made.bytes)}" in shown, shown
            assert str(output).endswith(shown.splitlines()[1].lstrip("…~")), shown
            assert "nothing of this job left in Drive" in shown, shown
            await quit_app(pilot)
    finally:
        if app.worker is not None:
            app.worker.stop()
            app.worker.join(60)
        starter.close()
    store = Store(path)
    try:
        assert all(store.unit(u)["state"] == "done" for u in left)
    finally:
        store.close()


# -- quitting with live work -----------------------------------------------------------------


@pytest.fixture
def slow_emulator() -> Iterator[Emulator]:
    """Tasks that run for an hour: the worker always has live work."""
    emulator = emulator_with(speed=1.0, task_overhead_seconds=3600.0)
    yield emulator
    emulator.stop()


def live_app(tmp_path: Path, emulator: Emulator) -> tuple[EEBatchApp, Path]:
    from core.engine.runner import start_worker

    store = make_emulator_session(tmp_path, emulator.url, max_tasks=2)
    path = store.path
    store.close()
    return EEBatchApp(path, poll_interval=0.1, worker=start_worker(path)), path


async def live(pilot: Pilot[object]) -> None:
    app = pilot.app
    assert isinstance(app, EEBatchApp)
    await ready(pilot)
    await wait_for(pilot, lambda: app.live_work() > 0, "submitting tasks",
                   seen=lambda: f"(counts {app.counts})")


def read(path: Path, sql: str, args: tuple[str, ...] = ()) -> list[object]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in conn.execute(sql, args)]
    finally:
        conn.close()


async def ended(pilot: Pilot[object], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while pilot.app.is_running:
        if time.monotonic() > deadline:
            pytest.fail(f"the app did not quit within {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def test_quit_with_live_work_asks_and_cancel_stays(tmp_path: Path,
                                                         slow_emulator: Emulator) -> None:
    app, _ = live_app(tmp_path, slow_emulator)
    assert app.worker is not None
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await live(pilot)
            await pilot.press("q")
            await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen), "asking")
            assert app.is_running
            await pilot.press("c")
            await wait_for(pilot, lambda: not isinstance(app.screen, QuitScreen), "closing")
            assert app.is_running and app.worker.is_alive()
            await pilot.press("q")
            await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen), "asking again")
            await pilot.press("s")
            await ended(pilot)
        assert app.detached is None
    finally:
        app.worker.stop()
        app.worker.join(60)


async def test_quit_without_live_work_is_at_once(tmp_path: Path,
                                                 slow_emulator: Emulator) -> None:
    from core.engine.runner import start_worker

    store = make_emulator_session(tmp_path, slow_emulator.url)
    store.set_setting("paused", True)  # the worker runs, but nothing is in EE
    worker = start_worker(store.path)
    app = EEBatchApp(store.path, poll_interval=None, worker=worker)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await ready(pilot)
            assert worker.is_alive() and app.live_work() == 0
            await quit_app(pilot)
    finally:
        worker.stop()
        worker.join(60)
        store.close()


async def test_quit_and_keep_running_hands_over_to_a_headless_worker(
        tmp_path: Path, slow_emulator: Emulator) -> None:
    app, path = live_app(tmp_path, slow_emulator)
    assert app.worker is not None
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await live(pilot)
            await pilot.press("q")
            await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen), "asking")
            await pilot.press("k")
            await ended(pilot)
        assert app.detached is not None, [n.message for n in app._notifications]
        assert not app.worker.is_alive()  # the lock was released here first…
        assert Store.worker_lock_held(path)  # …and the headless worker holds it
        # the lock is taken a moment before the worker's row is written; a connection
        # opened for each look sees what the headless worker has committed by then
        deadline = time.monotonic() + 60
        while not (pids := read(path, "SELECT pid FROM workers WHERE stopped IS NULL")):
            assert time.monotonic() < deadline, "no worker row from the headless worker"
            await asyncio.sleep(0.1)
        marks = ",".join("?" * len(ACTIVE))
        active = read(path, f"SELECT COUNT(*) FROM units WHERE state IN ({marks})", ACTIVE)
        assert pids == [app.detached]
        assert active[0] > 0  # its tasks were left in EE for the headless worker to adopt
    finally:
        app.worker.stop()
        app.worker.join(60)
        if app.detached is not None:
            os.killpg(app.detached, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while Store.worker_lock_held(path) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
