"""The CLI as a user runs it: a subprocess, its output, its exit code, what it wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core import paths
from tests.conftest import BASE_JOB, write_job

ROOT = Path(__file__).parents[1]


def eebatch(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tui", *args], cwd=ROOT, capture_output=True,
                          text=True, input=stdin, env={**os.environ}, timeout=120)


def test_plan_prints_the_plan_and_writes_nothing() -> None:
    result = eebatch("plan", "examples/california.toml")
    assert result.returncode == 0, result.stderr
    assert "Units    30" in result.stdout
    assert "GB estimated" in result.stdout and "████" in result.stdout
    assert list(paths.sessions_dir().iterdir()) == []


def test_bad_job_file_exit_2_one_line_per_problem_nothing_written(tmp_path: Path) -> None:
    body = BASE_JOB.replace("[0, 0, 4, 2]", "[4, 0, 0, 2]") + "\n[limits]\nmax_taks = 3\n"
    job = write_job(tmp_path, body)
    for command in ("plan", "new"):
        result = eebatch(command, str(job))
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 2, lines
        assert all(line.startswith(f"error: {job}: ") for line in lines)
        assert result.stdout == ""
    assert list(paths.sessions_dir().iterdir()) == []


def test_missing_job_file() -> None:
    result = eebatch("plan", "nope.toml")
    assert result.returncode == 2 and "nope.toml: no such job file" in result.stderr


def test_new_sessions_status_rm(tmp_path: Path) -> None:
    job = write_job(tmp_path, BASE_JOB)
    created = eebatch("new", str(job))
    assert created.returncode == 0, created.stderr
    assert "created session t-1: 8 units" in created.stdout

    listed = eebatch("sessions")
    assert "t-1" in listed.stdout and "0/8 done (0%)" in listed.stdout

    status = eebatch("status", "t-1")
    assert "pending" in status.stdout and "8" in status.stdout
    assert "worker       not running" in status.stdout

    assert eebatch("status", "zzz").returncode == 2

    table = tmp_path / "units.csv"
    assert eebatch("status", "t-1", "--csv", str(table)).returncode == 0
    lines = table.read_text().splitlines()
    assert lines[0].startswith("unit,tile,period,state,route,attempts")
    assert len(lines) == 9 and all(",pending," in line for line in lines[1:])

    refused = eebatch("rm", "t-1", stdin="")  # no terminal to ask on: refuse
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert (paths.sessions_dir() / "t-1.sqlite").exists()

    removed = eebatch("rm", "t-1", "--yes")
    assert removed.returncode == 0
    assert not (paths.sessions_dir() / "t-1.sqlite").exists()


def test_help_lists_the_commands() -> None:
    result = eebatch("--help")
    assert result.returncode == 0
    for command in ("plan", "new", "sessions", "status", "rm"):
        assert command in result.stdout


def test_emulator_command_serves_on_loopback_until_interrupted() -> None:
    import re
    import signal

    from core.connect import init_ee

    child = subprocess.Popen([sys.executable, "-m", "tui", "emulator", "--port", "0",
                              "--slots", "3"], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             env={**os.environ})
    try:
        assert child.stdout is not None
        first = child.stdout.readline()
        m = re.fullmatch(r"eebatch emulator ready: (http://127\.0\.0\.1:(\d+))\n", first)
        assert m, first
        import ee

        init_ee(m.group(1), "cli-test")
        assert ee.data.listOperations("projects/cli-test") == []
    finally:
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=30) == 0


def test_run_headless_exits_1_with_a_summary_when_units_fail(tmp_path: Path) -> None:
    from core.emulator.app import Emulator
    from core.emulator.config import EmulatorConfig

    config = EmulatorConfig(speed=200, task_overhead_seconds=2, internal_error_rate=1.0)
    with Emulator(config) as emu:
        job = write_job(tmp_path, BASE_JOB.replace("[0, 0, 4, 2]", "[0, 0, 1, 1]")
                        + f'\n[limits]\nmax_attempts = 1\npoll_seconds = 0.2\n'
                          f'[backend]\nkind = "emulator"\nurl = "{emu.url}"\n')
        result = eebatch("run", str(job), "--headless", "--every", "0.5")
    assert result.returncode == 1, result.stderr
    assert "finished with problems: 1 failed" in result.stdout
    assert "r89c180: Internal error." in result.stdout
    assert "done" in result.stdout.splitlines()[1]  # progress lines came before
    logs = list((paths.log_dir()).glob("t-1.log"))
    assert logs and "worker started" in logs[0].read_text()


def test_new_says_what_plan_would_warn_about(tmp_path: Path) -> None:
    """Tiles of a few pixels at the export scale: valid, but likely a mistake; `new` says so
    as `plan` does, before anything runs."""
    body = BASE_JOB.replace("[0, 0, 4, 2]", "[0, 0, 0.1, 0.1]").replace("size = 1",
                                                                        "size = 0.002")
    job = write_job(tmp_path, body + '\n[backend]\nkind = "emulator"\nurl = "http://127.0.0.1:1"\n')
    result = eebatch("new", str(job))
    assert result.returncode == 0, result.stderr
    assert "warning: grid.size:" in result.stderr


def test_log_follow_prints_new_events_as_they_come_and_ends_on_ctrl_c(tmp_path: Path) -> None:
    import select
    import signal
    import time

    from core.session import create_session

    store, _ = create_session(write_job(tmp_path, BASE_JOB))
    child = subprocess.Popen([sys.executable, "-m", "tui", "log", store.id, "-f"], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert child.stdout is not None
        seen: list[str] = []

        def wait_for_line(text: str) -> None:
            deadline = time.monotonic() + 60
            while not any(text in line for line in seen):
                assert time.monotonic() < deadline, f"never printed {text!r}: {seen}"
                ready, _, _ = select.select([child.stdout], [], [], 0.5)
                if ready:
                    seen.append(child.stdout.readline())

        wait_for_line("session created")  # what was there already
        with store.tx():
            store.log("will retry in 3 s: Internal error.", "warning", "r0c0")
        wait_for_line("will retry in 3 s: Internal error.")  # what came after
        child.send_signal(signal.SIGINT)
        assert child.wait(30) == 0
    finally:
        if child.poll() is None:
            child.kill()
        store.close()
