"""What the reliability parts feed eebatch's command line, and how they run it: job files
drawn by hypothesis with a fixed seed (the fuzz strategy of tests/core/test_job_fuzz.py, plus
encodings and [batches]), command lines, damaged session files; `eebatch ARGV` in this process
or as a user runs it, its outcome, and a tally of one invariant over many cases.
"""

from __future__ import annotations

import contextlib
import io
import random
import sqlite3
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from tests.core.test_job_fuzz import TOKENS, _toml_value, jobs
from tests.reliability.common import Result
from tests.reliability.harness import ROOT

T = TypeVar("T")

FUZZ_BACKEND = b"http://127.0.0.1:8787"  # the URL test_job_fuzz's valid job names


def draw_many(strategy: st.SearchStrategy[T], n: int, seed: int) -> list[T]:
    """`n` examples of `strategy`, the same ones for the same seed: hypothesis generates only
    (no shrinking, no example database), so judging happens outside it."""
    out: list[T] = []

    @hypothesis_seed(seed)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(example: T) -> None:
        out.append(example)

    collect()
    return out


# -- job files ---------------------------------------------------------------------------------

BAD_BYTES = [b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80",
             b"\x00", b"\xe2\x82"]


def _reencode(body: bytes, how: str, at: int) -> bytes:
    """The job file as an editor on another system might have saved it."""
    at = at % (len(body) + 1)
    if how == "bom":  # Notepad's UTF-8 with a byte-order mark
        return b"\xef\xbb\xbf" + body
    if how == "utf-16":
        return body.decode("utf-8", "replace").encode("utf-16")
    if how == "latin-1":
        return body.decode("utf-8", "replace").replace('"fuzz"', '"füzz"').encode(
            "latin-1", "replace")
    if how == "crlf":  # Windows line ends: valid TOML
        return body.replace(b"\n", b"\r\n")
    if how == "cr":  # old Mac line ends: one long line
        return body.replace(b"\n", b"\r")
    if how == "truncated":  # a copy cut short
        return body[:at]
    if how.startswith("bytes:"):
        return body[:at] + BAD_BYTES[int(how[6:]) % len(BAD_BYTES)] + body[at:]
    return body


ENCODINGS = ["utf-8"] * 6 + ["bom", "utf-16", "latin-1", "crlf", "cr", "truncated",
                             *(f"bytes:{i}" for i in range(len(BAD_BYTES)))]
batch_values = st.one_of(st.integers(-3, 10), st.sampled_from(
    [0, 2**31, 2**63 - 1, 10**7, "1 month", "16 days", "0 days", "x", 1.5, True, [], "count",
     "date", "nan"]))


@st.composite
def batches_tables(draw: st.DrawFn) -> str:
    """A [batches] table, valid or not, as TOML text."""
    keys = draw(st.lists(st.sampled_from(["by", "size", "count", "images", "step", "bye"]),
                         max_size=4, unique=True))
    table = {key: draw(batch_values) for key in keys}
    if draw(st.booleans()):
        table["by"] = draw(st.sampled_from(["count", "date", "size", "", "Count"]))
    lines = "".join(f'"{k}" = {_toml_value(v)}\n' for k, v in table.items())
    return "\n[batches]\n" + lines


@dataclass(frozen=True)
class JobCase:
    body: bytes
    region: str | None  # a region file r.geojson beside the job, or None
    how: str  # how the bytes were saved (ENCODINGS), for the evidence

    def write(self, directory: Path, backend_url: str) -> Path:
        """Write the job (and its region file) into `directory`; its backend is `backend_url`
        (a port nobody listens on: a valid job's `run` must say so, not hang)."""
        directory.mkdir(parents=True, exist_ok=True)
        if self.region is not None:
            (directory / "r.geojson").write_text(self.region, encoding="utf-8")
        job = directory / "job.toml"
        job.write_bytes(self.body.replace(FUZZ_BACKEND, backend_url.encode()))
        return job


@st.composite
def job_cases(draw: st.DrawFn) -> JobCase:
    body, region = draw(jobs())
    if draw(st.integers(0, 4)) == 0:
        body += draw(batches_tables()).encode()
    how = draw(st.sampled_from(ENCODINGS))
    return JobCase(_reencode(body, how, draw(st.integers(0, 10**6))), region, how)


# -- command lines -----------------------------------------------------------------------------

# Commands that take a job file or a session, with no session in existence: all bad input.
ARG_COMMANDS = ["plan", "new", "run", "status", "rm", "log", "retry", "cancel", "pause",
                "resume", "assemble", "assets", "doctor", "open", "sessions", "recipes"]


@st.composite
def argv_cases(draw: st.DrawFn) -> list[str]:
    command = draw(st.sampled_from(ARG_COMMANDS))
    args = draw(st.lists(TOKENS, min_size=1, max_size=4))
    if command in ("sessions", "recipes") and all(a in ("--", "") for a in args):
        args = [*args, "x"]  # `sessions` alone is valid, and so is `recipes --`
    return [command, *args]


def session_argvs(session: str, workdir: Path) -> list[list[str]]:
    """Command lines that name an existing session (and another whose id starts the same)
    but are wrong otherwise."""
    return [
        ["retry", session, "r999c999"], ["cancel", session, "r999c999"],
        ["retry", session], ["cancel", session], ["retry", session, "r0c0", "--failed"],
        ["cancel", session, "r0c0", "--all"], ["status", session, "--csv", "/no/such/dir/x.csv"],
        ["status", session, "--csv", str(workdir)], ["run", session, "--every", "0"],
        ["run", session, "--every", "nan"], ["run", session, "--every", "-1"],
        ["log", session, "--bogus"], ["assets", "bogus", session],
        ["doctor", session, "--probe", "no-such.toml"], ["rm", session],
        ["status", session[:-1]], ["pause", session, "extra"], ["assemble", session, "--cog=1"],
        ["open", session, "--attach=x"], ["status", session + "\x00"],
    ]


# -- damaged session files ---------------------------------------------------------------------

PAGE = 4096


def _sql(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


def _foreign_sqlite(path: Path, rng: random.Random) -> None:
    path.unlink()
    _sql(path, "CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)",
         "INSERT INTO photos (name) VALUES ('cat.jpg')")


# Whole-file damage: every command that takes the session must refuse it (exit 2, one line).
DAMAGES: dict[str, Callable[[Path, random.Random], None]] = {
    "empty": lambda p, r: p.write_bytes(b""),
    "truncated at a page": lambda p, r: p.write_bytes(
        p.read_bytes()[:PAGE * r.randrange(1, max(2, p.stat().st_size // PAGE))]),
    "truncated mid-page": lambda p, r: p.write_bytes(
        p.read_bytes()[:r.randrange(1, p.stat().st_size)]),
    "random bytes": lambda p, r: p.write_bytes(r.randbytes(p.stat().st_size)),
    "header overwritten": lambda p, r: p.write_bytes(r.randbytes(100) + p.read_bytes()[100:]),
    "newer schema": lambda p, r: _sql(p, "PRAGMA user_version = 99"),
    "older schema stamp": lambda p, r: _sql(p, "PRAGMA user_version = 4"),
    "no session row": lambda p, r: _sql(p, "DELETE FROM session"),
    "a table missing": lambda p, r: _sql(p, "DROP TABLE units"),
    "another program's SQLite": _foreign_sqlite,
}


def damage_page(path: Path, page: int, rng: random.Random) -> None:
    """Overwrite page `page` (from 1; the first keeps its 100-byte header) with random bytes.
    What a command finds depends on which table the page held."""
    data = bytearray(path.read_bytes())
    start = (page - 1) * PAGE + (100 if page == 1 else 0)
    data[start:page * PAGE] = rng.randbytes(page * PAGE - start)
    path.write_bytes(bytes(data))


def remove_companions(path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def describe(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


# -- running the command line ------------------------------------------------------------------

@dataclass
class Outcome:
    argv: list[str]
    code: int | None
    out: str
    err: str
    crash: str = ""  # the traceback of an exception that escaped main
    seconds: float = 0.0

    @property
    def lines(self) -> list[str]:
        return self.err.strip().splitlines()

    def evidence(self) -> str:
        shown = self.crash.strip().splitlines()[-1] if self.crash else self.err.strip()[-300:]
        argv = describe(" ".join(self.argv), 160)
        return f"eebatch {argv} -> exit {self.code}: {shown!r}"


@dataclass
class Tally:
    """One invariant over many cases: how many held, the first few that did not."""

    tried: int = 0
    failed: list[str] = field(default_factory=list)

    def add(self, held: bool, evidence: str) -> None:
        self.tried += 1
        if not held:
            self.failed.append(evidence)

    def record(self, result: Result, name: str) -> None:
        shown = "; ".join(self.failed[:3])
        more = f" (and {len(self.failed) - 3} more)" if len(self.failed) > 3 else ""
        result.check(f"{name} ({self.tried - len(self.failed)}/{self.tried})", not self.failed,
                     shown + more)


class _NoDashboard(Exception):
    pass


@contextlib.contextmanager
def _no_dashboard() -> Iterator[None]:
    """`eebatch open` in this process must never get as far as a screen: if it does, that is
    the bug, said as an exception instead of a dashboard waiting for a terminal."""
    import tui.launch

    def refuse(*args: object, **kwargs: object) -> int:
        raise _NoDashboard("the dashboard was started")

    saved = tui.launch.run_dashboard
    tui.launch.run_dashboard = refuse  # type: ignore[assignment]
    try:
        yield
    finally:
        tui.launch.run_dashboard = saved  # type: ignore[assignment]


def cli(argv: list[str]) -> Outcome:
    """`eebatch ARGV` in this process: exit code, output, and any exception that escaped."""
    from tui.cli import main

    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    crash = ""
    code: int | None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _no_dashboard():
            code = main(list(argv))
    except SystemExit as exc:  # argparse's own refusal
        code = exc.code if isinstance(exc.code, int) else 2
    except BaseException:
        code, crash = None, traceback.format_exc()
    return Outcome(argv, code, out.getvalue(), err.getvalue(), crash,
                   time.perf_counter() - started)


def cli_process(argv: list[str], timeout: float = 120.0) -> Outcome:
    """`python -m tui ARGV` as a user runs it (stdin not a terminal)."""
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "tui", *argv], cwd=ROOT,
                              capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Outcome(argv, None, "", "", f"still running after {timeout:.0f} s",
                       time.perf_counter() - started)
    err = done.stderr.decode("utf-8", "backslashreplace")
    crash = err if "Traceback (most recent call last)" in err else ""
    return Outcome(argv, done.returncode, done.stdout.decode("utf-8", "backslashreplace"), err,
                   crash, time.perf_counter() - started)


