"""The worker's monitor: what EE says of our tasks (operations.list, newest first, only as
many pages as our live tasks need) becomes unit and attempt states; failures are classified
into retry with backoff, split in four, or failed."""

from __future__ import annotations

import time
from typing import Any

from core.backends.earthengine import Operation
from core.backends.failures import (
    Kind,
    classify_exception,
    classify_message,
    drive_full,
)
from core.engine.base import CLOCK_SKEW, WorkerBase
from core.grid import child_id, split_bounds
from core.periods import Period, unit_id
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
    SPLIT,
    SUBMITTING,
)


class Monitor(WorkerBase):
    def poll(self, *, search_unsent: bool = False) -> list[Any]:
        """Our tasks' states from operations.list (newest first, one page unless a task of
        ours is older than that page), and the Drive quota. `search_unsent` also looks for
        exports whose request may not have reached EE (after a crash), by their description.
        Returns the live attempts EE did not list ([] if the listing failed)."""
        self.polls += 1
        attempts = self.store.watched_attempts()
        try:
            ops = self._list_ours(attempts, search_unsent)
        except Exception as exc:
            self._event(f"listing EE tasks failed, will retry: {classify_exception(exc)[1]}",
                        "warning")
            self.next_poll = time.time() + self.limits.poll_seconds
            return []
        by_name = {op.name: op for op in ops}
        by_description = {op.description: op for op in ops}
        # Other jobs' queued tasks count against the project's queue; those on later pages
        # are older than all of ours and are not counted (a rare undercount).
        self.project_pending = sum(op.state == EE_PENDING for op in ops)
        unlisted = []
        for attempt in attempts:
            op = by_name.get(attempt["operation"] or "") or by_description.get(
                attempt["description"])
            if op is not None:
                self._track(attempt, op)
            elif attempt["state"] != A_SUBMITTING:
                unlisted.append(attempt)
        if self.drive is not None:
            self._learn_ratio()
            if self._quota_due() and self._read_quota():
                self._learn_drive_need()
        self.next_poll = time.time() + self._poll_interval(ops)
        return unlisted

    def _list_ours(self, attempts: list[Any], search_unsent: bool) -> list[Operation]:
        """Page through operations.list only until every live task of ours has been seen.
        Operations come newest first and EE keeps finished ones for weeks, so reading every
        page cost 200 requests per poll at the end of a 100,000-unit job (benchmark). A task
        that is not listed at all (an operation EE has forgotten) stops the paging at tasks
        created well before our oldest live attempt (CLOCK_SKEW: EE's clock is not ours)."""
        wanted = {a["operation"] for a in attempts if a["operation"]}
        wanted_descriptions = {a["description"] for a in attempts
                               if search_unsent and not a["operation"]}
        floor = min((a["created"] for a in attempts), default=None)
        ops: list[Operation] = []
        for page in self.ee.operation_pages():
            ops.extend(page)
            wanted.difference_update(op.name for op in page)
            wanted_descriptions.difference_update(op.description for op in page)
            if not wanted and not wanted_descriptions:
                break
            oldest = page[-1].created_at() if page else None
            if floor is not None and oldest is not None and oldest < floor - CLOCK_SKEW:
                break
        return ops

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
            if attempt["depth"] < self.limits.split_depth:
                self._split(unit, message)
            else:
                self.store.set_unit(unit, FAILED, error=f"{message} (already split "
                                    f"{attempt['depth']} times; split_depth = "
                                    f"{self.limits.split_depth})")
                self.store.log(f"failed: {message}", "error", unit)
        elif kind is Kind.TRANSIENT and drive_full(message):
            self._drive_was_full(attempt, message)
        elif kind is Kind.TRANSIENT:
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

    def _split(self, unit: str, message: str) -> None:
        row = self.store.unit(unit)
        assert row is not None
        period = Period(row["period"], None, None)
        children = []
        for q, (w, s, e, n) in enumerate(split_bounds((row["west"], row["south"], row["east"],
                                                        row["north"]))):
            tile = child_id(row["tile"], q)
            children.append((unit_id(tile, period), tile, row["row"], row["col"],
                             row["depth"] + 1, unit, row["period"], row["start"], row["end"],
                             w, s, e, n, row["est_pixels"] // 4, row["est_bytes"] // 4,
                             row["priority"], time.time()))
        self.store.add_children(children)
        self.store.set_unit(unit, SPLIT, error=message)
        self.store.log(f"{message} -> split into 4 tiles", "warning", unit)


def _started(op: Operation, now: float) -> float | None:
    """When the task started: EE's startTime (an emulator's simulated clock may run ahead of
    ours: never later than now), else now if we see it running."""
    started = op.started_at()
    if started is not None:
        return min(started, now)
    return now if op.state == EE_RUNNING else None
