"""The worker's admission: which units are sent to EE and when (task slots, EE's project queue,
the Drive budget and quota), with the Drive accounting it rests on (our bytes known exactly,
others' from the quota, sizes learned from finished units), and the submit itself: the
attempt is written with its requestId before the request leaves."""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

from core.backends.drive import Quota
from core.backends.failures import (
    RETRYABLE,
    Kind,
    classify,
)
from core.batches import unit_batch
from core.engine.base import WorkerBase, _size
from core.engine.memory import MemoryLessons
from core.limits import LiveLimits
from core.naming import file_prefix, task_description
from core.recipes.build import RecipeError, UnitWork, build
from core.spec import JobSpec
from core.states import (
    A_SUBMITTING,
    ACTIVE,
    BACKOFF,
    FAILED,
    IN_EE,
    QUEUED,
    SUBMITTING,
)

PROJECT_QUEUE_CAP = 2800  # EE holds 3,000 pending tasks per project; keep clear of it
# Drive quota reads (about.get): every poll once the job's own Drive bytes (in Drive and
# expected) pass QUOTA_NEAR of the room other files leave it under its limit, else every
# QUOTA_EVERY_POLLS polls (5 minutes at the default poll_seconds).
QUOTA_EVERY_POLLS = 10
QUOTA_NEAR = 0.5


class Admission(WorkerBase):
    def _init_admission(self) -> None:
        self.quota = Quota(0, None, 0)
        self.quota_read = -math.inf  # when the quota was last read
        self.used_other = 0  # Drive bytes not ours (the user's files, other jobs)
        self.project_pending = 0  # tasks PENDING in the project's EE queue, ours or not
        self.ratio = 1.0  # actual / estimated bytes, learned from finished units
        self.ratio_floor = 0.0  # a lower bound on ratio taught by Drive-full failures
        self.budget_blocked = False  # the last admission left a unit out for Drive space
        self.memory = MemoryLessons(self.store)
        # unit -> Drive bytes admission gave it, for exports that found Drive full and whose
        # lesson the next quota read teaches (_learn_drive_need)
        self.drive_full_units: dict[str, int] = {}

    def submit(self) -> None:
        self.budget_blocked = False  # set when a unit waits for Drive space (polls sooner)
        live = LiveLimits.of(self.limits, self.store.settings())
        if live.paused or "disk" in self.waits or "ee" in self.down:
            # The disk wait holds exports too: their files would have nowhere to go. While
            # EE does not answer, the polls (backing off) find out when it does.
            return
        budget = live.drive_budget
        in_ee = self.store.count_units_in(IN_EE)
        room = min(live.max_tasks - in_ee, PROJECT_QUEUE_CAP - self.project_pending)
        now = time.time()
        candidates = [] if room <= 0 else self.store.units_to_send(now, room * 4)
        expected = self._expected_drive_bytes() if candidates else 0
        submitted = 0
        smallest_left_out: int | None = None
        for row in candidates:
            if submitted >= room:
                break
            if self.model_recipe is not None and self.model_of(row["period"])[1] is None:
                continue  # its model is being trained (training.py says so)
            if self._foreseen_out_of_memory(row):
                continue  # split now; its quarters come up at the next call
            if not self.cost_allows(row, submitted, in_ee, live.eecu_hours):
                break  # the EECU cap, or EE's restricted mode (costs.py says why)
            need = self._need(row)
            if self.drive is not None and not self._fits(need, expected, budget):
                self.budget_blocked = True
                smallest_left_out = min(need, smallest_left_out or need)
                continue  # a smaller unit further down may still fit
            if self._send(row):
                expected += need
                self.project_pending += 1
                submitted += 1
        if submitted:
            self.next_poll = min(self.next_poll, time.time() + self.limits.poll_seconds)
        if submitted or smallest_left_out is None:
            self._wait("drive", None)
            return
        moving = self.store.any_unit_in(ACTIVE)  # our exports on their way through Drive
        # While our own exports move through Drive the budget is just doing its job (shown,
        # not logged); with nothing moving the wait cannot end by itself: logged.
        self._wait("drive", self._drive_wait_text(smallest_left_out, expected, budget, moving),
                   loud=not moving)

    def _foreseen_out_of_memory(self, row: Any) -> bool:
        """A tile that memory failures say will fail too (memory.py) is split before it is
        sent: sent whole, it would spend a slot (300 s or more of EE's time) on the failure."""
        why = self.memory.foresee(row) if row["depth"] < self.limits.split_depth else None
        if why is None:
            return False
        with self.store.tx():
            self._split(row["id"], why)
        return True

    def _need(self, row: Any) -> int:
        """Drive bytes a unit's export will take: the estimate scaled by what finished units
        weighed, or more if a "Drive full" failure showed it needs more."""
        return max(int(row["est_bytes"] * self.ratio), row["need_bytes"])

    def _drive_wait_text(self, need: int, expected: int, budget: int, moving: bool) -> str:
        limit = budget if self.quota.total is None else min(budget, self.quota.total)
        free = max(0, limit - self.used_other - expected)
        needs = f"~{_size(need)}" if _size(need) != _size(free) else f"more than {_size(free)}"
        text = (f"waiting for Drive space: {_size(free)} free for this job, the next unit "
                f"needs {needs}; ")
        if moving:
            return text + "eebatch's own files free space as they are downloaded"
        stuck = self._our_files_in_drive()
        if stuck:  # files of failed or cancelled units that stay in Drive
            return text + (f"{_size(stuck)} of it is held by files of this job's failed units "
                           "still in Drive: retry them, free space, or raise drive_budget")
        return text + "free space in Drive or raise drive_budget"

    def _fits(self, need: int, expected: int, budget: int) -> bool:
        used = self.used_other
        limit = budget if self.quota.total is None else min(budget, self.quota.total)
        if used + expected + need <= limit:
            return True
        # Nothing of ours is on its way: a unit bigger than the budget alone still goes when
        # the Drive itself can hold it, or the job would wait forever.
        return expected == 0 and (self.quota.total is None or used + need <= self.quota.total)

    def _our_files_in_drive(self) -> int:
        return self.store.our_bytes_in_drive()

    def _expected_drive_bytes(self) -> int:
        """Drive bytes this job holds or will soon hold: files listed and not yet deleted, and
        what exports still running or exported but not yet listed need (see _need)."""
        return self.store.expected_export_bytes(self.ratio) + self._our_files_in_drive()

    def _send(self, row: Any) -> bool:
        """Write the attempt (with its requestId) first, then send. Returns True if sent."""
        unit = row["id"]
        attempt = self.store.latest_attempt(unit)
        with self.store.tx():
            if attempt is None or attempt["state"] != A_SUBMITTING:
                n = (attempt["n"] + 1) if attempt is not None else 1
                request_id = str(uuid.uuid4())
                self.store.record_attempt(
                    unit, n, request_id, task_description(self.store.id, unit, n),
                    file_prefix(self.spec.export.prefix, self.spec.name, unit))
                attempt = self.store.latest_attempt(unit)
            self.store.set_unit(unit, SUBMITTING, attempts=row["attempts"] + 1)
        assert attempt is not None
        work = UnitWork(unit, (row["west"], row["south"], row["east"], row["north"]),
                        row["start"], row["end"],
                        unit_batch(self.spec, row["batch"], row["start"], row["end"]),
                        model=(self.model_of(row["period"])[1]
                               if self.model_recipe is not None else None))
        prefix = self._prefix(unit, attempt)
        try:
            kind, obj = build(self.spec, work)
            name = self.ee.start_export(
                attempt["request_id"], obj, kind=kind, description=attempt["description"],
                prefix=prefix, export=self.spec.export, region=_region(self.spec, work),
                priority=self._priority(row))
        except RecipeError as exc:
            with self.store.tx():
                self.store.attempt_refused(attempt["id"], str(exc))
                self.store.set_unit(unit, FAILED, error=str(exc))
                self.store.log(f"failed: {exc}", "error", unit)
            return False
        except Exception as exc:
            failure = classify(exc)
            with self.store.tx():
                if failure.kind is Kind.OUTAGE:
                    # EE is down, not this export: the unit waits, costing no try, and is
                    # sent again under the same requestId once EE answers (poll).
                    self.store.set_unit(unit, BACKOFF, attempts=row["attempts"],
                                        error=f"submit: {failure.message}", not_before=None)
                elif failure.kind in RETRYABLE:
                    # The attempt stays 'submitting': the resend reuses its requestId.
                    self._backoff(unit, row["attempts"] + 1, f"submit: {failure.message}")
                else:
                    self.store.attempt_refused(attempt["id"], failure.message)
                    self.store.set_unit(unit, FAILED, error=f"submit: {failure.message}")
                    self.store.log(f"submit failed: {failure.message}", "error", unit)
            if failure.kind is Kind.OUTAGE:
                self._unreachable("ee", failure.message)
            return False
        with self.store.tx():
            self.store.attempt_sent(attempt["id"], name)
            self.store.set_unit(unit, QUEUED, only_from=(SUBMITTING,))
        return True

    def _priority(self, row: Any) -> int | None:
        """EE priority only when the job file asks for one (export.priority); a manual retry
        then goes 100 higher. Without it, a retry still goes first in eebatch's own queue
        (units_to_send), which is where nearly all of the job waits."""
        asked = self.spec.export.priority
        if asked is None:
            return None
        return min(asked + 100, 9999) if row["priority"] > 0 else asked

    def _quota_due(self) -> bool:
        """Whether this poll reads the Drive quota (about.get). Our own bytes in Drive are
        known here exactly; only other files (the user's, other jobs) need the quota. So it is
        read at every poll only once the job's own bytes fill QUOTA_NEAR of the room the
        others leave it, or admission waits for space, and otherwise every QUOTA_EVERY_POLLS
        polls (benchmark: one read per poll was the largest share of the requests per unit
        beyond the classic loop's). The user's own files taking half the budget are no reason
        by themselves: they were, and with nothing of the job in Drive every poll read it."""
        every = QUOTA_EVERY_POLLS * self.limits.poll_seconds
        if self.budget_blocked or time.time() - self.quota_read >= every:
            return True
        budget = LiveLimits.of(self.limits, self.store.settings()).drive_budget
        limit = budget if self.quota.total is None else min(budget, self.quota.total)
        ours = self._expected_drive_bytes()
        return ours > 0 and ours >= QUOTA_NEAR * (limit - self.used_other)

    def _read_quota(self) -> bool:
        assert self.drive is not None
        try:
            self.quota = self.drive.quota()
        except Exception as exc:
            failure = classify(exc)
            if failure.kind is Kind.OUTAGE:
                self._unreachable("drive", failure.message)
            else:
                self._event(f"reading the Drive quota failed: {failure.message}", "warning")
            return False
        self._reachable("drive")
        self.quota_read = time.time()
        # Drive bytes that are not ours (the user's own files, other jobs): the quota minus
        # what we know we have there now.
        self.used_other = max(0, self.quota.used - self._our_files_in_drive())
        return True

    def _drive_was_full(self, attempt: Any, message: str) -> None:
        """Drive had no room for the export's files. That is not the unit's fault, so it
        costs no attempt: the unit goes back to admission, which holds it until Drive has the
        room this failure shows it needs (learned at this poll's quota read). Resending at
        once only failed again: 120 exports in 65 s, every unit FAILED, in a trial."""
        unit = attempt["unit"]
        self.quota_read = -math.inf  # Drive is fuller than we knew: read it now
        if self.quota.total is None or unit in self.drive_full_units:
            # Nothing to learn from (a Drive without a known total), or the last failure's
            # lesson was never learned (quota reads failing): an ordinary transient failure,
            # counted, so it can never be resent for free forever.
            self._backoff(unit, attempt["unit_attempts"], message)
            return
        self.drive_full_units[unit] = self._need(self.store.unit(unit))
        # Held until this poll's quota read has taught admission what it needs.
        self.store.set_unit(unit, BACKOFF, error=message,
                            attempts=max(attempt["unit_attempts"] - 1, 0),
                            not_before=time.time() + self.limits.poll_seconds)
        self.store.log(f"Drive had no room for the export ({message}); the unit waits "
                       "until Drive has room", "warning", unit)

    def _learn_drive_need(self) -> None:
        """A unit whose export found Drive full needs more room than admission gave it. Our
        own files may have filled Drive at that moment and be gone by now, so what is free
        now says little; the unit is sent again only with all the room Drive has beside
        other people's files (alone). One that failed with all of it needs more than Drive
        can give until someone frees space: it waits, and says so. Until a file of the job
        has been measured, other units are taken to be as big (ratio_floor): estimates alone
        never learned it, and admission kept sending exports that could not fit (120 failed
        exports in 65 s in a trial)."""
        if self.quota.total is not None:
            room = max(0, self.quota.total - self.used_other)
            learned = []
            for unit, need in self.drive_full_units.items():
                new_need = room + 1 if need >= room else room
                learned.append((new_need, unit))
                est = self.store.unit(unit)["est_bytes"]
                if est > 0:
                    self.ratio_floor = max(self.ratio_floor, new_need / est)
            with self.store.tx():
                self.store.raise_need_bytes(learned)
            self._learn_ratio()
            self.drive_full_units = {}

    def _learn_ratio(self) -> None:
        # Every unit whose files have been listed counts: sizes are known before download.
        actual, estimated = self.store.measured_and_estimated_bytes()
        if actual and estimated:
            self.ratio = max(actual / estimated, 0.01)
        else:  # nothing measured yet: what Drive-full failures taught (_learn_drive_need)
            self.ratio = max(self.ratio, self.ratio_floor)


def _region(spec: JobSpec, work: UnitWork) -> Any:
    from core.recipes.build import tile_geometry

    return tile_geometry(spec, work.bounds)
