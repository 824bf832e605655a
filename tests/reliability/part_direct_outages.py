"""Outages during a direct-route job (core/engine/direct.py), as the emulator makes them (every
request of the family answered 503 "The service is currently unavailable."). Full: 60-90 s
each,

    W1  EE out mid-run, fetches in flight
    W2  EE out as the worker is killed (-9) and restarted into it: recovery and start in it
    W3  Drive out as the worker is killed and restarted: a direct job needs no Drive
    W4  computePixels alone out mid-run (the real service serves it on its own high-volume
        endpoint; EE's other calls answer)

Quick: computePixels alone out for 6-8 s.

Nothing may FAIL, no worker may give up while a service is out, the outages may cost no
try (every direct unit done in one), the direct job goes on while Drive is out, and the job's
invariants (harness.check_finished_job) hold at its end. Each EE or computePixels outage must
be said in the log while it lasts; the full run also asks `eebatch status` (its `waiting`
line) and the headless progress line to say an EE outage while it lasts, and measures how
long after its start each did.

Why the quick run's outage is computePixels alone: the worker's loop sends its polls
(operations.list) through earthengine-api, which retries a failed call five times over up to
~60 s while the loop (and, through the adapter's lock, each fetch about to send) waits for it;
a fetch that meets an outage of all of EE is collected, and the wait said, only when that
poll gives up or EE answers again, so an EE outage of a few seconds passes unsaid (or is said
after it). An outage of computePixels alone is met by the fetches, the polls still answer:
it is the direct route's own wait, said once, and one request at a time asks when it is back.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.reliability import _direct as d
from tests.reliability import harness as h
from tests.reliability.common import Result

UNREACHABLE = "Earth Engine unreachable since"  # the worker's words for the wait
AGAIN = "Earth Engine answers again"
# computePixels alone out is the direct route's own wait, said once (see core/engine/direct.py)
DIRECT_UNREACHABLE = "Earth Engine's direct route unreachable since"
DIRECT_AGAIN = "Earth Engine's direct route answers again"


def _words(what: str) -> tuple[str, str]:
    """The worker's words for an outage of `what` beginning and ending."""
    return (DIRECT_UNREACHABLE, DIRECT_AGAIN) if what == "pixels" else (UNREACHABLE, AGAIN)
# Requests a little slower and two at a time, so the job outlasts its outages: a request
# takes ~1 s (full) or ~0.5 s (quick) of wall time.
SPEED = {True: 4.0, False: 2.0}
DIRECT_REQUESTS = 2
# What each kind of outage covers (the emulator's outage route: a family or a path regex), and
# the share of units done at which each window of the full run opens.
COVERS = {"ee": "ee", "drive": "drive", "pixels": r"image:computePixels"}
SAYS = {"ee": "EE", "drive": "Drive", "pixels": "computePixels"}
AT = {"W1": 0.1, "W2": 0.25, "W3": 0.4, "W4": 0.7}  # W3 does a third of the job
RETRIES_S = 65.0  # earthengine-api's retries of one call: 5, backing off up to ~62 s in all
START_TIMEOUT = 60.0
RESUME_TIMEOUT = 150.0
END_TIMEOUT = 600.0


def _done(session: h.Session) -> int:
    return h.scalar(session, "SELECT COUNT(*) FROM units WHERE state = 'done'")


def _share(session: h.Session) -> float:
    total = h.scalar(session, "SELECT COUNT(*) FROM units WHERE state != 'split'")
    return _done(session) / max(total, 1)


def _said(session: h.Session, text: str, since: float, until: float | None = None) -> float | None:
    """When the worker first logged `text...` at or after `since` (and before `until`)."""
    return h.scalar(session, "SELECT MIN(ts) FROM events WHERE message LIKE ? AND ts >= ?"
                    " AND ts <= ?", (f"{text}%", since, until or time.time() + 3600))


def _status(session: h.Session) -> str:
    """`eebatch status SESSION`, as a user types it while the job runs."""
    out = subprocess.run([sys.executable, "-m", "tui", "status", session.id], cwd=h.ROOT,
                         capture_output=True, text=True, timeout=60)
    return out.stdout + out.stderr


class Window:
    """One outage and what the job said and did while it lasted."""

    def __init__(self, name: str, what: str, seconds: float, restart: bool = False) -> None:
        self.name, self.what, self.seconds, self.restart = name, what, seconds, restart
        self.began = self.ended = 0.0
        self.status = ""  # `eebatch status` while the worker waited
        self.status_said = 0.0  # when the worker's status first said EE is unreachable
        self.done_during = 0  # units done while it lasted
        self.gave_up: list[str] = []


def _waiting(session: h.Session) -> str:
    """Why the worker last said it waits (what `status` and the headless line show)."""
    found = h.rows(session, "SELECT status FROM worker_status WHERE id = 1")
    if not found:
        return ""
    status = json.loads(found[0]["status"])
    return f"{status.get('waiting') or ''} {status.get('down_why') or ''}"


def _outage(url: str, session: h.Session, window: Window, worker: Any, log: Path,
            ask: bool) -> Any:
    """Run one outage to its end (the emulator says when: none left); with its `restart` the
    worker is killed as it begins and started again into it; with `ask`, `eebatch status`
    is asked once the worker's status says it waits for EE. Returns the worker."""
    before = _done(session)
    h.outage(url, COVERS[window.what], window.seconds)
    window.began = time.time()
    if window.restart:
        h.kill9(worker)
        worker = h.start_worker(session, log)
    # Once the worker's status says it waits for EE, ask `eebatch status` what it says.
    if window.what == "ee" and ask and h.wait_for(
            lambda: UNREACHABLE in _waiting(session), window.seconds, proc=worker, every=0.2):
        window.status_said = time.time()
        window.status = _status(session)

    def over() -> bool:
        if worker.poll() is not None and not window.gave_up:
            window.gave_up.append(f"{window.name}: the worker exited {worker.returncode}"
                                  f" during the outage\n{h.tail(log, 800)}")
        return not h.admin(url, "/_emulator/outage")["outages"]

    h.wait_for(over, window.seconds + 30, every=0.2)
    window.ended = time.time()
    window.done_during = _done(session) - before
    if worker.poll() is not None:
        worker = h.start_worker(session, log)
    return worker


def run(quick: bool, seed: int, workdir: Path) -> Result:
    rng = random.Random(seed)
    windows = ([Window("W1", "pixels", rng.uniform(6, 8))] if quick else
               [Window("W1", "ee", rng.uniform(60, 90)),
                Window("W2", "ee", rng.uniform(60, 90), restart=True),
                Window("W3", "drive", rng.uniform(60, 90), restart=True),
                Window("W4", "pixels", rng.uniform(60, 90))])
    result = Result(part="direct_outages", tried="")
    log = workdir / "worker.log"
    numbers: dict[str, Any] = {}
    job = d.job("direct", d.QUICK_BBOX if quick else d.FULL_BBOX, 1 if quick else 3,
                limits={"direct_requests": DIRECT_REQUESTS})
    with h.emulator(**d.emulator_config(seed, speed=SPEED[quick])) as (emu, ledger):
        session = h.new_session(workdir, emu.url, **job)
        t0 = time.time()
        worker = h.start_worker(session, log)
        late: list[str] = []
        for window in windows:
            at = 0.2 if quick else AT[window.name]
            h.wait_for(lambda a=at: _share(session) >= a,  # type: ignore[misc]
                       START_TIMEOUT + 120, proc=worker, every=0.2)
            if _share(session) > at + 0.2 or worker.poll() is not None:
                late.append(f"{window.name}: {_share(session):.0%} done when it began")
            worker = _outage(emu.url, session, window, worker, log, ask=not quick)
            key = window.name.lower()
            if window.what != "drive":
                down, up = _words(window.what)
                resumed = h.wait_for(lambda u=up, w=window: _said(  # type: ignore[misc]
                    session, u, w.ended) is not None, RESUME_TIMEOUT, proc=worker,
                    every=0.2)
                again = _said(session, up, window.ended)
                numbers[f"{key}_resumed_after_s"] = (
                    round(again - window.ended, 1) if resumed and again else "never")
                numbers[f"{key}_said_times"] = h.scalar(
                    session, "SELECT COUNT(*) FROM events WHERE message LIKE ? AND ts BETWEEN"
                    " ? AND ?", (f"{down}%", window.began, window.ended))
            numbers[f"{key}_s"] = round(window.seconds)
            numbers[f"{key}_at_s"] = round(window.began - t0)
            numbers[f"{key}_units_done_during"] = window.done_during
        try:
            code = worker.wait(timeout=END_TIMEOUT)
        except subprocess.TimeoutExpired:
            h.kill9(worker)
            code = None
        numbers["wall_s"] = round(time.time() - t0)

        gave_up = [g for w in windows for g in w.gave_up]
        result.check("no worker gave up while EE or Drive was out", not gave_up,
                     "\n".join(gave_up))
        result.check("each outage began with work left (the job outlasted them)", not late,
                     "; ".join(late))
        result.check("the last worker finished the job (exit 0) with nothing FAILED",
                     code == 0, f"exit {code}\n{h.tail(log)}")
        tries = d.tries(session)
        more = {u: n for u, n in tries.items() if n != 1}
        result.check("the outages cost no try (every direct unit done in one)",
                     bool(tries) and not more,
                     ", ".join(f"{u}: {n} tries" for u, n in sorted(more.items())[:5]))
        for window in windows:
            name, key = window.name, window.name.lower()
            if window.what == "drive":
                result.check(f"{name}: the direct job went on while Drive was out",
                             window.done_during > 0, f"{window.done_during} units done in it")
                continue
            down, _ = _words(window.what)
            said = _said(session, down, window.began, window.ended)
            result.check(f"{name}: the log said EE is unreachable while {SAYS[window.what]}"
                         " was out", said is not None, f"no '{down}' event in it")
            if window.what == "pixels":
                result.check(f"{name}: said once, not again at each poll that EE answered",
                             numbers[f"{key}_said_times"] == 1,
                             f"said {numbers[f'{key}_said_times']} times")
            numbers[f"{key}_log_said_after_s"] = (
                round(said - window.began, 1) if said else "never")
            if window.what != "ee" or quick:
                continue
            line = [x for x in window.status.splitlines() if x.strip().startswith("waiting")]
            result.check(f"{name}: `eebatch status` said why it waits, while EE was out",
                         any(UNREACHABLE in x for x in line),
                         window.status[-800:] or "the worker's status never said it")
            numbers[f"{key}_status_said_after_s"] = (
                round(window.status_said - window.began, 1) if window.status_said
                else "never")
        if not quick:
            progress = [x for x in log.read_text(errors="replace").splitlines()
                        if UNREACHABLE in x and "done" in x]
            result.check("the headless progress line said EE is unreachable", bool(progress),
                         h.tail(log, 600))
        h.check_finished_job(result, emu.url, ledger, session)
        numbers["units"] = h.scalar(session, "SELECT COUNT(*) FROM units")
    lengths = ", ".join(f"{w.seconds:.0f} s ({SAYS[w.what]})" for w in windows)
    result.tried = (f"outages of {lengths} during a {numbers['units']}-unit direct job: "
                    + ("computePixels out mid-run" if quick else
                       "EE out mid-run; EE out as the worker is killed and restarted into it;"
                       " Drive out as the worker is killed and restarted into it;"
                       " computePixels out mid-run"))
    result.numbers.update(numbers)
    return result
