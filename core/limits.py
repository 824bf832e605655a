"""A job's limits, each bound declared once, and the live limits a running job obeys: the job
file's values with what the user changed since (the dashboard's `+`/`-`/`p`, `eebatch pause`,
a `set` command), merged in one place.

The job-file check (core/spec.py), the store's `set` command, the dashboard's keys and the job
form's hints all read their bounds from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.sizes import parse_size

if TYPE_CHECKING:  # types only: the job-file check imports this module
    from core.spec import LimitsSpec


@dataclass(frozen=True)
class Bound:
    low: int
    high: int

    def holds(self, value: float) -> bool:
        return self.low <= value <= self.high

    def clamp(self, value: int) -> int:
        return min(self.high, max(self.low, value))

    @property
    def text(self) -> str:
        return f"{self.low}–{self.high}"


# Whole-number limits of a job file, [limits] section.
BOUNDS = {
    # EE holds 3,000 tasks per project, queued and running together.
    "max_tasks": Bound(1, 3000),
    "max_attempts": Bound(1, 100),
    "split_depth": Bound(0, 8),  # each level is four times the tasks
    "download_workers": Bound(1, 64),
    # EE answers at most 40 interactive requests at once per project (core/routes.py)
    "direct_requests": Bound(1, 40),
}
MAX_POLL = 86_400.0  # poll_seconds: at most a day between looks at EE

# Settings rows holding what the user changed while the job runs.
MAX_TASKS, DRIVE_BUDGET, PAUSED = "max_tasks", "drive_budget", "paused"
EECU_HOURS = "eecu_hours"  # the job's EECU cap (core/engine/costs.py)
SETTABLE = (MAX_TASKS, DRIVE_BUDGET, EECU_HOURS)  # by a `set` command (pause has its own verbs)
MAX_EECU_HOURS = 1e9  # finite: far beyond any tier


class LimitError(ValueError):
    """A live limit the user asked for is out of bounds; the message says which and why."""


@dataclass(frozen=True)
class LiveLimits:
    """What the worker obeys right now."""

    max_tasks: int
    drive_budget: int  # bytes
    paused: bool
    eecu_hours: float | None = None  # the job's EECU cap; None: none

    @classmethod
    def of(cls, job: LimitsSpec, settings: dict[str, Any]) -> LiveLimits:
        """The job file's limits, overridden by what the user set while it runs."""
        cap = settings.get(EECU_HOURS, job.eecu_hours)
        return cls(int(settings.get(MAX_TASKS, job.max_tasks)),
                   int(settings.get(DRIVE_BUDGET, job.drive_budget)),
                   bool(settings.get(PAUSED, False)),
                   float(cap) if cap is not None else None)

    @classmethod
    def initial_settings(cls, job: LimitsSpec) -> dict[str, object]:
        """The settings a new session starts with."""
        return {MAX_TASKS: job.max_tasks, DRIVE_BUDGET: job.drive_budget, PAUSED: False}


def check_live(key: str, value: Any) -> int | float:
    """The value a `set` of `key` stores, or LimitError saying why not."""
    if key == MAX_TASKS:
        bound = BOUNDS[MAX_TASKS]
        if not isinstance(value, int) or isinstance(value, bool) or not bound.holds(value):
            raise LimitError(f"max_tasks must be a whole number from {bound.low} to "
                             f"{bound.high}, got {value!r}")
        return value
    if key == DRIVE_BUDGET:
        try:
            size = parse_size(value)
        except ValueError as exc:
            raise LimitError(f"drive_budget: {exc}") from None
        if size <= 0:
            raise LimitError("drive_budget must be more than 0 bytes")
        return size
    if key == EECU_HOURS:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise LimitError(f"eecu_hours must be a number of EECU-hours, got {value!r}"
                                 ) from None
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not 0 < value <= MAX_EECU_HOURS:
            raise LimitError(f"eecu_hours must be more than 0 and at most {MAX_EECU_HOURS:g} "
                             f"EECU-hours, got {value!r}")
        return float(value)
    raise LimitError(f"cannot set {key!r}; settable: {', '.join(SETTABLE)}")
