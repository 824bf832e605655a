"""Outages of 60-90 s of Earth Engine and of Drive, as the emulator makes them (every request
of the family answered 503 "The service is currently unavailable."), at a job's start, in the
middle of a run and during a resume after kill -9. Three jobs share one emulator (and its EE
slots), so each outage meets them in different states:

    W1  EE out:    job A starts in it; job B is mid-run
    W2  Drive out: job B is killed and resumed in it; job C starts in it; job A is mid-run
    W3  EE out:    job A is killed and resumed in it; B and C run on

Nothing may FAIL, no worker may give up while a service is out, the outages may cost no
export attempt, each is said in the log of a job running when it began, and every job's invariants
(harness.check_finished_job) hold at its end.

The quick version has outages of 5-8 s and no W3. earthengine-api retries a call about five
times over a random ~30 s (googleapiclient's unseeded backoff) before eebatch sees it fail, so
so short an EE outage is absorbed by the client; a longer one would sometimes be, sometimes
not, and the quick test would depend on chance. eebatch's own handling of an EE outage (and
of one at a worker's start) is what the full run shows.
"""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.reliability import harness as h
from tests.reliability.common import Result

MEMORY_LIMIT = 2200  # the southern tiles split (see part_kill9)
MONTHS = '\n[time]\nstart = "2023-06-01"\nend = "2023-{end:02d}-01"\nstep = "1 month"\n'
# Each job's region and months, quick and full: A outlasts all three outages.
JOBS: dict[str, dict[bool, dict[str, Any]]] = {
    "A": {True: {"bbox": "[0.2, 44, 1.8, 46]"},  # 4 tiles, ~16 units
          False: {"bbox": "[0.2, 44, 1.8, 48]", "extra": MONTHS.format(end=9)}},  # ~70
    "B": {True: {"bbox": "[0.2, 45, 1.8, 47]"},  # 4 tiles, ~10 units
          False: {"bbox": "[0.2, 44, 1.8, 48]"}},  # ~23
    "C": {True: {"bbox": "[0.2, 47, 1.8, 48]"},  # 2 tiles
          False: {"bbox": "[0.2, 46, 1.8, 48]"}},  # 4 tiles
}
SERVICE = {"ee": "Earth Engine", "drive": "Drive"}  # as the worker's log names them
SPEED = {True: 20.0, False: 2.0}  # simulated seconds per second: a task takes ~1 s / ~10 s
START_TIMEOUT = 60.0
PROGRESS_TIMEOUT = 150.0  # seconds for work to move again after an outage (polls back off)
END_TIMEOUT = 600.0


class Jobs:
    """The three sessions and their workers; a worker that exits on its own before its job
    is finished is noted (with its log) and started again once the outage is over."""

    def __init__(self, workdir: Path, url: str, quick: bool) -> None:
        self.sessions = {
            name: h.new_session(workdir / name.lower(), url, name=name.lower(), size=1.0,
                                scale=2000, max_tasks=4, split_depth=2, max_attempts=10,
                                folder=f"rel-{name.lower()}", **JOBS[name][quick])
            for name in JOBS}
        self.logs = {name: workdir / f"worker-{name}.log" for name in JOBS}
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.gave_up: list[str] = []
        self.noted: set[int] = set()  # pids of workers already in gave_up

    def start(self, name: str) -> None:
        self.workers[name] = h.start_worker(self.sessions[name], self.logs[name])

    def kill(self, name: str) -> None:
        h.kill9(self.workers[name])

    def done(self, name: str) -> int:
        return h.scalar(self.sessions[name], "SELECT COUNT(*) FROM units WHERE state = 'done'")

    def total(self, name: str) -> int:
        return h.scalar(self.sessions[name], "SELECT COUNT(*) FROM units WHERE state NOT IN"
                        " ('split')")

    def finished(self, name: str) -> bool:
        return not h.scalar(self.sessions[name], "SELECT COUNT(*) FROM units WHERE state"
                            " NOT IN ('done', 'split')")

    def note(self, during: str) -> None:
        """Note (once) every worker that ended with its job unfinished."""
        for name, worker in self.workers.items():
            if worker.poll() is not None and worker.pid not in self.noted \
                    and not self.finished(name):
                self.noted.add(worker.pid)
                self.gave_up.append(f"job {name}'s worker exited {worker.returncode} {during}:"
                                    f"\n{h.tail(self.logs[name], 800)}")

    def restart_ended(self) -> None:
        for name, worker in list(self.workers.items()):
            if worker.poll() is not None and not self.finished(name):
                self.start(name)

    def all_ended(self) -> bool:
        return all(w.poll() is not None for w in self.workers.values())


def _outage(url: str, jobs: Jobs, family: str, seconds: float, during: str) -> float:
    """Run one outage to its end (the emulator says when: none left), noting every worker
    that gives up meanwhile; those start again after it. Returns its end (time.time())."""
    h.outage(url, family, seconds)

    def over() -> bool:
        jobs.note(during)
        return not h.admin(url, "/_emulator/outage")["outages"]

    h.wait_for(over, seconds + 30, every=0.2)
    ended = time.time()
    jobs.restart_ended()
    return ended


def _resumed(jobs: Jobs, family: str, began: float, ended: float) -> float | None:
    """Seconds from the outage's end until the first job that said it waited for `family`
    says it answers again (None: no job said it waited, or none answered in time)."""
    name = SERVICE[family]
    held = [s for s in jobs.sessions.values() if h.scalar(
        s, "SELECT COUNT(*) FROM events WHERE message LIKE ? AND ts >= ?",
        (f"{name} unreachable since%", began))]

    def first() -> float | None:
        times = [h.scalar(s, "SELECT MIN(ts) FROM events WHERE message LIKE ? AND ts >= ?",
                          (f"{name} answers again%", ended)) for s in held]
        found = [t for t in times if t is not None]
        return min(found) - ended if found else None

    if held:
        h.wait_for(lambda: first() is not None, PROGRESS_TIMEOUT, every=0.2)
    return first() if held else None


def run(quick: bool, seed: int, workdir: Path) -> Result:
    rng = random.Random(seed)
    lengths = ([rng.uniform(6, 8), rng.uniform(5, 7)] if quick
               else [rng.uniform(60, 90) for _ in range(3)])
    result = Result(part="outages", tried="")
    numbers: dict[str, Any] = {}
    with h.emulator(speed=SPEED[quick], task_overhead_seconds=20.0, slots=4, seed=seed,
                    memory_limit_pixels=MEMORY_LIMIT, internal_error_rate=0.05) as (emu, ledger):
        url = emu.url
        jobs = Jobs(workdir, url, quick)
        t0 = time.time()
        # W1: EE out as job A starts, with B a quarter done.
        jobs.start("B")
        h.wait_for(lambda: jobs.done("B") >= jobs.total("B") // 4, START_TIMEOUT + 60,
                   proc=jobs.workers["B"])
        w1_start = time.time()
        jobs.start("A")
        w1 = _outage(url, jobs, "ee", lengths[0], "in an EE outage at its start or mid-run")
        windows = [("W1 (EE)", ["B"], "ee", w1_start, w1)]
        numbers["w1_ee_resumed_after_s"] = _round(_resumed(jobs, "ee", w1_start, w1))
        # W2: Drive out as B is killed and resumed and C starts; A mid-run.
        jobs.kill("B")
        w2_start = time.time()
        jobs.start("B")
        jobs.start("C")
        w2 = _outage(url, jobs, "drive", lengths[1], "in a Drive outage at its start, resume"
                     " or mid-run")
        numbers["w2_drive_resumed_after_s"] = _round(_resumed(jobs, "drive", w2_start, w2))
        windows.append(("W2 (Drive)", ["A"], "drive", w2_start, w2))
        # W3: EE out as A is killed and resumed; B and C run on.
        a_left = not jobs.finished("A")
        last = w2
        if not quick:
            running = [n for n in ("B", "C") if not jobs.finished(n)]
            jobs.kill("A")
            w3_start = time.time()
            jobs.start("A")
            last = _outage(url, jobs, "ee", lengths[2], "in an EE outage during its resume or"
                           " mid-run")
            numbers["w3_ee_resumed_after_s"] = _round(_resumed(jobs, "ee", w3_start, last))
            numbers["w3_at_s"] = round(w3_start - t0)
            windows.append(("W3 (EE)", running, "ee", w3_start, last))
        while not h.wait_for(jobs.all_ended, 5.0, every=0.2) and time.time() - last < END_TIMEOUT:
            jobs.note("after the outages")
            jobs.restart_ended()
        codes = {n: w.poll() for n, w in jobs.workers.items()}
        for worker in jobs.workers.values():
            if worker.poll() is None:
                h.kill9(worker)
        numbers["wall_s"] = round(time.time() - t0)

        result.check("no worker gave up while EE or Drive was out", not jobs.gave_up,
                     "\n".join(jobs.gave_up))
        result.check("every job's last worker finished it (exit 0)",
                     all(c == 0 for c in codes.values()), str(codes))
        if not quick:
            result.check("job A still had work after the Drive outage (W3 resumed it)", a_left,
                         "job A finished before W3: the run tried less than it says")
        costs = []
        for name, session in jobs.sessions.items():
            costs += [f"{name} {r['unit']} a{r['n']}: {r['error']}" for r in h.rows(
                session, "SELECT unit, n, error FROM attempts WHERE state = 'FAILED' AND"
                " error NOT LIKE '%Internal error%' AND error NOT LIKE '%memory limit%'")]
        result.check("the outages cost no export attempt (only EE's own failures did)",
                     not costs, "; ".join(costs[:5]))
        # Each outage, in the log of a job that was running when it began (one starting or
        # resuming in it is the check above).
        unsaid = [f"{label}: none of jobs {', '.join(names)} said it" for label, names, fam,
                  began, ended in windows if names and not any(h.scalar(
                      jobs.sessions[n], "SELECT COUNT(*) FROM events WHERE message LIKE ? AND"
                      " ts BETWEEN ? AND ?", (f"{SERVICE[fam]} unreachable since%", began,
                                              ended)) for n in names)]
        if not quick:  # a short one may pass unseen (see above)
            result.check("each outage was said in the log of a job running when it began",
                         not unsaid, "; ".join(unsaid))
        for name, session in jobs.sessions.items():
            part = Result(part="outages", tried="")
            h.check_finished_job(part, url, ledger, session)
            for check in part.checks:
                result.check(f"job {name}: {check.name}", check.held, check.detail)
            numbers[f"units_{name}"] = part.numbers.get("units", 0)
            result.skipped += part.skipped
    result.tried = (f"outages of {', '.join(f'{s:.0f}' for s in lengths)} s"
                    f" ({', '.join(['EE', 'Drive', 'EE'][:len(lengths)])}) over three jobs on"
                    " one emulator: EE out at a start and mid-run; Drive out at a start, a"
                    " resume after kill -9 and mid-run"
                    + ("" if quick else "; EE out at a resume after kill -9 and mid-run"))
    numbers.update({"w1_at_s": round(w1_start - t0), "w2_at_s": round(w2_start - t0)})
    result.numbers.update(numbers)
    return result


def _round(seconds: float | None) -> float | str:
    return "never" if seconds is None else round(seconds, 1)
