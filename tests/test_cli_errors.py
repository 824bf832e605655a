"""What a user sees when something is wrong: a damaged session file, an unwritable --csv path,
a closed pipe, bad emulator options. One line on stderr, exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from core import paths
from core.session import create_session
from tests.conftest import BASE_JOB, write_job
from tui.cli import main

ROOT = Path(__file__).parents[1]


def _garbage_header(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(b"this is not sqlite at all" + data[25:])


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:4096])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


DAMAGE: dict[str, Callable[[Path], None]] = {
    "garbage-header": _garbage_header, "truncated": _truncated, "empty": _empty}


@pytest.fixture(params=sorted(DAMAGE))
def damaged(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A session t-1 whose file was then damaged."""
    store, _ = create_session(write_job(tmp_path, BASE_JOB))
    path = store.path
    store.close()
    DAMAGE[request.param](path)
    return path


def _one_error_line(err: str, *needles: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_status_of_a_damaged_session_is_one_line(damaged: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    size = damaged.stat().st_size
    assert main(["status", "t-1"]) == 2
    err = capsys.readouterr().err
    _one_error_line(err, "t-1.sqlite", "not a readable eebatch session", "eebatch rm t-1")
    assert damaged.stat().st_size == size  # looking at it did not write into it


def test_run_of_a_damaged_session_is_one_line(damaged: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "t-1", "--headless", "--every", "0.1"]) == 2
    _one_error_line(capsys.readouterr().err, "t-1.sqlite", "not a readable eebatch session")


def test_open_of_a_damaged_session_is_one_line_before_any_screen(
        damaged: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import tui.launch

    def no_dashboard(*args: object, **kwargs: object) -> int:
        raise AssertionError("the dashboard must not start on a damaged session")

    monkeypatch.setattr(tui.launch, "run_dashboard", no_dashboard)
    assert main(["open", "t-1"]) == 2
    _one_error_line(capsys.readouterr().err, "t-1.sqlite", "not a readable eebatch session")


def test_rm_removes_a_damaged_session(damaged: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rm", "t-1"]) == 2  # no terminal to ask on: refused, kept
    _one_error_line(capsys.readouterr().err, "--yes")
    assert damaged.exists()

    assert main(["rm", "t-1", "--yes"]) == 0
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "t-1" in out.out
    assert sorted(p.name for p in paths.sessions_dir().iterdir()) == []


def test_rm_of_a_damaged_session_asks_first(damaged: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    answers = iter(["n", "y"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    assert main(["rm", "t-1"]) == 1
    assert damaged.exists()
    assert main(["rm", "t-1"]) == 0
    assert not damaged.exists()


def test_sessions_lists_a_damaged_session_on_one_line(
        damaged: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    create_session(write_job(tmp_path, BASE_JOB))[0].close()  # t-2, intact
    assert main(["sessions"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    lines = out.strip().splitlines()
    assert len(lines) == 3, lines  # header, t-2, the damaged t-1
    assert any(line.startswith("t-2 ") and "0/8 done" in line for line in lines)
    (bad,) = [line for line in lines if line.startswith("t-1 ")]
    assert "damaged" in bad and "eebatch rm t-1" in bad


def test_status_csv_into_a_missing_directory_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    create_session(write_job(tmp_path, BASE_JOB))[0].close()
    target = tmp_path / "no" / "such" / "x.csv"
    assert main(["status", "t-1", "--csv", str(target)]) == 2
    _one_error_line(capsys.readouterr().err, str(target))
    assert not target.exists() and not target.parent.exists()


def test_plan_into_a_closed_pipe_exits_quietly() -> None:
    """`eebatch plan JOB | head`: the reader went away; no BrokenPipeError traceback."""
    child = subprocess.Popen([sys.executable, "-m", "tui", "plan", "examples/california.toml"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # before the child (still importing) writes a byte
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 1
    assert err == "", err


@pytest.mark.parametrize("option", [
    ["--port", "99999"], ["--port", "-1"], ["--port", "http"],
    ["--speed", "0"], ["--speed", "-2"], ["--speed", "nan"], ["--speed", "inf"],
    ["--drive-quota", "abc"], ["--drive-quota", "-5 GB"],
    ["--internal-error-rate", "2"], ["--internal-error-rate", "-0.1"],
    ["--internal-error-rate", "nan"],
])
def test_bad_emulator_options_are_refused_by_the_parser(
        option: list[str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import core.emulator.app

    def no_emulator(*args: object, **kwargs: object) -> None:
        raise AssertionError("the emulator must not start on bad options")

    monkeypatch.setattr(core.emulator.app, "Emulator", no_emulator)
    with pytest.raises(SystemExit) as exit_:
        main(["emulator", *option])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith("eebatch emulator: error: argument "
                                                     + option[0]), err


def test_the_dashboard_on_a_damaged_session_raises_a_store_error(damaged: Path) -> None:
    """The picker and `eebatch run` open sessions through run_dashboard: a damaged file is a
    StoreError (one line from main) before any screen, not a sqlite3 error."""
    from core.store import SessionDamaged
    from tui.launch import run_dashboard

    with pytest.raises(SessionDamaged):
        run_dashboard(damaged, start_worker=False)


def test_a_job_files_problems_print_one_a_line(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Each problem is one line, "error: FILE: KEY: MESSAGE", byte for byte as before problems
    became values (their line numbers are not printed)."""
    path = write_job(tmp_path, BASE_JOB.replace("size = 1", "size = 0")
                     + "\n[limits]\nmax_taks = 3\n[time]\nstart = 2023-06-01\nend = 2023-05-01\n")
    assert main(["plan", str(path)]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == (
        f"error: {path}: limits.max_taks: unknown key; known: max_tasks, drive_budget, "
        "max_attempts, split_depth, poll_seconds, download_workers, listing_grace_minutes, "
        "eecu_hours, eecu_tier_hours, pause_when_restricted, straggler_factor, direct_requests\n"
        f"error: {path}: grid.size: must be > 0, got 0\n"
        f"error: {path}: time.end: 2023-05-01 is not after time.start 2023-06-01 "
        "(end is exclusive)\n")
    path.write_bytes(b"[job\n")
    assert main(["new", str(path)]) == 2
    assert capsys.readouterr().err == (f"error: {path}: not valid TOML: Expected ']' at the end "
                                       "of a table declaration (at line 1, column 5)\n")
