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
