"""A job's periods: the [time] section cut into steps, each a unit's dates, and the unit id a
tile, a period (and a batch, core/batches.py) make. Below the planner and the job-file check,
which both count units."""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only: the job-file check imports this module
    from core.spec import Step, TimeSpec


@dataclass(frozen=True)
class Period:
    id: str  # "20230601", or "all" when the job has no [time]
    start: dt.date | None
    end: dt.date | None  # exclusive


def add_step(day: dt.date, step: Step) -> dt.date:
    """The day one step later; date.max when that is past the calendar's end (the period then
    ends at time.end, which is never later)."""
    if step.unit == "days":
        if step.count > (dt.date.max - day).days:
            return dt.date.max
        return day + dt.timedelta(days=step.count)
    month = day.month - 1 + step.count
    year, month = day.year + month // 12, month % 12 + 1
    if year > dt.MAXYEAR:
        return dt.date.max
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def periods(time: TimeSpec | None) -> list[Period]:
    if time is None:
        return [Period("all", None, None)]
    if time.step is None:
        return [Period(time.start.strftime("%Y%m%d"), time.start, time.end)]
    out: list[Period] = []
    start = time.start
    while start < time.end:
        end = min(add_step(start, time.step), time.end)
        out.append(Period(start.strftime("%Y%m%d"), start, end))
        start = end
    return out


def unit_id(tile: str, period: Period, batch: int | None = None) -> str:
    """`r12c40_20230601`, `r12c40` without [time]; with [batches], `_b{k}` after it."""
    base = tile if period.id == "all" else f"{tile}_{period.id}"
    return base if batch is None else f"{base}_b{batch}"
