"""JobSpec -> units (tile x period) with stable ids and size estimates, and a text summary."""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

import numpy as np

from core.grid import Tiles, area_m2, make_tiles
from core.recipes import RECIPES
from core.spec import JobSpec, Step, TimeSpec


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


def unit_id(tile: str, period: Period) -> str:
    return tile if period.id == "all" else f"{tile}_{period.id}"


@dataclass
class Plan:
    spec: JobSpec
    tiles: Tiles
    tile_ids: list[str]
    periods: list[Period]
    tile_pixels: np.ndarray  # per tile, at the export scale
    bytes_per_pixel: int  # all bands together

    @property
    def units(self) -> int:
        return len(self.tiles) * len(self.periods)

    @property
    def pixels(self) -> int:
        return int(self.tile_pixels.sum()) * len(self.periods)

    @property
    def est_bytes(self) -> int:
        return self.pixels * self.bytes_per_pixel

    @property
    def budgets(self) -> float:
        return self.est_bytes / self.spec.limits.drive_budget

    def unit_rows(self):  # type: ignore[no-untyped-def]
        """(id, tile, row, col, period, start, end, west, south, east, north, pixels, bytes)
        for every unit, biggest first within a period order that is stable."""
        bounds = self.tiles.bounds()
        for period in self.periods:
            start = period.start.isoformat() if period.start else None
            end = period.end.isoformat() if period.end else None
            for i, tile in enumerate(self.tile_ids):
                px = int(self.tile_pixels[i])
                w, s, e, n = bounds[i]
                yield (unit_id(tile, period), tile, int(self.tiles.rows[i]),
                       int(self.tiles.cols[i]), period.id, start, end, float(w), float(s),
                       float(e), float(n), px, px * self.bytes_per_pixel)


def tile_pixels(tiles: Tiles, scale: float) -> np.ndarray:
    """Pixels of each tile at the export scale (float: a job file can ask for absurd counts)."""
    return np.ceil(area_m2(tiles.frame, tiles.bounds()) / scale**2)


def bytes_per_pixel(spec: JobSpec) -> int:
    return sum(nbytes for _, nbytes in RECIPES[spec.recipe.name].bands(spec.recipe.params))


def make_plan(spec: JobSpec) -> Plan:
    tiles = make_tiles(spec)
    return Plan(spec, tiles, tiles.ids(), periods(spec.time), tile_pixels(tiles, spec.export.scale),
                bytes_per_pixel(spec))


def preview(plan: Plan, width: int = 60, height: int = 18) -> list[str]:
    """A small character map of the grid: '█' tiles that run, '·' cells of the bounding box
    outside the region. Each character covers a block of tiles when the grid is large."""
    rows, cols = plan.tiles.rows, plan.tiles.cols
    if len(rows) == 0:
        return []
    r0, c0 = int(rows.min()), int(cols.min())
    nrows, ncols = int(rows.max()) - r0 + 1, int(cols.max()) - c0 + 1
    # Terminal cells are about twice as tall as wide: one tile is two characters when it fits.
    cell_w = 2 if ncols * 2 <= width else 1
    block = max(1, -(-ncols * cell_w // width), -(-nrows // height))
    h, w = -(-nrows // block), -(-ncols // block)
    grid = np.zeros((h, w), dtype=bool)
    grid[(rows - r0) // block, (cols - c0) // block] = True
    return ["".join(("█" if v else "·") * cell_w for v in line) for line in grid]
