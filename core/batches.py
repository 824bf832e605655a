"""Collection batches: a unit axis beside tiles and periods. A job's `[batches]` cuts the image
collection of each period into batches, each reduced by the recipe as a unit of its own:

- by count (`size` images a batch, `count` batches): batch k is the images k*size to
  (k+1)*size - 1 of the recipe's collection over the job's region and the period's dates, in
  date order - EE's `toList(size, k * size)`. The same images on every tile, so batch k of
  every tile makes one seamless mosaic;
- by date (`step`, as [time]'s): the period's days cut into steps; batch k is the k-th step,
  and a unit's start and end are its batch's days (so every recipe follows it by its dates).

Planning never asks Earth Engine: how many batches there are is the job file's to say.
Below the job-file check and the planner, which both count units; the recipes read `Batch`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.periods import Period, add_step

if TYPE_CHECKING:  # types only: the job-file check imports this module
    from core.spec import JobSpec, Step

BY = ("count", "date")
MAX_SIZE = 1_000_000  # images in one batch: far more than one export can reduce
MAX_EE_INT = 2**31 - 1  # EE's toList takes its count and offset as 32-bit integers


@dataclass(frozen=True)
class BatchSpec:
    """The job file's [batches]."""

    by: str  # "count" or "date"
    size: int | None = None  # by count: images in a batch
    count: int | None = None  # by count: batches in a period (given, or worked out of images)
    images: int | None = None  # by count: the collection's size, when the job file gives it
    step: Step | None = None  # by date

    def __str__(self) -> str:
        """What a batch is, for the plan: "one every 1 month", "50 images each, in date
        order over the region"."""
        if self.by == "date":
            assert self.step is not None
            n, unit = self.step.count, self.step.unit
            return f"one every {n} {unit[:-1] if n == 1 else unit}"
        assert self.size is not None
        return (f"{self.size:,} image{'s' * (self.size != 1)} each, in date order over the "
                "region")


@dataclass(frozen=True)
class Batch:
    """One unit's batch, as a recipe needs it. By count, `size` images from `offset` of the
    recipe's collection over `region` (the job region's west, south, east, north in degrees)
    and the unit's dates, sorted by date; by date, the days `start` to `end` (exclusive, ISO),
    which are the unit's own start and end as well."""

    index: int  # from 0, in its period
    size: int | None = None
    region: tuple[float, float, float, float] | None = None
    start: str | None = None
    end: str | None = None

    @property
    def by(self) -> str:
        return "count" if self.size is not None else "date"

    @property
    def offset(self) -> int:
        return self.index * (self.size or 0)


@dataclass(frozen=True)
class Slice:
    """A tile's unit in time and collection: its period, its batch (None without [batches])
    and its days (the period's, or the batch's by date)."""

    period: Period
    batch: int | None
    start: dt.date | None
    end: dt.date | None


def date_cuts(start: dt.date, end: dt.date, step: Step) -> Iterator[tuple[dt.date, dt.date]]:
    """[start, end) in steps, the last one cut at end."""
    while start < end:
        stop = min(add_step(start, step), end)
        yield start, stop
        start = stop


def period_slices(period: Period, batches: BatchSpec | None) -> list[Slice]:
    """The units of one tile in `period`: one, or one per batch."""
    if batches is None:
        return [Slice(period, None, period.start, period.end)]
    if batches.by == "count":
        assert batches.count is not None
        return [Slice(period, k, period.start, period.end) for k in range(batches.count)]
    assert batches.step is not None and period.start is not None and period.end is not None
    return [Slice(period, k, start, end)
            for k, (start, end) in enumerate(date_cuts(period.start, period.end, batches.step))]


def slices(periods: list[Period], batches: BatchSpec | None) -> list[Slice]:
    return [s for period in periods for s in period_slices(period, batches)]


def count_slices(periods: list[Period], batches: BatchSpec | None) -> int:
    """len(slices(...)) without making them: by count that can be far past any cap."""
    if batches is None:
        return len(periods)
    if batches.by == "count":
        assert batches.count is not None
        return len(periods) * batches.count
    assert batches.step is not None
    return sum(1 for p in periods if p.start and p.end
               for _ in date_cuts(p.start, p.end, batches.step))


def unit_batch(spec: JobSpec, index: int | None, start: str | None,
               end: str | None) -> Batch | None:
    """The Batch of a unit of the job, from its stored batch index and days."""
    batches = spec.batches
    if index is None or batches is None:
        return None
    if batches.by == "count":
        west, south, east, north = spec.region.bounds
        return Batch(index, size=batches.size, region=(west, south, east, north))
    return Batch(index, start=start, end=end)
