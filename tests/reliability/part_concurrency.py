"""Concurrency: two `eebatch new` of one job at once, two workers on one session (at the same
moment, and a second while the first runs), and the dashboard and the CLI steering a running
headless worker (status, pause, cancel, resume and +, retry, rm, log).

What must hold: two `new`s make one session or two clearly separate ones (own output dir and
Drive folder), never a broken one; only one worker ever runs a session and the other says so in
one line; every command a user sends is answered by the running worker; the job ends with
exactly one export per unit attempt, every file verified (the harness's invariants).
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import paths
from core.emulator.app import Emulator
from core.plan import make_plan
from core.session import OWN_OUTPUTS, load_session_spec
from core.spec import load_spec
from core.store import Store
from tests.jobs import job_text
from tests.reliability._inputs import Tally, cli, cli_process
from tests.reliability.common import Result
from tests.reliability.harness import (
    ROOT,
    Ledger,
    Session,
    check_finished_job,
    emulator,
    job_tasks,
    kill9,
    new_session,
    rows,
    scalar,
    start_worker,
    use_home,
    wait_for,
)

PROJECT = "eebatch-demo"  # the emulator project a job without backend.project runs in
TIMEOUT = 120.0  # the longest any one condition is waited for


# -- two `eebatch new` of one job at once ------------------------------------------------------

def _two_news(result: Result, rounds: int, workdir: Path) -> None:
    """Each round a job never run before, and two `eebatch new` of it started together. The
    job is big enough (20,000 units: writing them takes a few tenths of a second) that one
    `new` is still writing when the other looks for unfinished sessions of the job."""
    exits, whole, separate, tidy = Tally(), Tally(), Tally(), Tally()
    sessions_dir = paths.sessions_dir()
    for r in range(rounds):
        folder = workdir / "news" / str(r)
        folder.mkdir(parents=True)
        job = folder / "job.toml"
        job.write_text(job_text(f"both{r}", output_dir="out", region={"bbox": [0, 0, 100, 50]},
                                grid={"size": 0.5}, emulator="http://127.0.0.1:9"))
        units = make_plan(load_spec(job)).units
        procs = [subprocess.Popen([sys.executable, "-m", "tui", "new", str(job)], cwd=ROOT,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for _ in range(2)]
        outs = [p.communicate(timeout=TIMEOUT) for p in procs]
        codes = [p.returncode for p in procs]
        errs = [e.decode("utf-8", "backslashreplace") for _, e in outs]
        exits.add(codes == [0, 0] and not any("Traceback" in e for e in errs),
                  f"round {r}: exits {codes}: {[e[-200:] for e in errs]}")
        made = sorted(sessions_dir.glob(f"both{r}-*.sqlite"))
        problems = [_whole(path, units) for path in made]
        whole.add(len(made) in (1, 2) and not any(problems),
                  f"round {r}: {[p.name for p in made]}: {[p for p in problems if p]}")
        where = [_writes_to(path) for path in made]
        separate.add(len(set(where)) == len(where),
                     f"round {r}: {[p.stem for p in made]} both write to {where[0][0]} and Drive "
                     f"folder {where[0][1]!r} ({OWN_OUTPUTS} set on neither)")
        left = [p.name for p in sessions_dir.glob(".*.tmp*")]
        tidy.add(not left, f"round {r}: {left}")
    exits.record(result, "two `new` of one job at once: both exit 0, no traceback")
    whole.record(result, "two `new` at once: each session whole (integrity_check, every unit)")
    separate.record(result, "two `new` at once: two sessions write to their own output dir and "
                            "Drive folder")
    tidy.record(result, "two `new` at once: no temporary file left")


def _whole(path: Path, units: int) -> str:
    """What is wrong with a session file, or ''."""
    try:
        store = Store(path)
    except Exception as exc:  # any refusal to open is the finding
        return f"{path.name}: {exc}"
    try:
        check = store.conn.execute("PRAGMA integrity_check").fetchone()[0]
        n = store.conn.execute("SELECT COUNT(*) FROM units").fetchone()[0]
        if check != "ok" or n != units:
            return f"{path.name}: integrity {check!r}, {n} of {units} units"
        return ""
    finally:
        store.close()


def _writes_to(path: Path) -> tuple[str, str]:
    store = Store(path)
    try:
        spec = load_session_spec(store)
        return str(spec.output_dir), spec.export.folder
    finally:
        store.close()


# -- two workers -------------------------------------------------------------------------------

@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text("utf-8", "backslashreplace")


def _worker(session: Session, log: Path) -> Run:
    return Run(start_worker(session, log), log)


def _busy_refusal(run: Run, session: Session) -> bool:
    """The second worker: exit 2 and one error line saying who runs the session."""
    errors = [line for line in run.text().splitlines() if line.startswith("error: ")]
    return (run.proc.returncode == 2 and "Traceback" not in run.text() and len(errors) == 1
            and "already being run by" in errors[0] and session.id in errors[0])


def _two_workers_at_once(result: Result, emu: Emulator, ledger: Ledger, rounds: int,
                         workdir: Path) -> None:
    one, refused, rows_ = Tally(), Tally(), Tally()
    finished: list[Result] = []
    for r in range(rounds):
        folder = workdir / f"pair{r}"
        folder.mkdir(parents=True)
        session = new_session(folder, emu.url, name=f"pair{r}", bbox="[0, 0, 2, 1]",
                              max_tasks=4, folder=f"pair{r}")
        runs = [_worker(session, folder / f"worker{i}.log") for i in range(2)]
        for run in runs:
            try:
                run.proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                kill9(run.proc)
        codes = sorted(run.proc.returncode for run in runs)
        one.add(codes == [0, 2], f"round {r}: exits {codes}: "
                                 f"{[run.text()[-300:] for run in runs]}")
        loser = [run for run in runs if run.proc.returncode != 0]
        refused.add(len(loser) == 1 and _busy_refusal(loser[0], session),
                    f"round {r}: {[run.text()[-300:] for run in loser]}")
        workers = scalar(session, "SELECT COUNT(*) FROM workers")
        rows_.add(workers == 1, f"round {r}: {workers} worker rows")
        done = Result("concurrency", "")
        check_finished_job(done, emu.url, ledger, session)
        finished.append(done)
    one.record(result, "two workers started at once: one runs the job, the other exits 2")
    refused.record(result, "the second worker says in one line who runs the session")
    rows_.record(result, "two workers at once: only one ever ran (one worker row)")
    _merge(result, finished, "two workers at once")


def _merge(result: Result, runs: list[Result], where: str) -> None:
    """The harness's invariants of finished jobs as one check (its failures named)."""
    bad = [f"job {n}: {c.name}: {c.detail}" for n, run in enumerate(runs)
           for c in run.checks if not c.held]
    checks = sum(len(run.checks) for run in runs)
    result.check(f"{where}: the finished jobs' {checks} invariants hold (every unit done, one "
                 "export per attempt, MD5s as served, nothing left in Drive or as *.part)",
                 not bad, "; ".join(bad[:3]))


# -- the dashboard and the CLI against a running headless worker -------------------------------

def _ee_count(url: str, session: Session) -> int:
    return len(job_tasks(url, session))


def _polls_after(session: Session, moment: float, n: int = 2) -> bool:
    """The worker's status has been written `n` seconds past `moment` (it writes it every
    second): it has looked at its commands and its limits since."""
    updated = scalar(session, "SELECT updated FROM worker_status")
    return bool(updated) and updated > moment + n


def _setting(session: Session, key: str) -> Any:
    import json

    value = scalar(session, "SELECT value FROM settings WHERE key = ?", (key,))
    return json.loads(value) if value is not None else None


def _steer(result: Result, emu: Emulator, ledger: Ledger, quick: bool, rng: random.Random,
           workdir: Path) -> None:
    folder = workdir / "steer"
    folder.mkdir(parents=True)
    session = new_session(folder, emu.url, name="steer", bbox="[0, 0, 3, 1]", max_tasks=3,
                          folder="steer")  # 12 units
    units = [r["id"] for r in rows(session, "SELECT id FROM units ORDER BY id")]
    # No EE slot runs anything until the end: what is submitted stays queued, so every command
    # below meets a worker that is still running.
    emu.ee.model.set_slots(PROJECT, 0)
    worker = _worker(session, folder / "worker.log")
    steps = Tally()
    run_cli = cli if quick else cli_process  # the full run: every command in its own process

    def step(name: str, held: bool, evidence: str = "") -> None:
        steps.add(held, f"{name}: {evidence}" if evidence else name)

    try:
        step("the worker submits max_tasks exports", wait_for(
            lambda: _ee_count(emu.url, session) == 3, TIMEOUT, worker.proc),
            f"{_ee_count(emu.url, session)} in EE; {worker.text()[-300:]}")

        second = cli_process(["run", session.id, "--headless", "--every", "0.5"])
        step("a second `run SESSION` while it runs: exit 2, one line", second.code == 2
             and not second.crash and len(second.lines) == 1
             and "already being run by" in second.err, second.evidence())
        before = sorted(session.path.parent.glob("*.sqlite"))
        again = cli_process(["run", str(session.job), "--headless", "--every", "0.5"])
        made = sorted(set(session.path.parent.glob("*.sqlite")) - set(before))
        step("`run JOB` while it runs: resumes the same session, exit 2, no new session",
             again.code == 2 and not again.crash and "already being run by" in again.err
             and not made, f"{again.evidence()}; new sessions: {made}")
        step("no export sent by the refused workers", _ee_count(emu.url, session) == 3,
             f"{_ee_count(emu.url, session)} in EE")

        got = run_cli(["status", session.id])
        step("status says a worker runs", got.code == 0 and "running" in got.out
             and not got.crash, got.evidence())
        got = run_cli(["rm", session.id, "--yes"])
        step("rm refuses a session a worker runs", got.code == 2 and len(got.lines) == 1
             and session.path.exists(), got.evidence())

        got = run_cli(["pause", session.id])
        step("pause is answered by the running worker", got.code == 0 and "pause:" in got.out
             and _setting(session, "paused") is True, f"{got.evidence()} {got.out!r}")
        queued = [r["id"] for r in rows(session, "SELECT id FROM units WHERE state IN "
                                                 "('queued', 'submitting')")]
        victim = rng.choice(queued) if queued else units[0]
        got = run_cli(["cancel", session.id, victim])
        cancelled_at = time.time()
        step("cancel is answered by the running worker", got.code == 0
             and f"cancel {victim}:" in got.out, f"{got.evidence()} {got.out!r}")
        step("the cancelled unit's EE task is cancelled", wait_for(lambda: any(
            t["state"] in ("CANCELLED", "CANCELLING") for t in job_tasks(emu.url, session)
            if f"_{victim.replace('.', '-')}_a" in t["description"]), TIMEOUT, worker.proc),
            str([(t["description"], t["state"]) for t in job_tasks(emu.url, session)]))
        wait_for(lambda: _polls_after(session, cancelled_at), TIMEOUT, worker.proc)
        step("paused: the slot the cancel freed is not filled", _ee_count(emu.url, session) == 3,
             f"{_ee_count(emu.url, session)} exports in EE")

        _dashboard(step, emu, session, worker)

        got = run_cli(["retry", session.id, "r999c999"])
        step("retry of a unit that does not exist: exit 2, one line", got.code == 2
             and len(got.lines) == 1 and "r999c999" in got.err, got.evidence())
        got = run_cli(["retry", session.id, victim])
        step("retry is answered by the running worker", got.code == 0
             and f"retry {victim}:" in got.out, f"{got.evidence()} {got.out!r}")
        got = run_cli(["log", session.id])
        step("log shows the cancel and the retry", got.code == 0 and "cancel" in got.out
             and "retr" in got.out, got.evidence())
    except Exception as exc:  # a step that could not even be tried is a failure, said so
        step("every step could be tried", False, f"{type(exc).__name__}: {exc}")
    finally:
        emu.ee.model.set_slots(PROJECT, 4)
    try:
        code = worker.proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        kill9(worker.proc)
        code = None
    step("the worker runs the job to its end (exit 0)", code == 0,
         f"exit {code}: {worker.text()[-400:]}")
    steps.record(result, "the dashboard and the CLI steer a running headless worker")
    done = Result("concurrency", "")
    try:
        check_finished_job(done, emu.url, ledger, session)
    except sqlite3.Error as exc:  # the session is gone (a look at a missing file makes one)
        done.check("the session can be read at the end", False, f"{session.path}: {exc}")
    _merge(result, [done], "steered job")
    result.numbers["steps"] = steps.tried


def _dashboard(step: Any, emu: Emulator, session: Session, worker: Run) -> None:
    """The dashboard opened on the session (as `eebatch open` does) attaches to the headless
    worker: no worker of its own, and its keys reach the other process's worker."""
    from tui.launch import prepare_app

    app, starter = prepare_app(session.path)

    async def drive() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            async def until(condition: Any, what: str) -> bool:
                deadline = time.monotonic() + TIMEOUT
                while not condition():
                    if time.monotonic() > deadline or worker.proc.poll() is not None:
                        step(what, False, "not within the deadline")
                        return False
                    await pilot.pause(0.05)
                return True

            if not await until(lambda: app.polls > 0, "the dashboard reads the session"):
                return
            step("the dashboard attaches: no worker of its own", app.worker is None
                 and app.header_state.worker == "attached", str(app.header_state.worker))
            before = _ee_count(emu.url, session)
            await pilot.press("p")  # resume
            if await until(lambda: _ee_count(emu.url, session) > before,
                           "p (resume) in the dashboard: the worker fills the free slot"):
                step("p resumed it", _setting(session, "paused") is False)
            before = _ee_count(emu.url, session)
            await pilot.press("plus")  # max_tasks 3 -> 4
            if await until(lambda: _ee_count(emu.url, session) > before,
                           "+ in the dashboard: the worker sends one more export"):
                step("+ raised max_tasks to 4", _setting(session, "max_tasks") == 4,
                     str(_setting(session, "max_tasks")))
            await pilot.press("q")
            await until(lambda: not app.is_running, "q quits the attached dashboard at once")

    try:
        asyncio.run(drive())
    finally:
        if app.worker is not None:  # would be a second worker: said above, stopped here
            app.worker.stop()
            app.worker.join(60)
        starter.close()
    step("the headless worker runs on after the dashboard quits", worker.proc.poll() is None
         and Store.worker_lock_held(session.path))


def run(quick: bool, seed: int, workdir: Path) -> Result:
    result = Result("concurrency", "")
    use_home(workdir)
    rng = random.Random(seed)
    started = time.monotonic()
    news, pairs = (1, 1) if quick else (12, 4)
    began = time.monotonic()
    _two_news(result, news, workdir)
    result.numbers["two_news_s"] = round(time.monotonic() - began, 1)
    with emulator(slots=4, seed=seed) as (emu, ledger):
        began = time.monotonic()
        _two_workers_at_once(result, emu, ledger, pairs, workdir)
        result.numbers["two_workers_s"] = round(time.monotonic() - began, 1)
        began = time.monotonic()
        _steer(result, emu, ledger, quick, rng, workdir)
        result.numbers["steer_s"] = round(time.monotonic() - began, 1)
    result.tried = (f"{news} pairs of `new` of one job at once, {pairs} pairs of workers "
                    "started at once on one session, a second worker and the dashboard and "
                    f"{result.numbers.get('steps', 0)} CLI steps against a running headless "
                    "worker")
    result.numbers["seconds"] = round(time.monotonic() - started, 1)
    return result

