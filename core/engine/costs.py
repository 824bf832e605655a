"""The worker's cost guard: what the job's EE work costs in EECU (EE's batchEecuUsageSeconds of
each operation), a forecast for the rest learned from the units that finished, the project's
use this month, and the limits the job file sets on them:

* `limits.eecu_hours`: no export is sent that the learned cost says would take the job past
  its cap. Until a unit has finished nobody knows what one costs, so a capped job sends one
  export at a time until the first one tells. At the cap the job waits, and says so.
* `limits.eecu_tier_hours`: a warning, once, when this month's use of the project and the
  job's forecast come near the tier (EE's noncommercial tiers restrict a project past it).
* `limits.pause_when_restricted`: no export is sent while EE says the project is restricted.
* `limits.straggler_factor`: a task running that many times longer than the median of its
  finished siblings of about its size is cancelled and sent again, once, with a log line.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from typing import Any

from core.backends.failures import classify
from core.engine.base import WorkerBase
from core.states import EE_RUNNING, EE_SUCCEEDED
from core.store.costs import STRAGGLER_PREFIX, Spend

MONTH_EVERY = 3600.0  # seconds between readings of the project's EECU this month
MONTH_PAGES = 20  # operations.list pages a reading may take (10,000 operations)
TIER_NEAR = 0.9  # the share of the tier that warns
SIBLINGS = 3  # finished siblings a straggler is measured against, at least
SIBLING_SPAN = 2.0  # a sibling is within this factor of the task's estimated pixels
KEEP_RUNS = 1000  # the latest finished run times kept


class Costs(WorkerBase):
    def _init_costs(self) -> None:
        self.spent: Spend | None = None  # read at each poll (read_spend)
        self.month_eecu: float | None = None  # the project's EECU-seconds this month
        self.month_read = -float("inf")
        self.forecast_eecu: float | None = None  # the job's total, used + what is left
        self.said_tier = False
        # Run times by EE's own clock (startTime to endTime): attempt id -> seconds so far of
        # the tasks running, and (estimated pixels, seconds) of those that succeeded, newest
        # last. In memory: after a restart the siblings are learned again.
        self.running_for: dict[int, float] = {}
        self.finished_runs: list[tuple[int, float]] = []

    # -- reading -------------------------------------------------------------------------------

    def read_spend(self) -> None:
        """At each poll: the job's spend, its forecast, and (hourly) the project's month."""
        self.spent = spend = self.store.spend()
        if spend.learned_per_pixel is not None:
            left = self.store.pixels_to_send() * spend.learned_per_pixel
            live_left = max(spend.live_pixels * spend.learned_per_pixel - spend.live_used, 0)
            self.forecast_eecu = spend.used + live_left + left
        if time.time() - self.month_read >= MONTH_EVERY:
            self._read_month()
        self._warn_tier()

    def _read_month(self) -> None:
        """The project's EECU-seconds this month (UTC), every operation of it as EE lists them,
        newest first, read until the month's start (at most MONTH_PAGES pages)."""
        now = dt.datetime.now(dt.UTC)
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
        total, complete = 0.0, False
        try:
            for n, page in enumerate(self.ee.operation_pages(), 1):
                for op in page:
                    created = op.created_at()
                    if created is not None and created >= start:
                        total += op.eecu_seconds or 0.0
                times = [t for t in (op.created_at() for op in page) if t is not None]
                if (times and min(times) < start) or n >= MONTH_PAGES:
                    complete = bool(times and min(times) < start)
                    break
            else:
                complete = True
        except Exception as exc:  # the month is a guide, never a reason to stop the job
            self._event(f"reading the project's EECU this month failed: "
                        f"{classify(exc).message}", "warning")
            self.month_read = time.time()
            return
        self.month_read = time.time()
        self.month_eecu = total if complete else max(total, self.month_eecu or 0.0)

    def _warn_tier(self) -> None:
        tier = self.limits.eecu_tier_hours
        if tier is None or self.said_tier or self.month_eecu is None:
            return
        spend = self.spent
        job_left = max((self.forecast_eecu or 0.0) - (spend.used if spend else 0.0), 0.0)
        month_hours = (self.month_eecu + job_left) / 3600
        if month_hours >= TIER_NEAR * tier:
            self.said_tier = True
            self._event(f"EECU: the project has used {self.month_eecu / 3600:,.1f} EECU-hours "
                        f"this month and this job needs ~{job_left / 3600:,.1f} more: "
                        f"{month_hours:,.1f} of its {tier:,.0f}-hour tier. Past it, EE "
                        "restricts the project (limits.pause_when_restricted stops the job "
                        "then)", "warning")

    def cost_status(self, cap: float | None) -> dict[str, Any]:
        """What the header and `status` show of the costs (EECU-seconds); `cap` in hours."""
        spend = self.spent
        return {"eecu_used": spend.used if spend else None,
                "eecu_forecast": self.forecast_eecu,
                "eecu_month": self.month_eecu,
                "eecu_cap": cap * 3600 if cap is not None else None}

    # -- admission -----------------------------------------------------------------------------

    def cost_allows(self, row: Any, sending: int, in_ee: int, cap: float | None) -> bool:
        """Whether `row` may be sent under the cap of `cap` EECU-hours (the live one: the
        job file's, or what `eebatch set` made it), with `sending` exports already sent in
        this admission and `in_ee` in EE before it. Says why when it does not."""
        restricted = self.limits.pause_when_restricted and self.restricted
        self._wait("restricted", "EE restricts the project (noncommercial tier used up): no "
                   "export is sent (limits.pause_when_restricted)" if restricted else None)
        if restricted:
            return False
        if cap is None:
            self._wait("eecu", None)
            return True
        if self.spent is None:
            self.read_spend()
        spend = self.spent
        assert spend is not None
        cap_s = cap * 3600
        per_pixel = spend.learned_per_pixel
        if per_pixel is None:
            # Nothing finished: what an export costs is not known. One at a time until the
            # first one tells, and none once the cap is reached.
            ok = spend.used < cap_s and in_ee + sending == 0
            if spend.used >= cap_s:
                self._wait_cap(spend.used, cap, None)
            return ok
        committed = spend.used + max(spend.live_pixels * per_pixel - spend.live_used, 0)
        need = row["est_pixels"] * per_pixel
        if committed + need * (sending + 1) <= cap_s:
            self._wait("eecu", None)
            return True
        self._wait_cap(committed, cap, need)
        return False

    def _wait_cap(self, committed: float, cap: float, need: float | None) -> None:
        needs = f"; the next export needs ~{_hours(need)}" if need is not None else ""
        self._wait("eecu", f"EECU cap: the job has used or committed {_hours(committed)} of "
                   f"its {cap:.3g} EECU-hours (limits.eecu_hours){needs}; raise it with "
                   f"`eebatch set {self.store.id} eecu_hours N` to go on")

    # -- stragglers ----------------------------------------------------------------------------

    def _saw_operation(self, attempt: Any, op: Any) -> None:
        ran = op.ran_seconds()
        if ran is None:
            return
        if op.state == EE_RUNNING:
            self.running_for[attempt["id"]] = ran
            return
        self.running_for.pop(attempt["id"], None)
        if op.state == EE_SUCCEEDED and (unit := self.store.unit(attempt["unit"])) is not None:
            self.finished_runs = [*self.finished_runs[-(KEEP_RUNS - 1):],
                                  (int(unit["est_pixels"]), ran)]

    def watch_stragglers(self) -> None:
        """At each poll: cancel and resend, once, a task running far longer than its finished
        siblings of about its size took."""
        factor = self.limits.straggler_factor
        if not factor:
            return
        for row in self.store.running_attempts():
            ran = self.running_for.get(row["id"])
            if ran is None or self.store.unit_was_straggler(row["unit"]):
                continue
            low, high = row["est_pixels"] / SIBLING_SPAN, row["est_pixels"] * SIBLING_SPAN
            siblings = [r for px, r in self.finished_runs if low <= px <= high]
            if len(siblings) < SIBLINGS:
                continue
            median = statistics.median(siblings)
            if ran <= factor * median:
                continue
            why = (f"{STRAGGLER_PREFIX} running {ran:,.0f} s, {ran / median:,.1f} times the "
                   f"{median:,.0f} s its {len(siblings)} finished siblings of its size took "
                   f"(limits.straggler_factor = {factor:g}); cancelled and sent again, once")
            try:
                self.ee.cancel(row["operation"])
            except Exception as exc:
                self._event(f"cancelling a straggler failed: {classify(exc).message}",
                            "warning", row["unit"])
                continue
            with self.store.tx():
                self.store.straggler_resent(row["id"], row["unit"], why)
                self.store.log(why, "warning", row["unit"])


def _hours(eecu_seconds: float) -> str:
    return f"{eecu_seconds / 3600:.3g}"
