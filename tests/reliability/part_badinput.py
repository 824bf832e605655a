"""Bad input: generated job files and command lines through `eebatch plan`, `new` and `run`, and
damaged session files under every command that takes a session. Each must end in exit code 2
with one line per problem naming what and where, no traceback, and nothing written: the user
data dir (sessions, logs) and the job's folder (its output dir) stay as they were.

Most commands run in this process through tui.cli.main (a few ms each); a sample runs as users
run it, `python -m tui ...` in a process of its own. tests/core/test_job_fuzz.py and
tests/test_cli_errors.py hold the unit-test side of the same; this part reuses their strategy
and adds encodings, [batches], every session command, damaged files of ten kinds, a locked file.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.store import Store
from tests.reliability import _inputs
from tests.reliability._inputs import Outcome, Tally, cli, cli_process
from tests.reliability.common import Result
from tests.reliability.harness import ROOT, use_home

# The commands that take a session, each with the arguments after the session id.
SESSION_COMMANDS: list[tuple[str, ...]] = [
    ("status",), ("status", "--csv", "{csv}"), ("log",), ("retry", "r0c0"),
    ("retry", "--failed"), ("cancel", "--all"), ("cancel", "r0c0"), ("pause",), ("resume",),
    ("assemble",), ("assets", "list"), ("doctor",), ("run", "--headless", "--every", "0.2"),
    ("open",), ("rm",),
]
# The commands that read the whole session (a readable one would start a worker or a screen
# under run and open, and ask EE under assets); four of them in quick.
PAGE_COMMANDS = [("status",), ("status", "--csv", "{csv}"), ("log",), ("retry", "--failed"),
                 ("cancel", "--all"), ("assemble",), ("doctor",), ("rm",)]
QUICK_PAGE_COMMANDS = [("status",), ("log",), ("doctor",), ("rm",)]
QUICK_PROCESS = [("open",), ("run", "--headless", "--every", "0.2"), ("status",), ("rm",)]
LOCK_WAIT = 30.0  # the store's busy timeout: a locked file is waited for this long


def tree(*roots: Path) -> dict[str, str]:
    """Every file under the roots with its MD5: what 'nothing written' compares. Left out:
    directories (eebatch makes its own data dir on any look) and empty `SESSION.sqlite.lock`
    files (a look at whether a worker holds a session takes its lock file, empty, for an
    instant; it is how one worker per session is kept, and it holds no data)."""
    found: dict[str, str] = {}
    for root in roots:
        for path in sorted(root.rglob("*")) if root.exists() else []:
            if not path.is_file() or (path.name.endswith(".sqlite.lock")
                                      and path.stat().st_size == 0):
                continue
            found[str(path)] = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    return found


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    made = [f"+{p}" for p in after if p not in before]
    gone = [f"-{p}" for p in before if p not in after]
    changed = [f"~{p}" for p in after if p in before and after[p] != before[p]]
    return made + gone + changed


def _one_line_each(outcome: Outcome, names: tuple[str, ...]) -> bool:
    """Exit 2, stdout empty, every stderr line `error: ...` naming one of `names`, no line
    twice."""
    lines = outcome.lines
    return (outcome.code == 2 and not outcome.crash and outcome.out == "" and bool(lines)
            and all(line.startswith("error: ") and any(n in line for n in names)
                    for line in lines) and len(set(lines)) == len(lines))


def _refusal(outcome: Outcome) -> bool:
    """One `error: ...` line, or argparse's usage line and its `eebatch CMD: error: ...`."""
    lines = outcome.lines
    return (len(lines) == 1 and lines[0].startswith("error: ")) or (
        len(lines) >= 2 and lines[0].startswith("usage: ") and ": error: " in lines[-1]
        and all(line.startswith(" ") for line in lines[1:-1]))


@contextlib.contextmanager
def closed_port() -> Iterator[str]:
    """A loopback URL where nothing listens, for as long as the block runs (bound, never
    listening: a connection is refused at once)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


# -- job files ---------------------------------------------------------------------------------

def _job_files(result: Result, quick: bool, seed: int, workdir: Path, home: Path,
               url: str) -> None:
    n = 300 if quick else 1500
    cases = _inputs.draw_many(_inputs.job_cases(), n, seed)
    every_new = 10 if quick else 1  # `new` and `run` validate as `plan` does: a sample in quick
    every_process = 10**9 if quick else 50  # quick: the first refused file only
    refused = 0
    crashes, lines, unwritten, agree, processes = Tally(), Tally(), Tally(), Tally(), Tally()
    codes = {0: 0, 2: 0}
    slowest = 0.0
    sessions = home / "data" / "sessions"
    for i, case in enumerate(cases):
        folder = workdir / "jobs" / f"{i:04d}"
        job = case.write(folder, url)
        names = (str(job), str(folder / "r.geojson"))
        what = f"case {i} ({case.how}) {_inputs.describe(case.body, 200)}"
        before = tree(home, folder)
        plan = cli(["plan", str(job)])
        slowest = max(slowest, plan.seconds)
        crashes.add(plan.code in (0, 2) and not plan.crash, f"{what}: {plan.evidence()}")
        if plan.code in codes:
            codes[plan.code] += 1
        if plan.code == 2:
            lines.add(_one_line_each(plan, names), f"{what}: {plan.evidence()}")
        commands = [["new", str(job)], ["run", str(job), "--headless"]] if i % every_new == 0 \
            else []
        for argv in commands:
            got = cli(argv)
            crashes.add(not got.crash and got.code in (0, 1, 2), f"{what}: {got.evidence()}")
            if plan.code == 2:
                agree.add(_one_line_each(got, names) and got.lines == plan.lines,
                          f"{what}: {got.evidence()} but plan said {plan.err!r}")
            elif argv[0] == "new":
                agree.add(got.code == 0 and len(list(sessions.glob("*.sqlite"))) == 1,
                          f"{what}: {got.evidence()}")
            else:  # a valid job's run: its backend does not answer (or is not set up): exit 1,
                # its last line says so (after the plan's warnings, if any)
                agree.add(got.code == 1 and got.lines[-1:] != [] and got.lines[-1].startswith(
                    "error: "), f"{what}: {got.evidence()}")
            if plan.code != 2:  # the session a valid job made, and its log, go again
                shutil.rmtree(home / "data", ignore_errors=True)
                shutil.rmtree(home / "log", ignore_errors=True)
                shutil.rmtree(folder / "out", ignore_errors=True)
        refused += plan.code == 2
        if plan.code == 2 and (refused - 1) % every_process == 0:
            for command in ("plan", "new", "run"):
                got = cli_process([command, str(job)])
                processes.add(_one_line_each(got, names) and got.lines == plan.lines,
                              f"{what}: {got.evidence()}")
        if plan.code == 2:
            unwritten.add(not changes(before, tree(home, folder)),
                          f"{what}: {_inputs.describe(changes(before, tree(home, folder)))}")
        shutil.rmtree(folder, ignore_errors=True)
    crashes.record(result, "job files: plan, new and run exit 0, 1 or 2, never a traceback")
    lines.record(result, "job files refused: exit 2, one `error: FILE: ...` line per problem")
    agree.record(result, "job files: new and run refuse what plan refuses, in the same lines")
    processes.record(result, "job files, as a user runs them (python -m tui): the same lines")
    unwritten.record(result, "job files refused: nothing written (data dir, job folder)")
    result.numbers.update({"job_files": len(cases), "job_files_valid": codes[0],
                           "job_files_refused": codes[2],
                           "slowest_plan_s": round(slowest, 2)})


# -- command lines -----------------------------------------------------------------------------

def _arguments(result: Result, quick: bool, seed: int, workdir: Path, home: Path,
               url: str) -> None:
    argvs = _inputs.draw_many(_inputs.argv_cases(), 150 if quick else 600, seed + 1)
    refused, sampled = Tally(), Tally()
    for i, argv in enumerate(argvs):
        before = tree(home, workdir / "args")
        got = cli(argv)
        after = tree(home, workdir / "args")
        refused.add(got.code == 2 and not got.crash and "error: " in got.err
                    and not changes(before, after), got.evidence())
        if i % (50 if quick else 10) == 0 and not any("\x00" in a for a in argv):
            got = cli_process(argv)  # (no process takes a NUL in its arguments)
            sampled.add(got.code == 2 and not got.crash and "error: " in got.err,
                        got.evidence())
    refused.record(result, "malformed arguments, no session: exit 2, an error, nothing written")
    sampled.record(result, "malformed arguments as a user runs them (python -m tui)")

    # The same session named, the rest wrong: the session file and the data dir unchanged.
    folder = workdir / "args"
    session = _new_session(folder, home, url).stem
    _new_session(folder, home, url)  # a second: a prefix of both is ambiguous
    near = Tally()
    for argv in _inputs.session_argvs(session, workdir):
        before = tree(home / "data", folder)
        got = cli(argv)
        near.add(got.code == 2 and not got.crash and _refusal(got)
                 and not changes(before, tree(home / "data", folder)),
                 f"{got.evidence()} {changes(before, tree(home / 'data', folder))}")
    near.record(result, "arguments wrong around a real session: exit 2, nothing written")
    shutil.rmtree(home / "data", ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    result.numbers["command_lines"] = len(argvs) + len(_inputs.session_argvs("s", workdir))


def _valid_job() -> bytes:
    from tests.core.test_job_fuzz import VALID, to_toml

    return to_toml(VALID).encode()


# -- damaged session files ---------------------------------------------------------------------

def _session_argv(session: str, command: tuple[str, ...], csv: Path) -> list[str]:
    verb, *rest = command
    if verb == "assets":
        return [verb, rest[0], session]
    return [verb, session, *(a.replace("{csv}", str(csv)) for a in rest)]


def _new_session(folder: Path, home: Path, url: str) -> Path:
    """A healthy session of a valid job whose backend does not answer, made by `eebatch new`."""
    job = _inputs.JobCase(_valid_job(), None, "utf-8").write(folder, url)
    made = cli(["new", str(job)])
    assert made.code == 0, made.evidence()
    return max((home / "data" / "sessions").glob("*.sqlite"), key=lambda p: p.stat().st_mtime)


def _damaged_sessions(result: Result, quick: bool, seed: int, workdir: Path, home: Path,
                      url: str) -> None:
    rng = random.Random(seed)
    folder = workdir / "damaged"
    path = _new_session(folder, home, url)
    session, pristine = path.stem, path.read_bytes()
    csv = folder / "units.csv"
    names = (str(path), session)
    shutil.rmtree(home / "log", ignore_errors=True)

    tried = 0
    sampled = Tally()
    for k, (kind, damage) in enumerate(_inputs.DAMAGES.items()):
        tally = Tally()
        # As users run it: every command in the full run; in quick, one command for every
        # third kind, in turn `open`, `run`, `status`, `rm`.
        in_turn = SESSION_COMMANDS.index(QUICK_PROCESS[k // 3 % 4]) if k % 3 == 0 else -1
        for n, command in enumerate(SESSION_COMMANDS):
            path.write_bytes(pristine)
            _inputs.remove_companions(path)
            damage(path, rng)
            damaged = path.read_bytes()
            before = tree(home, folder)
            argv = _session_argv(session, command, csv)
            got = cli(argv)
            after = tree(home, folder)
            held = (got.code == 2 and not got.crash and got.out == "" and len(got.lines) == 1
                    and any(name in got.lines[0] for name in names)
                    and path.read_bytes() == damaged and not changes(before, after))
            tally.add(held, f"{got.evidence()} {_inputs.describe(changes(before, after), 200)}")
            tried += 1
            if not quick or n == in_turn:
                path.write_bytes(damaged)
                _inputs.remove_companions(path)
                shutil.rmtree(home / "log", ignore_errors=True)
                got = cli_process(argv)
                sampled.add(got.code == 2 and not got.crash and len(got.lines) == 1
                            and path.read_bytes() == damaged, f"[{kind}] {got.evidence()}")
            shutil.rmtree(home / "log", ignore_errors=True)
        tally.record(result, f"session file damaged ({kind}): exit 2, one line naming it, "
                             "nothing written")
    sampled.record(result, "damaged session files as a user meets them (python -m tui)")

    # Each page overwritten in turn (three random fills each in the full run): what breaks
    # depends on the page, so only crashes and many-line refusals are judged.
    pages = Tally()
    for page in [p for p in range(2, len(pristine) // _inputs.PAGE + 1)
                 for _ in range(1 if quick else 3)]:
        path.write_bytes(pristine)
        _inputs.remove_companions(path)
        _inputs.damage_page(path, page, rng)
        for command in PAGE_COMMANDS if not quick else QUICK_PAGE_COMMANDS:
            got = cli(_session_argv(session, command, csv))
            pages.add(not got.crash and got.code in (0, 1, 2)
                      and (got.code != 2 or len(got.lines) == 1),
                      f"page {page}: {got.evidence()}")
            tried += 1
    pages.record(result, "any one page of the session overwritten: no traceback, at most one "
                         "line")

    # Healthy, but its backend does not answer: the commands that need EE say so in a line.
    path.write_bytes(pristine)
    _inputs.remove_companions(path)
    away = Tally()
    for command in (("run", "--headless", "--every", "0.2"), ("assets", "list"),
                    ("assets", "merge", "--yes")):
        got = cli(_session_argv(session, command, csv))
        away.add(got.code == 1 and not got.crash and got.lines[-1:] != []
                 and "does not answer" in got.lines[-1], got.evidence())
        tried += 1
    away.record(result, "a session whose emulator does not answer: exit 1, one line saying so")
    result.numbers["session_commands"] = tried
    Store.remove_files(path)
    shutil.rmtree(home / "log", ignore_errors=True)


@dataclass
class Locked:
    holder: subprocess.Popen[str]
    runs: list[tuple[str, subprocess.Popen[bytes], threading.Thread, list[float]]]
    path: Path


def _start_locked(workdir: Path, home: Path, url: str) -> Locked:
    """A session file held by another process in an exclusive transaction (as a hung tool
    might), and commands on it started now, each in its own process: they wait out the lock
    in the background while the rest of the part runs. The file lies outside the data dir
    (named by its path) so the other checks' data dir stays their own."""
    made = _new_session(workdir / "locked", home, url)
    path = workdir / "locked" / made.name
    shutil.move(made, path)
    shutil.rmtree(home / "log", ignore_errors=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sqlite3, sys\n"
            f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
            "c.execute('PRAGMA locking_mode=EXCLUSIVE')\n"
            "c.execute('BEGIN EXCLUSIVE'); c.execute('UPDATE settings SET value = value')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    commands = [c for c in SESSION_COMMANDS if c[0] not in ("open", "assets", "doctor")]
    runs = []
    for command in commands:
        argv = _session_argv(str(path), command, workdir / "locked" / "x.csv")
        proc = subprocess.Popen([sys.executable, "-m", "tui", *argv], cwd=ROOT,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        took: list[float] = []
        started = time.monotonic()

        def watch(proc: subprocess.Popen[bytes] = proc, took: list[float] = took,
                  started: float = started) -> None:
            proc.wait()
            took.append(time.monotonic() - started)

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        runs.append((" ".join(argv), proc, thread, took))
    return Locked(holder, runs, path)


def _finish_locked(result: Result, locked: Locked) -> None:
    tally = Tally()
    for argv, proc, thread, _ in locked.runs:
        try:
            err = proc.communicate(timeout=3 * LOCK_WAIT + 60)[1]
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            tally.add(False, f"eebatch {argv}: still waiting after {3 * LOCK_WAIT + 60:.0f} s")
            continue
        thread.join()
        text = err.decode("utf-8", "backslashreplace").strip()
        tally.add(proc.returncode == 2 and len(text.splitlines()) == 1 and "locked" in text
                  and str(locked.path) in text and "Traceback" not in text,
                  f"eebatch {argv} -> exit {proc.returncode}: {text[-300:]!r}")
    assert locked.holder.stdin is not None
    locked.holder.stdin.close()
    locked.holder.wait(timeout=30)
    tally.record(result, "session file locked by another process: exit 2 after the wait, one "
                         "line saying so")
    waits = [took[0] for *_, took in locked.runs if took]
    result.numbers["locked_wait_s"] = round(max(waits), 1) if waits else 0


def run(quick: bool, seed: int, workdir: Path) -> Result:
    result = Result("badinput", "")
    home = use_home(workdir)
    started = time.monotonic()
    with closed_port() as url:
        # A locked file is waited for a minute: the full run only (in the background).
        locked = None if quick else _start_locked(workdir, home, url)
        try:
            for section in (_damaged_sessions, _job_files, _arguments):
                began = time.monotonic()
                section(result, quick, seed, workdir, home, url)
                result.numbers[f"{section.__name__.strip('_')}_s"] = round(
                    time.monotonic() - began, 1)
        finally:
            if locked is not None:
                _finish_locked(result, locked)
    result.tried = (f"{result.numbers['job_files']} generated job files (seed {seed}) through "
                    f"plan/new/run, {result.numbers['command_lines']} malformed command lines, "
                    f"{result.numbers['session_commands']} commands on session files damaged "
                    f"{len(_inputs.DAMAGES)} ways, a page overwritten, or locked")
    result.numbers["seconds"] = round(time.monotonic() - started, 1)
    return result
