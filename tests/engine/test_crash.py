"""kill -9 of a headless run at several points, then a resume: every unit done exactly once,
every file's MD5 right, no EE task left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.engine.runner import run_session
from tests.engine.conftest import (
    admin,
    assert_all_done_and_verified,
    emulator_with,
    inject,
    task_unit,
)
from tests.engine.conftest import make_session as _make

ROOT = Path(__file__).parents[2]

# Kill points: SQL that becomes true at the moment to kill the worker.
POINTS = {
    # An export request is in flight: its attempt (with requestId) is written, EE has not
    # answered yet (the emulator is slowed on that route).
    "mid-submit": "SELECT COUNT(*) FROM attempts WHERE state = 'submitting'",
    "tasks-running": "SELECT COUNT(*) >= 3 FROM attempts WHERE state IN ('PENDING', 'RUNNING')",
    "mid-download": "SELECT COUNT(*) FROM files WHERE state IN ('downloading', 'verified')",
    "half-done": "SELECT COUNT(*) >= 6 FROM units WHERE state = 'done'",
}


@pytest.mark.parametrize("point", list(POINTS))
def test_kill_9_then_resume(point: str, tmp_path: Path) -> None:
    with emulator_with(speed=40.0, slots=3) as emu:
        store = _make(tmp_path, emu.url, bbox="[0, 0, 2, 1]", max_tasks=4)  # 8 units
        if point == "mid-submit":
            inject(emu.url, route="ee image.export", kind="slow", delay=1.5, count=1)
        if point == "mid-download":
            admin(emu.url, "/_emulator/throttle", {"per_connection": 200_000})
        child = subprocess.Popen(
            [sys.executable, "-m", "tui", "run", store.id, "--headless", "--every", "1"],
            cwd=ROOT, env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while not store.conn.execute(POINTS[point]).fetchone()[0]:
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            assert time.time() < deadline, f"never reached {point}"
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        admin(emu.url, "/_emulator/throttle", {"per_connection": None, "total": None})

        summary = run_session(store.path)  # the resume, in this process

        assert summary.ok, (summary.counts, summary.failed)
        assert_all_done_and_verified(store, emu.url)
        tasks = admin(emu.url, "/_emulator/state")["ee"]["tasks"]
        assert not [t for t in tasks if t["state"] in ("PENDING", "RUNNING", "CANCELLING")]
        succeeded: dict[str, int] = {}
        for t in tasks:
            if t["state"] == "SUCCEEDED":
                unit = task_unit(t["description"])
                succeeded[unit] = succeeded.get(unit, 0) + 1
        assert succeeded == {u["id"]: 1 for u in store.units()}  # each unit ran exactly once


def test_units_exported_before_a_restart_do_not_count_as_this_runs_throughput(
        tmp_path: Path) -> None:
    """Finishing what EE exported before the restart takes seconds: counted as this run's
    throughput it showed thousands of units an hour, and an ETA to match."""
    from tests.engine.test_safety import MEDIA_FAULT, wait_for, worker_thread

    with emulator_with() as emu:
        store = _make(tmp_path, emu.url, bbox="[0, 0, 1, 0.5]", max_attempts=50)  # 2 units
        inject(emu.url, **MEDIA_FAULT, kind="status", status=503, count=-1)
        with worker_thread(store):
            wait_for(lambda: store.conn.execute(
                "SELECT COUNT(DISTINCT unit) FROM files").fetchone()[0] == 2,
                "both exports listed in Drive")
        admin(emu.url, "/_emulator/faults", method="DELETE")
        assert run_session(store.path).ok
        assert store.worker_status()["units_per_hour"] == 0


def test_tasks_the_emulator_forgot_are_sent_again_on_resume(tmp_path: Path) -> None:
    """A demo quit with exports in EE, reopened on a fresh emulator (which knows none of
    them): operations.get answers 404 for each, the loss is logged, and each unit is sent
    again as a new attempt, so the job finishes instead of waiting for ever on tasks no one
    runs."""
    from tests.engine.test_safety import accept_exports_without_running_them

    with emulator_with() as first:
        store = _make(tmp_path, first.url, bbox="[0, 0, 1, 0.5]")  # 2 units
        accept_exports_without_running_them(first, store)
    with emulator_with() as fresh:
        summary = run_session(store.path, emulator_url=fresh.url)
        assert summary.ok, summary.failed
        assert_all_done_and_verified(store, fresh.url)
        tasks = admin(fresh.url, "/_emulator/state")["ee"]["tasks"]
        assert sorted(t["state"] for t in tasks) == ["SUCCEEDED", "SUCCEEDED"]
        attempts = store.conn.execute("SELECT unit, n, state FROM attempts ORDER BY unit, n")
        assert [(n, state) for _, n, state in attempts] == [
            (1, "FAILED"), (2, "SUCCEEDED"), (1, "FAILED"), (2, "SUCCEEDED")]
        lost = store.conn.execute("SELECT COUNT(*) FROM events WHERE message LIKE"
                                  " 'EE no longer knows task %'").fetchone()[0]
        assert lost == 2


def test_a_session_moved_to_a_fresh_emulator_finishes(tmp_path: Path) -> None:
    """Half a job done on one emulator, the rest on a fresh one (a demo reopened): the new
    Drive's files are never mistaken for files the session already downloaded."""
    from tests.engine.test_safety import wait_for, worker_thread

    with emulator_with() as first:
        store = _make(tmp_path, first.url, bbox="[0, 0, 2, 0.5]", max_tasks=2)  # 4 units
        with worker_thread(store):
            wait_for(lambda: store.counts().get("done", 0) >= 2, "two units done")
    with emulator_with() as fresh:
        store.conn.execute("UPDATE session SET job_text = replace(job_text, ?, ?)",
                           (first.url, fresh.url))
        with worker_thread(store):
            wait_for(lambda: store.counts() == {"done": 4}, "the rest done on the fresh one")
        ids = [r[0] for r in store.conn.execute("SELECT drive_id FROM files")]
        assert len(ids) == len(set(ids)) == 4
