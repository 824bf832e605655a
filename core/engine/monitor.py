"""The worker's monitor: what EE says of our tasks (operations.list, only as many pages as
our live tasks need, and operations.get for those the pages did not show) becomes unit and
attempt states; failures are classified (core/backends/failures.py) into retry with backoff,
wait for Drive space, split in four, or failed. An EE that does not answer is waited out."""

from __future__ import annotations

import time
from typing import Any

from core.backends.earthengine import Operation
from core.backends.failures import (
    RETRYABLE,
    Kind,
    classify,
    classify_exception,
    classify_message,
)
from core.engine.base import CLOCK_SKEW, WorkerBase
from core.engine.memory import MEMORY_TEXT
from core.states import (
    A_SUBMITTING,
    BACKOFF,
    CANCELLED,
    DONE,
    DOWNLOADING,
    EE_CANCELLED,
    EE_CANCELLING,
    EE_FAILED,
    EE_PENDING,
    EE_RUNNING,
    EE_SUCCEEDED,
    EXPORTED,
    FAILED,
    IN_EE,
    QUEUED,
    RUNNING,
    SUBMITTING,
)

MAX_PAGES = 4  # operations.list pages read a poll (500 operations each)
MAX_GETS = 20  # operations.get a poll, for live tasks the pages did not show
RESTRICTED_TEXT = (
    "Earth Engine says the project is in restricted mode: it has used more EECU-hours this "
    "month than its noncommercial tier allows, so EE runs fewer of its tasks at once until "
    "the month ends or the tier is raised. The job goes on, slower. See "
    "https://developers.google.com/earth-engine/guides/noncommercial_tiers#restricted_mode")

# The longest wait between polls while EE is out. A poll gives up within seconds (two retries
# of the client's own), so failures add up fast; up to a minute apart, work resumed 40 s
# after an outage ended in a reliability run.
OUTAGE_POLL_MOST = 20.0


class Monitor(WorkerBase):
    def poll(self, *, search_unsent: bool = False) -> list[Any]:
        """Our tasks' states from operations.list (as few pages as our live tasks need) and
        operations.get for live ones the pages did not show, and the Drive quota.
        `search_unsent` also looks for exports whose request may not have reached EE (after a
        crash), by their description. Returns the attempts EE no longer knows (each logged
        and sent again as a new attempt)."""
        self.polls += 1
        attempts = self.store.watched_attempts()
        try:
            ops = self._list_ours(attempts, search_unsent)
            by_name = {op.name: op for op in ops}
            by_description = {op.description: op for op in ops}
            unseen = [a for a in attempts if a["operation"] and a["operation"] not in by_name
                      and a["description"] not in by_description]
            fetched, lost = self._get_unseen(unseen)
        except Exception as exc:
            self._ee_failed(exc)
            return []
        self._reachable("ee")
        self.ee_failures = 0
        self._say_restricted()
        by_name.update(fetched)
        # Other jobs' queued tasks count against the project's queue; those on later pages
        # are older than all of ours and are not counted (a rare undercount).
        self.project_pending = sum(op.state == EE_PENDING for op in ops)
        for attempt in attempts:
            op = by_name.get(attempt["operation"] or "") or by_description.get(
                attempt["description"])
            if op is not None:
                self._track(attempt, op)
                self._saw_operation(attempt, op)
        if lost:
            self._lost(lost)
        if self.drive is not None:
            self._learn_ratio()
            if (self._quota_due() or "drive" in self.down) and self._read_quota():
                self._learn_drive_need()
        self.next_poll = time.time() + self._poll_interval(ops)
        return lost

    def _ee_failed(self, exc: Exception) -> None:
        """The listing failed: an outage is waited out (polls back off to OUTAGE_POLL_MOST
        apart), anything else retried at the next poll."""
        failure = classify(exc)
        self.ee_failures += 1
        if failure.kind is Kind.OUTAGE:
            self._unreachable("ee", failure.message)
            delay = min(self.limits.poll_seconds * 2 ** min(self.ee_failures, 8),
                        max(OUTAGE_POLL_MOST, self.limits.poll_seconds))
        else:
            self._event(f"listing EE tasks failed, will retry: {failure.message}", "warning")
            delay = self.limits.poll_seconds
        self.next_poll = time.time() + delay

    def _init_monitor(self) -> None:
        self.ee_failures = 0  # listings failed in a row
        self.get_turn = 0  # where the operations.get round-robin goes on at the next poll
        self.restricted = False  # EE says the project is in restricted mode

    def _say_restricted(self) -> None:
        """EE's x-earth-engine-quota-status header (read by the adapter on our polls) says
        the project ran over its noncommercial tier: said once in the log, and in the header
        for as long as it lasts."""
        restricted = bool(self.ee.restricted)
        if restricted == self.restricted:
            return
        self.restricted = restricted
        if restricted:
            self._event(RESTRICTED_TEXT, "warning")
        else:
            self._event("Earth Engine no longer reports restricted mode for the project")

    def _list_ours(self, attempts: list[Any], search_unsent: bool) -> list[Operation]:
        """Page through operations.list until every live task of ours has been seen, at most
        MAX_PAGES pages a poll. EE keeps finished operations for weeks (200 pages at the end
        of a 100,000-unit job); the order of the listing is not documented, so paging also
        stops early when a page that reads newest first has gone past our oldest attempt
        (CLOCK_SKEW: EE's clock is not ours), and correctness never rests on it: the live
        tasks the pages did not show are asked for by name (_get_unseen)."""
        wanted = {a["operation"] for a in attempts if a["operation"]}
        wanted_descriptions = {a["description"] for a in attempts
                               if search_unsent and not a["operation"]}
        floor = min((a["created"] for a in attempts), default=None)
        ops: list[Operation] = []
        for n, page in enumerate(self.ee.operation_pages(), start=1):
            ops.extend(page)
            wanted.difference_update(op.name for op in page)
            wanted_descriptions.difference_update(op.description for op in page)
            if (not wanted and not wanted_descriptions) or n >= MAX_PAGES:
                break
            if floor is not None and _newest_first_and_older_than(page, floor - CLOCK_SKEW):
                break
        return ops

    def _get_unseen(self, unseen: list[Any]) -> tuple[dict[str, Operation], list[Any]]:
        """operations.get for live attempts the pages did not show, MAX_GETS a poll in turn:
        (name -> operation, attempts EE answers 404 for)."""
        if not unseen:
            return {}, []
        start = self.get_turn % len(unseen)
        batch = (unseen[start:] + unseen[:start])[:MAX_GETS]
        self.get_turn = start + len(batch)
        found: dict[str, Operation] = {}
        lost = []
        for attempt in batch:
            op = self.ee.get_operation(attempt["operation"])
            if op is None:
                lost.append(attempt)
            else:
                found[op.name] = op
        return found, lost

    def _lost(self, attempts: list[Any]) -> None:
        """Attempts EE no longer knows (operations.get: 404): one being cancelled is over;
        any other unit is sent again as a new attempt. Left waiting, it waited for ever."""
        with self.store.tx():
            for attempt in attempts:
                self.store.attempt_lost(attempt)
                if attempt["state"] != EE_CANCELLING:
                    self.store.set_unit(attempt["unit"], BACKOFF, not_before=None,
                                        only_from=IN_EE)
                self.store.log(f"EE no longer knows task {attempt['operation']}; "
                               + ("its cancel is over" if attempt["state"] == EE_CANCELLING
                                  else "the unit is sent again as a new attempt"),
                               "warning", attempt["unit"])

    def _poll_interval(self, ops: list[Operation]) -> float:
        base = self.limits.poll_seconds
        ours = self.store.count_units_in(IN_EE)
        if ours == 0:
            return base * 2  # idle: nothing of ours is in EE
        if any(op.state == EE_RUNNING and op.progress >= 0.8 for op in ops) and (
                self.budget_blocked or not self.store.any_unit_in((QUEUED,))):
            # Something is about to finish and it matters when: none of ours waits in EE's
            # queue to take the slot, or admission waits for Drive space. While EE's queue
            # holds our next task, looking sooner gained nothing but requests (benchmark:
            # same makespan, 1.8 operations.list per unit instead of 4).
            return base / 4
        return base

    def _track(self, attempt: Any, op: Operation) -> None:
        now = time.time()
        unit = attempt["unit"]
        unit_state = attempt["unit_state"]
        cancelled = attempt["state"] == EE_CANCELLING or unit_state == CANCELLED
        state = EE_CANCELLING if attempt["state"] == EE_CANCELLING and op.active else op.state
        latest = self.store.latest_attempt(unit)
        with self.store.tx():
            # EE's createTime and the folder it wrote to say which Drive files are this
            # attempt's outputs (core/engine/matching.py).
            self.store.attempt_seen(
                attempt["id"], operation=op.name, state=state, progress=op.progress,
                eecu_seconds=op.eecu_seconds, error=op.error, started=_started(op, now),
                ee_created=op.created_at(), folder_id=op.drive_folder())
            if cancelled or latest["id"] != attempt["id"] or unit_state not in (
                    SUBMITTING, QUEUED, RUNNING, BACKOFF):
                pass  # an attempt the user cancelled, or one a retry has replaced
            elif op.state == EE_PENDING:
                self.store.set_unit(unit, QUEUED)
            elif op.state == EE_RUNNING:
                self.store.set_unit(unit, RUNNING)
            elif op.state == EE_SUCCEEDED:
                self.memory.succeeded(self.store.unit(unit))
                done = self.drive is None  # assets and Cloud Storage: nothing to fetch
                self.store.set_unit(unit, DONE if done else EXPORTED)
                self.store.log(f"exported in EE ({op.eecu_seconds or 0:.0f} EECU-s)", "info",
                               unit)
                if done:
                    self.finished.append(now)
            elif op.state == EE_FAILED:
                self._failed(attempt, op.error or "failed without a message")
            elif op.state == EE_CANCELLED:
                self.store.set_unit(unit, CANCELLED, error="cancelled in Earth Engine")
                self.store.log("cancelled in Earth Engine (outside eebatch)", "warning", unit)
        if not cancelled:
            return
        if op.state == EE_SUCCEEDED and self.store.unit(unit)["state"] not in (
                EXPORTED, DOWNLOADING, DONE):
            # It finished before the cancel reached EE: its files must leave Drive.
            self._event("finished before the cancel reached EE; removing its files",
                        "info", unit)
            self._remove_outputs(unit)
        elif op.active and (not attempt["operation"] or attempt["state"] == A_SUBMITTING):
            # EE acknowledged the submit only after the user cancelled: cancel it now.
            try:
                self.ee.cancel(op.name)
            except Exception as exc:
                self._event(f"cancel failed: {classify_exception(exc)[1]}", "warning", unit)

    def _failed(self, attempt: Any, message: str) -> None:
        """Classify an EE failure (inside a transaction)."""
        unit = attempt["unit"]
        kind = classify_message(message)
        if kind is Kind.SPLIT:
            if MEMORY_TEXT in message:
                self.memory.failed(self.store.unit(unit))
            if attempt["depth"] < self.limits.split_depth:
                self._split(unit, message)
            else:
                self.store.set_unit(unit, FAILED, error=f"{message} (already split "
                                    f"{attempt['depth']} times; split_depth = "
                                    f"{self.limits.split_depth})")
                self.store.log(f"failed: {message}", "error", unit)
        elif kind is Kind.DRIVE_FULL:
            self._drive_was_full(attempt, message)
        elif kind in RETRYABLE:
            self._backoff(unit, attempt["unit_attempts"], message)
        else:
            self.store.set_unit(unit, FAILED, error=message)
            self.store.log(f"failed: {message}", "error", unit)

    def _backoff(self, unit: str, attempts: int, message: str) -> None:
        if attempts >= self.limits.max_attempts:
            self.store.set_unit(unit, FAILED,
                                error=f"{message} (gave up after {attempts} attempts)")
            self.store.log(f"failed after {attempts} attempts: {message}", "error", unit)
            return
        base = max(1.0, self.limits.poll_seconds / 2)
        delay = min(base * 2 ** max(attempts - 1, 0), 600) * self.rng.uniform(0.5, 1.5)
        self.store.set_unit(unit, BACKOFF, error=message, not_before=time.time() + delay)
        self.store.log(f"will retry in {delay:.0f} s: {message}", "warning", unit)


def _newest_first_and_older_than(page: list[Operation], floor: float) -> bool:
    """The page reads newest first and its last (oldest) operation was created before
    `floor`: later pages hold only older ones."""
    times = [t for t in (op.created_at() for op in page) if t is not None]
    return len(times) >= 2 and times[0] >= times[-1] and times[-1] < floor


def _started(op: Operation, now: float) -> float | None:
    """When the task started: EE's startTime (an emulator's simulated clock may run ahead of
    ours: never later than now), else now if we see it running."""
    started = op.started_at()
    if started is not None:
        return min(started, now)
    return now if op.state == EE_RUNNING else None
