"""kill -9 of a headless worker at seeded moments of a direct-route job (core/engine/direct.py),
restarting it each time, then one last worker runs the job to its end:

    mid-fetch          computePixels requests in flight (answers held 1-2 s), killed 0-1.5 s
                       after a fetch began
    part-written       a request's answer written as TITLE.direct.part, not yet moved into
                       place
    renamed-uncommitted  a unit's files moved into place, the unit not yet done in the store
    after-split        just after a tile split on the direct route (auto: moved to batch)
    mid-download       (auto) a batch unit's file half downloaded from Drive
    random             0-8 s after the process starts (startup and recovery included)

The moments between a part's write, its rename and the store's commit last microseconds;
to stop the worker inside them the part holds the session's write lock (a write transaction
of its own, as a slow disk would hold a commit) for a moment as an answer is on its way (the
ledger sees each image as the emulator computes it): the fetch thread goes on writing its
part, the loop thread stops at its next write, which after a fetch ends is most often the
commit that follows the rename. The worker is killed while it waits.

At the end: every unit done, each direct unit's files one per request of its grid with the
bytes computePixels computed, no part left, nothing in EE or Drive
(harness.check_finished_job), and every direct unit done in one try: a kill costs none.

Quick: a direct job of 8 tiles x 2 months whose southern tiles split, two kills: mid-fetch,
and renamed-uncommitted (with parts written beside: part-written too). Full: an auto job of
24 tiles x 8 months (_direct.new_auto_session: a third moved to batch), 20 kills.
"""

from __future__ import annotations

import functools
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.reliability import _direct as d
from tests.reliability import harness as h
from tests.reliability.common import Result
from tests.reliability.part_kill9 import Cycle

# The quick run's second kill finds parts written beside the files moved in.
QUICK_MOMENTS = ["mid-fetch", "renamed-uncommitted"]
# How often each moment is drawn for the full run (each at least once), after an
# after-split and a mid-download.
WEIGHTS = {"mid-fetch": 4, "part-written": 4, "renamed-uncommitted": 4, "random": 3}
LOCKED = ("part-written", "renamed-uncommitted")  # moments reached under the write lock
_SEEN = {"part-written": "parts", "renamed-uncommitted": "uncommitted"}
PULSE = 0.4  # seconds the lock is held for one answer before it is let go
DIRECT_REQUESTS = {True: 4, False: 2}  # quick, full
# The full run's 20 kills need direct work to the end (_direct.new_auto_session: two thirds
# of the tiles come direct), each request taking ~2 s, two at once.
FULL_EMULATOR = {**d.AUTO_MEMORY, "direct_latency_seconds": 40.0}
FULL_MONTHS = 8
START_TIMEOUT = 60.0
MOMENT_TIMEOUT = 20.0
END_TIMEOUT = 300.0


class DirectCycle(Cycle):
    """One worker's life, with the looks at a direct job's fetches."""

    def __init__(self, session: h.Session, rng: random.Random) -> None:
        super().__init__(session, rng)
        self.units: list[sqlite3.Row] = []  # the units downloading, at the last look
        self.seen: dict[str, int] = {}  # what the output dir held when the kill came
        self.pulses = 0  # times the lock was taken

    def fetching(self) -> bool:
        return self._then_wait(bool(h.scalar(
            self.session, "SELECT COUNT(*) FROM units WHERE state = 'downloading' AND"
            " route = 'direct' AND updated > ?", (self.t0,))))

    def parts(self) -> list[Path]:
        return list(self.session.output_dir.glob("*.direct.part"))

    def uncommitted(self, conn: sqlite3.Connection) -> list[Path]:
        """Files this worker moved into place whose unit the store does not hold done (one
        an earlier kill left is older than this worker)."""
        found = []
        out = self.session.output_dir
        for row in conn.execute("SELECT id, period, west, south, east, north FROM units"
                                " WHERE state = 'downloading' AND route = 'direct'"):
            for title in h.direct_requests(self.session, row["id"], (
                    row["west"], row["south"], row["east"], row["north"])):
                for final in (out / title, out / row["period"] / title):
                    if final.exists() and final.stat().st_mtime >= self.t0:
                        found.append(final)
        return found

    def moved_or_split(self) -> bool:
        return bool(h.scalar(
            self.session, "SELECT COUNT(*) FROM events WHERE ts > ? AND (message LIKE"
            " 'EE could not compute it directly%' OR message LIKE '%split into 4 tiles')",
            (self.t0,)))

    def under_lock(self, moment: str, timeout: float, proc: Any, ledger: h.Ledger) -> bool:
        """Until the moment is reached: each time the emulator has an image answer ready
        (the ledger counts them as they are computed), take the session's write lock — at
        once for part-written (the fetch thread writes its part, the loop cannot commit its
        next step), once the part is on disk for renamed-uncommitted (the loop moves it into
        place, then waits at its commit) — and hold it up to PULSE s. True once the moment
        is seen under it: the worker is killed before the lock is let go."""
        deadline = time.monotonic() + timeout
        answered = ledger.answers()
        while time.monotonic() < deadline and proc.poll() is None:
            if ledger.answers() == answered:
                time.sleep(0.002)
                continue
            answered = ledger.answers()
            if moment == "renamed-uncommitted" and not h.wait_for(
                    lambda: bool(self.parts()), 1.0, every=0.001):
                continue
            self.pulses += 1
            conn = sqlite3.connect(self.session.path, timeout=10, isolation_level=None)
            conn.row_factory = sqlite3.Row
            try:
                conn.execute("BEGIN IMMEDIATE")
                end = time.monotonic() + PULSE
                while time.monotonic() < end:
                    parts, finals = self.parts(), self.uncommitted(conn)
                    if (parts if moment == "part-written" else finals):
                        if not parts:  # fetches still running write theirs meanwhile
                            h.wait_for(lambda: bool(self.parts()), 0.3, every=0.005)
                        self.seen = {"parts": len(self.parts()),
                                     "uncommitted": len(self.uncommitted(conn))}
                        h.kill9(proc)
                        return True
                    time.sleep(0.005)
            finally:
                conn.close()  # the transaction with it
        return False


def _plan(quick: bool, rng: random.Random) -> list[str]:
    """The moments to kill at, in order. The move to batch and a batch download come first:
    the worker sends the biggest units first, so those EE cannot compute directly are met
    early, and their batch exports end long before the direct work does."""
    if quick:
        return list(QUICK_MOMENTS)
    early = ["after-split", "mid-download"]
    kinds = [k for k in WEIGHTS if k not in early]
    drawn = kinds + rng.choices(kinds, weights=[WEIGHTS[k] for k in kinds],
                                k=20 - len(early) - len(kinds))
    rng.shuffle(drawn)
    return [*early, *drawn]


def _setup(url: str, moment: str) -> None:
    """Widen the moment's window: answers held 1-2 s, a throttled Drive."""
    if moment in ("mid-fetch", *LOCKED):
        h.faults(url, [{"route": d.PIXELS, "kind": "slow", "delay": 1.0 + i / 8, "count": 1}
                       for i in range(8)])
    elif moment == "mid-download":
        h.throttle(url, per_connection=150_000)


def _condition(cycle: DirectCycle, moment: str) -> Callable[[], bool]:
    conditions: dict[str, Callable[[], Any]] = {
        "mid-fetch": cycle.fetching,
        "after-split": cycle.moved_or_split,
        "mid-download": cycle.downloading,
        "random": cycle.random_time,
    }
    return conditions[moment]


def _finished(session: h.Session) -> bool:
    return not h.scalar(session, "SELECT COUNT(*) FROM units WHERE state NOT IN"
                        " ('done', 'split')")


def run(quick: bool, seed: int, workdir: Path) -> Result:
    rng = random.Random(seed)
    moments = _plan(quick, rng)
    route = "direct" if quick else "auto"
    # Few requests at once: a fetch's end is then the loop's next write (no room to start
    # another until it is collected), which the lock's pulses stop it at.
    limits = {"direct_requests": DIRECT_REQUESTS[quick]}
    result = Result(part="direct_kill9", tried="")
    log = workdir / "workers.log"
    hits: dict[str, int] = {}
    missed: list[str] = []
    died: list[str] = []
    left = {"parts": 0, "uncommitted": 0}  # what the kills under the lock left behind
    kills = 0
    pulses: list[int] = []  # lock pulses each kill under the lock took
    with h.emulator(**d.emulator_config(seed, **({} if quick else FULL_EMULATOR))) as (emu,
                                                                                    ledger):
        session = (h.new_session(workdir, emu.url, **d.job(route, d.QUICK_BBOX, 2,
                                                            limits=limits)) if quick
                   else d.new_auto_session(workdir, emu.url, FULL_MONTHS, limits=limits))
        for moment in moments:
            if _finished(session):
                break
            _setup(emu.url, moment)
            cycle = DirectCycle(session, rng)
            worker = h.start_worker(session, log)
            if moment != "random":
                h.wait_for(functools.partial(cycle.ready, worker.pid), START_TIMEOUT,
                           proc=worker)
            if moment in LOCKED:
                hit = cycle.under_lock(moment, MOMENT_TIMEOUT, worker, ledger)
                for key, n in cycle.seen.items():
                    left[key] += n
                pulses.append(cycle.pulses)
            else:
                hit = h.wait_for(_condition(cycle, moment), MOMENT_TIMEOUT, proc=worker,
                                 every=0.01)
            code = worker.poll()
            if code is None or (hit and code == -9):
                h.kill9(worker)
                kills += 1
                # A kill under the lock counts for each of its moments it found.
                found = [m for m in LOCKED if cycle.seen.get(_SEEN[m])] if moment in LOCKED \
                    else [moment]
                for m in found if hit else []:
                    hits[m] = hits.get(m, 0) + 1
                if not hit:
                    missed.append(moment)
            elif code != 0:
                died.append(f"{moment}: the worker exited {code} before its kill")
            h.clear_faults(emu.url)  # the throttle with them
        end_code = h.run_to_end(session, log, END_TIMEOUT)
        result.check("every restarted worker ran until it was killed", not died,
                     "; ".join(died) + f"\n{h.tail(log)}")
        result.check("the last worker finished the job (exit 0)", end_code == 0,
                     f"exit {end_code}\n{h.tail(log)}")
        h.check_finished_job(result, emu.url, ledger, session)
        tries = d.tries(session)
        more = {u: n for u, n in tries.items() if n != 1}
        result.check("every direct unit done in one try (the kills cost none)",
                     bool(tries) and not more,
                     ", ".join(f"{u}: {n} tries" for u, n in sorted(more.items())[:5]))
        if quick:
            result.check("a tile split on the direct route", d.split_direct(session) > 0)
        else:
            result.check("auto sent units both ways (direct, and moved to batch)",
                         d.moved(session) > 0 and d.routes(session).get("direct", 0) > 0,
                         f"{d.routes(session)}, {d.moved(session)} moved")
        result.check("kills left parts and files moved in but not committed, for the"
                     " restarts to clean up", left["parts"] > 0 and left["uncommitted"] > 0,
                     str(left))
        computed = ledger.pixels()
        answers = sum(len(v) for v in computed.values())
        units = h.scalar(session, "SELECT COUNT(*) FROM units")
    result.tried = (f"{kills} kill -9 of a headless worker at seeded moments (hit_* below) of"
                    f" a {units}-unit {route} job, each restarted")
    result.numbers.update({"kills": kills, "moments_hit": sum(hits.values()),
                           "moments_missed": len(missed),
                           **{f"hit_{k}": n for k, n in sorted(hits.items())},
                           "parts_left_by_kills": left["parts"],
                           "files_uncommitted_at_kills": left["uncommitted"],
                           "pixels_answers": answers,
                           "lock_pulses_max": max(pulses, default=0),
                           "moved_to_batch": d.moved(session) if not quick else 0})
    if missed:
        result.skipped += (f" {len(missed)} moment(s) not reached within {MOMENT_TIMEOUT:.0f} s,"
                           f" killed then anyway: {', '.join(missed)}")
    return result
