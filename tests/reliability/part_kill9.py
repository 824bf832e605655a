"""kill -9 of a headless worker at seeded random moments, restarting it each time, on a job
whose exports sometimes fail with "Internal error." and whose southern tiles run out of
memory and split: many kills mid-submit (the export request on its way to EE, unanswered),
mid-download (the body half sent), with files listed but not downloaded, with a file
verified but not yet deleted from Drive, just after a split, or at a random time (startup and
recovery included). Then one last worker runs the job to its end, and the finished job's
invariants (harness.check_finished_job) are read from the emulator and the output dir.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.reliability import harness as h
from tests.reliability.common import Result

MEDIA = {"method": "GET", "route": "drive files.get", "query_contains": "alt=media"}
# 1° tiles at 2 km: a degree holds fewer metres further north, so with this memory limit the
# tiles south of about 45°N fail "User memory limit exceeded." and split (some twice).
MEMORY_LIMIT = 2200
# Exports failing "Internal error." (seeded per task): the quick job sends ~28, so at 20 % one
# with none is rare (~0.5 %; the last check says so).
INTERNAL_ERRORS = 0.2
QUICK_JOB = {"bbox": "[0.2, 44, 1.8, 48]"}  # 8 tiles, ~23 units to export
FULL_JOB = {"bbox": "[0.2, 43, 3.8, 48]",  # 20 tiles x 3 months, ~190 units to export
            "extra": '\n[time]\nstart = "2023-06-01"\nend = "2023-09-01"\nstep = "1 month"\n'}
QUICK_MOMENTS = ["mid-submit", "mid-download", "files-listed"]  # random ones: full run
# How often each moment is drawn for the full run (each at least once; after-split once).
WEIGHTS = {"mid-submit": 5, "mid-download": 4, "files-listed": 3, "verified-not-deleted": 2,
           "tasks-running": 1, "after-split": 0, "random": 4}
START_TIMEOUT = 60.0  # seconds a worker may take to open its backends (2-7 s on 2 busy cores)
MOMENT_TIMEOUT = 15.0  # seconds to wait for a moment before killing anyway ("missed")
END_TIMEOUT = 300.0  # seconds the last worker may take to finish the job


class Cycle:
    """One worker's life: what the session held when it started, to tell its own moments
    from what the killed worker before it left behind."""

    def __init__(self, session: h.Session, rng: random.Random) -> None:
        self.session = session
        self.t0 = time.time()
        self.delay = rng.uniform(0.0, 8.0)  # from the process's start: startup included
        # How long into a stalled submit or a throttled download (2.6 s a file) to kill.
        self.wait_after = rng.uniform(0.0, 1.5)
        self.max_attempt = h.scalar(session, "SELECT COALESCE(MAX(id), 0) FROM attempts")
        self.max_file = h.scalar(session, "SELECT COALESCE(MAX(id), 0) FROM files")
        self.seen_at: float | None = None

    def ready(self, pid: int) -> bool:
        """The worker has opened its backends and recovered (it says so first)."""
        return bool(h.scalar(self.session, "SELECT COUNT(*) FROM events WHERE message = ?",
                             (f"worker started (pid {pid})",)))

    def _then_wait(self, seen: bool) -> bool:
        """True `wait_after` seconds after `seen` first held."""
        if seen and self.seen_at is None:
            self.seen_at = time.monotonic()
        return self.seen_at is not None and time.monotonic() - self.seen_at >= self.wait_after

    def new_attempt_submitting(self) -> bool:
        # Killed at once (the request may not have left) or some way into EE's stall.
        return self._then_wait(bool(h.scalar(
            self.session, "SELECT COUNT(*) FROM attempts WHERE id > ? AND"
            " state = 'submitting'", (self.max_attempt,))))

    def downloading(self) -> bool:
        # pydrive2 writes the .part only once the body is in: mid-body is mid-download.
        return self._then_wait(bool(h.scalar(
            self.session, "SELECT COUNT(*) FROM files WHERE state = 'downloading' AND"
            " updated > ?", (self.t0,))))

    def new_file_in(self, state: str) -> bool:
        return bool(h.scalar(self.session, "SELECT COUNT(*) FROM files WHERE state = ? AND"
                             " (id > ? OR updated > ?)", (state, self.max_file, self.t0)))

    def new_file_listed(self) -> bool:
        return bool(h.scalar(self.session, "SELECT COUNT(*) FROM files WHERE state = 'listed'"
                             " AND id > ?", (self.max_file,)))

    def tasks_running(self) -> bool:
        return h.scalar(self.session, "SELECT COUNT(*) FROM attempts WHERE state = 'RUNNING'"
                        " AND updated > ?", (self.t0,)) >= 2

    def split_now(self) -> bool:
        return bool(h.scalar(self.session, "SELECT COUNT(*) FROM units WHERE state = 'split'"
                             " AND updated > ?", (self.t0,)))

    def random_time(self) -> bool:
        return time.time() - self.t0 >= self.delay


def _setup(url: str, moment: str) -> None:
    """Widen the moment's window: stall exports, slow downloads, stall deletes."""
    if moment == "mid-submit":
        h.faults(url, [{"route": "ee image.export", "kind": "slow", "delay": 1.0, "count": 3}])
    elif moment in ("mid-download", "files-listed"):
        h.throttle(url, per_connection=150_000)
    elif moment == "verified-not-deleted":
        h.faults(url, [{"route": "drive files.delete", "kind": "slow", "delay": 1.0,
                        "count": 3}])


def _condition(cycle: Cycle, moment: str) -> Callable[[], bool]:
    conditions: dict[str, Callable[[], Any]] = {
        "mid-submit": cycle.new_attempt_submitting,
        "mid-download": cycle.downloading,
        "files-listed": cycle.new_file_listed,
        "verified-not-deleted": lambda: cycle.new_file_in("verified"),
        "tasks-running": cycle.tasks_running,
        "after-split": cycle.split_now,
        "random": cycle.random_time,
    }
    return conditions[moment]


def _plan(quick: bool, rng: random.Random) -> list[str]:
    """The moments to kill at, in order. A split comes first: once a tile of a period ran out
    of memory, eebatch splits the others as big before sending them, so later ones are few."""
    if quick:
        return list(QUICK_MOMENTS)
    kinds = [k for k in WEIGHTS if k != "after-split"]
    drawn = kinds + rng.choices(kinds, weights=[WEIGHTS[k] for k in kinds], k=19 - len(kinds))
    rng.shuffle(drawn)
    return ["after-split", *drawn]


def _finished(session: h.Session) -> bool:
    return not h.scalar(session, "SELECT COUNT(*) FROM units WHERE state NOT IN"
                        " ('done', 'split')")


def run(quick: bool, seed: int, workdir: Path) -> Result:
    rng = random.Random(seed)
    moments = _plan(quick, rng)
    job = QUICK_JOB if quick else FULL_JOB
    result = Result(part="kill9", tried="")
    log = workdir / "workers.log"
    hits: dict[str, int] = {}
    missed: list[str] = []
    died: list[str] = []
    kills = 0
    startups: list[float] = []  # seconds from a worker's spawn until it says it started
    with h.emulator(speed=20.0, task_overhead_seconds=20.0, slots=4, seed=seed,
                    memory_limit_pixels=MEMORY_LIMIT, internal_error_rate=INTERNAL_ERRORS
                    ) as (emu, ledger):
        session = h.new_session(workdir, emu.url, size=1.0, scale=2000, max_tasks=4,
                                split_depth=2, max_attempts=10, **job)
        for moment in moments:
            if _finished(session):
                break
            _setup(emu.url, moment)
            cycle = Cycle(session, rng)
            worker = h.start_worker(session, log)
            # The moments but a random one come once the worker is up.
            if moment != "random" and h.wait_for(functools.partial(cycle.ready, worker.pid),
                                                 START_TIMEOUT, proc=worker):
                startups.append(time.time() - cycle.t0)
            hit = h.wait_for(_condition(cycle, moment), MOMENT_TIMEOUT, proc=worker, every=0.01)
            code = worker.poll()
            if code is None:
                h.kill9(worker)
                kills += 1
                if hit:
                    hits[moment] = hits.get(moment, 0) + 1
                else:
                    missed.append(moment)
            elif code != 0:
                died.append(f"{moment}: the worker exited {code} before its kill")
            h.clear_faults(emu.url)  # the throttle with them
        end_code = h.run_to_end(session, log, END_TIMEOUT)
        result.tried = (f"{kills} kill -9 of a headless worker at seeded moments (hit_* below),"
                        " each restarted, on a"
                        f" {h.scalar(session, 'SELECT COUNT(*) FROM units')}-unit job with"
                        f" {INTERNAL_ERRORS:.0%} 'Internal error.' and tiles that split")
        result.check("every restarted worker ran until it was killed", not died,
                     "; ".join(died) + f"\n{h.tail(log)}")
        result.check("the last worker finished the job (exit 0)", end_code == 0,
                     f"exit {end_code}\n{h.tail(log)}")
        h.check_finished_job(result, emu.url, ledger, session)
        tasks = h.job_tasks(emu.url, session)
        errors = {t["error"] for t in tasks if t["error"]}
        result.check("the job met 'Internal error.' and memory splits",
                     any("Internal error" in e for e in errors)
                     and any("memory limit" in e for e in errors), str(errors))
    if startups:
        result.numbers["worker_startup_s_max"] = round(max(startups), 1)
    result.numbers.update({"kills": kills, "moments_hit": sum(hits.values()),
                           "moments_missed": len(missed), **{f"hit_{k}": n
                                                             for k, n in sorted(hits.items())}})
    if missed:
        result.skipped += (f" {len(missed)} moment(s) not reached within {MOMENT_TIMEOUT:.0f} s,"
                           f" killed then anyway: {', '.join(missed)}")
    return result

