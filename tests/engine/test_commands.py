"""Cancel, retry, pause/resume and limit changes, sent through the store's command table as a
UI in another process would, reaching a running worker and Earth Engine."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.emulator.app import Emulator
from core.engine.runner import start_worker
from core.store import Store
from tests.engine.conftest import (
    admin,
    drive_files,
    emulator_with,
    inject,
    make_session,
    task_unit,
)


def wait_for(check: Callable[[], object], timeout: float = 30, what: str = "") -> object:
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or check}")


@pytest.fixture
def slow() -> Iterator[Emulator]:
    # Tasks run for ~20 s of wall time: long enough to act on them.
    emu = emulator_with(speed=1.0, task_overhead_seconds=20.0, slots=2)
    yield emu
    emu.stop()


def ops_by_unit(url: str) -> dict[str, list[dict]]:
    """The emulator's tasks grouped by unit (our descriptions are eebatch_SESSION_UNIT_aN)."""
    out: dict[str, list[dict]] = {}
    for task in admin(url, "/_emulator/state")["ee"]["tasks"]:
        out.setdefault(task_unit(task["description"]), []).append(task)
    return out


def finished(store: Store, command_id: int) -> object:
    row = store.command(command_id)
    return row if row["state"] != "pending" else None


def test_cancel_then_retry_a_running_unit(tmp_path: Path, slow: Emulator) -> None:
    store = make_session(tmp_path, slow.url, bbox="[0, 0, 1, 0.5]", max_tasks=2)
    worker = start_worker(store.path)
    try:
        unit = wait_for(lambda: store.conn.execute(
            "SELECT id FROM units WHERE state = 'running' LIMIT 1").fetchone(), what="running")[0]
        cid = store.post_command("cancel", unit)
        row = wait_for(lambda: finished(store, cid), what="cancel done")
        assert row["state"] == "done"
        assert store.unit(unit)["state"] == "cancelled"
        op = wait_for(lambda: [o for o in ops_by_unit(slow.url)[unit]
                               if o["state"] == "CANCELLED"], what="EE cancelled")
        assert op
        # Retry: a new attempt with a new requestId, ahead of the others.
        cid = store.post_command("retry", unit)
        assert wait_for(lambda: finished(store, cid))["state"] == "done"
        wait_for(lambda: store.unit(unit)["state"] in ("submitting", "queued", "running"))
        attempts = store.conn.execute("SELECT COUNT(DISTINCT request_id) FROM attempts WHERE"
                                      " unit = ?", (unit,)).fetchone()[0]
        assert attempts == 2
    finally:
        worker.stop()
        worker.join(30)
    assert worker.error is None


def test_cancel_of_an_exported_unit_removes_its_files_from_drive(tmp_path: Path,
                                                                 emulator: Emulator) -> None:
    store = make_session(tmp_path, emulator.url, bbox="[0, 0, 0.5, 0.5]")
    # Downloads fail, so the unit waits exported (between download retries) with its file in
    # Drive.
    inject(emulator.url, method="GET", route="drive files.get", query_contains="alt=media",
           kind="status", status=500, count=-1)
    worker = start_worker(store.path)
    try:
        unit = wait_for(lambda: store.conn.execute(
            "SELECT unit FROM events WHERE message LIKE 'download of %' AND level = 'warning'"
        ).fetchone(), what="a failed download")[0]
        assert drive_files(emulator.url)
        cid = store.post_command("cancel", unit)
        assert wait_for(lambda: finished(store, cid))["state"] == "done"
        assert store.unit(unit)["state"] == "cancelled"
        wait_for(lambda: drive_files(emulator.url) == [], what="Drive emptied")
    finally:
        worker.stop()
        worker.join(30)
    assert not list((tmp_path / "out").glob("*.tif"))


def test_pause_resume_and_max_tasks(tmp_path: Path, slow: Emulator) -> None:
    store = make_session(tmp_path, slow.url, bbox="[0, 0, 2, 1]", max_tasks=4)  # 8 units
    store.post_command("pause")
    worker = start_worker(store.path)
    try:
        wait_for(lambda: store.setting("paused") is True, what="paused")
        time.sleep(1.0)
        assert store.conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 0
        cid = store.post_command("set", arg={"key": "max_tasks", "value": 1})
        wait_for(lambda: finished(store, cid))
        store.post_command("resume")
        wait_for(lambda: store.conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] >= 1)
        time.sleep(1.0)
        in_ee = store.conn.execute("SELECT COUNT(*) FROM units WHERE state IN"
                                   " ('submitting', 'queued', 'running')").fetchone()[0]
        assert in_ee == 1  # the new limit holds: 1 task, not the 4 of the job file
        store.post_command("set", arg={"key": "max_tasks", "value": 3})
        wait_for(lambda: store.conn.execute(
            "SELECT COUNT(*) FROM units WHERE state IN ('submitting', 'queued', 'running')"
        ).fetchone()[0] == 3, what="3 tasks")
    finally:
        worker.stop()
        worker.join(30)


def test_a_command_that_does_not_apply_gets_a_clear_error(tmp_path: Path,
                                                         emulator: Emulator) -> None:
    store = make_session(tmp_path, emulator.url, bbox="[0, 0, 0.5, 0.5]")
    unit = store.units()[0]["id"]
    # Written straight into the table, as a UI of an older version might: the worker checks.
    store.conn.execute("INSERT INTO commands (ts, verb, unit, arg) VALUES (?, 'retry', ?,"
                       " 'null')", (time.time(), unit))
    store.conn.execute("INSERT INTO commands (ts, verb, unit, arg) VALUES (?, 'cancel',"
                       " 'r0c0', 'null')", (time.time(),))
    worker = start_worker(store.path)
    try:
        wait_for(lambda: not store.pending_commands())
        rows = store.conn.execute("SELECT state, result FROM commands ORDER BY id").fetchall()
        assert rows[0]["state"] == "error" and "only failed or cancelled" in rows[0]["result"]
        assert rows[1]["state"] == "error" and "no unit 'r0c0'" in rows[1]["result"]
    finally:
        worker.stop()
        worker.join(30)


def test_a_paused_worker_gives_no_eta(tmp_path: Path, emulator: Emulator) -> None:
    """While paused nothing is sent, so an ETA would only run on: there is none."""
    from tests.engine.test_safety import wait_for, worker_thread

    store = make_session(tmp_path, emulator.url, bbox="[0, 0, 2, 1]", max_tasks=1)  # 8 units
    with worker_thread(store):
        wait_for(lambda: store.counts().get("done", 0) >= 2, "two units done")
        command = store.post_command("pause")
        wait_for(lambda: store.command(command)["state"] == "done", "the pause")
        paused_at = time.time()
        status = wait_for(lambda: (s := store.worker_status()) and
                          s["updated"] > paused_at and s, "a status written while paused")
        assert status["units_per_hour"] > 0 and status["eta_seconds"] is None, status
