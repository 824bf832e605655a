"""The cost guard: the EECU cap stops a job at its limit (and a raised cap lets it go on), the
status says what the job cost and will cost, restricted mode pauses a job that asks for it,
and a straggler is cancelled and sent again once. The real worker and earthengine-api against
the emulator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.engine.runner import run_session, start_worker
from core.states import IN_EE
from core.store import Store
from tests.engine.conftest import admin, emulator_with, make_session
from tests.engine.test_safety import wait_for


def ee_tasks(url: str, session: str) -> list[dict]:
    return [t for t in admin(url, "/_emulator/state")["ee"]["tasks"]
            if t["description"].startswith(f"eebatch_{session}_")]


def waiting(store: Store) -> str:
    return (store.worker_status() or {}).get("waiting") or ""


def capped(store: Store) -> bool:
    return "EECU cap" in waiting(store) and store.count_units_in(IN_EE) == 0


def test_the_eecu_cap_stops_the_job_at_its_limit_and_a_raised_cap_goes_on(
        tmp_path: Path) -> None:
    with emulator_with() as emu:
        # A cap below one export: nothing is known of a unit's cost until the first one
        # finishes, so one is sent, and after it nothing more.
        store = make_session(tmp_path, emu.url, max_tasks=4, limits={"eecu_hours": 0.0001})
        worker = start_worker(store.path)
        try:
            wait_for(lambda: capped(store), "the cap's wait")
            assert len(ee_tasks(emu.url, store.id)) == 1
            one = store.spend().used
            assert one > 0.36  # the one export took the job past its cap of 0.36 EECU-s
            assert "limits.eecu_hours" in waiting(store)
            assert "eecu_hours N" in waiting(store)  # how to go on
            # Raised to the used EECU and 2.5 more units' worth: two more exports, no third.
            cap = (one * 3.5) / 3600
            store.post_command("set", arg={"key": "eecu_hours", "value": cap})
            wait_for(lambda: len(ee_tasks(emu.url, store.id)) == 3 and capped(store),
                     "two more exports, then the cap again")
            assert store.spend().used <= cap * 3600 * 1.25  # the jitter of one unit at most
            assert len(ee_tasks(emu.url, store.id)) == 3
            assert store.counts().get("failed", 0) == 0
        finally:
            worker.stop()
            worker.join(30)
        status = subprocess.run([sys.executable, "-m", "tui", "status", store.id],
                                capture_output=True, text=True)
        assert "EECU-hours" in status.stdout and "cap" in status.stdout, status.stdout
        store.post_command("set", arg={"key": "eecu_hours", "value": 1000})
        summary = run_session(store.path)
        assert summary.ok, summary.failed
        assert len(ee_tasks(emu.url, store.id)) == 8  # every unit exported once


def test_a_bad_cap_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    with emulator_with() as emu:
        store = make_session(tmp_path, emu.url)
        for value in ("nan", "-1", "inf", "lots"):
            done = subprocess.run([sys.executable, "-m", "tui", "set", store.id, "eecu_hours",
                                   value], capture_output=True, text=True)
            assert done.returncode == 2, (value, done.stderr)
            assert "eecu_hours must be" in done.stderr and "Traceback" not in done.stderr
            assert len(done.stderr.strip().splitlines()) == 1
        assert store.conn.execute("SELECT COUNT(*) FROM commands").fetchone()[0] == 0


def test_a_straggler_is_cancelled_and_sent_again_once(tmp_path: Path) -> None:
    # A quarter of the tasks stall (20x their run time); with the watchdog at 4x, each is
    # cancelled once its siblings show how long a unit of its size takes, and sent again.
    with emulator_with(straggler_rate=0.25, speed=10.0) as emu:
        store = make_session(tmp_path, emu.url, max_tasks=8, limits={"straggler_factor": 4})
        summary = run_session(store.path)
        assert summary.ok, summary.failed
        stragglers = store.conn.execute(
            "SELECT unit, state FROM attempts WHERE error LIKE 'straggler:%'").fetchall()
        assert stragglers, "no task straggled: the seed chose none"
        for unit, state in stragglers:
            assert state in ("CANCELLING", "CANCELLED")
            n = store.conn.execute("SELECT COUNT(*) FROM attempts WHERE unit = ?",
                                   (unit,)).fetchone()[0]
            assert n == 2  # once
        events = [r[0] for r in store.conn.execute(
            "SELECT message FROM events WHERE message LIKE 'straggler:%'")]
        assert len(events) == len(stragglers)
        assert "times the" in events[0] and "sent again, once" in events[0]
