"""JobSpec -> units (tile x period [x batch]) with stable ids and size, time and Drive
estimates, and the warnings of a job that is valid but likely a mistake."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from core.batches import Slice, slices
from core.emulator.config import EmulatorConfig
from core.grid import Tiles, make_tiles, pixel_size, tile_pixels
from core.periods import Period, periods, unit_id
from core.recipes import RECIPES, bytes_per_pixel
from core.spec import MAX_TILE_DEGREES, MAX_TILE_METRES, JobSpec

# EE's batch queue as the project models it (the emulator's defaults, core/emulator/config.py):
# 2 tasks running at once, a new project's default (Google's quota page: about 2 on average);
# each task takes a fixed start-up time plus its pixel-bands at a fixed rate. Real run times
# vary with the recipe and EE's load: the estimate is an order of magnitude.
BATCH_MODEL = EmulatorConfig()
# Tiles under this many pixels a side spend far longer starting than computing (256² pixels of
# 3 bands are 0.1 s of work against 20 s of start-up); the suggested grid.size aims at
# GOOD_TILE_SIDE, within the 1,000-4,000 pixels a side that export well.
SMALL_TILE_SIDE = 256
# Fewer tasks than this finish soon whatever their size: small tiles then cost little (the
# demo's 97 tiles of 75 pixels run in a minute), and a warning would only be noise.
MANY_TASKS = 1000
GOOD_TILE_SIDE = 2048


@dataclass
class Plan:
    spec: JobSpec
    tiles: Tiles
    tile_ids: list[str]
    periods: list[Period]
    tile_pixels: np.ndarray  # per tile, at the export scale
    bytes_per_pixel: int  # all bands together
    # What each tile is exported for: every period, or every batch of every period
    slices: list[Slice]

    @property
    def units(self) -> int:
        return len(self.tiles) * len(self.slices)

    @property
    def batches(self) -> list[int]:
        """How many batches each period has ([] without [batches])."""
        if self.spec.batches is None:
            return []
        counts: dict[str, int] = {}
        for s in self.slices:
            counts[s.period.id] = counts.get(s.period.id, 0) + 1
        return list(counts.values())

    @property
    def pixels(self) -> int:
        return int(self.tile_pixels.sum()) * len(self.slices)

    @property
    def est_bytes(self) -> int:
        return self.pixels * self.bytes_per_pixel

    @property
    def bands(self) -> int:
        return len(RECIPES[self.spec.recipe.name].bands(self.spec.recipe.params))

    @property
    def slots(self) -> int:
        """EE tasks running at once: the project's slots, or fewer when max_tasks says so."""
        return min(BATCH_MODEL.slots, self.spec.limits.max_tasks)

    @property
    def ee_seconds(self) -> float:
        """Estimated EE time of the whole job at `slots` tasks at a time (BATCH_MODEL)."""
        task = BATCH_MODEL.task_overhead_seconds
        total = self.units * task + self.pixels * self.bands / BATCH_MODEL.pixel_rate
        longest = task + float(self.tile_pixels.max()) * self.bands / BATCH_MODEL.pixel_rate
        return max(total / self.slots, longest)

    @property
    def drive_peak(self) -> int:
        """The most Drive space the job holds at once: the max_tasks largest exports waiting
        for download together, never more than the budget (admission keeps it below)."""
        k = self.spec.limits.max_tasks
        largest = np.sort(self.tile_pixels)[::-1][:k]  # each tile is a unit in every slice
        in_flight = float(np.repeat(largest, len(self.slices))[:k].sum()) * self.bytes_per_pixel
        return int(min(self.spec.limits.drive_budget, in_flight))

    def unit_rows(self):  # type: ignore[no-untyped-def]
        """(id, tile, row, col, period, start, end, west, south, east, north, pixels, bytes,
        batch) for every unit, in a stable order: by period, batch, then tile (`layout`)."""
        for period, start, end, batch, rows in self.slice_rows():
            for uid, tile, row, col, w, s, e, n, px, size in rows:
                yield (uid, tile, row, col, period, start, end, w, s, e, n, px, size, batch)

    def slice_rows(self):  # type: ignore[no-untyped-def]
        """unit_rows a slice at a time: (period, start, end, batch, rows), each row (id,
        tile, row, col, west, south, east, north, pixels, bytes), what differs between the
        units of a slice (the store writes the rest once: a million units' `new` in half
        the time)."""
        # Python numbers made once per tile, not a NumPy scalar read per unit: a million
        # units took 5.7 s here, most of `eebatch new`.
        tiles = list(zip(self.tile_ids, self.tiles.rows.tolist(), self.tiles.cols.tolist(),
                         *self.tiles.bounds().T.tolist(),
                         [int(px) for px in self.tile_pixels], strict=True))
        bpp = self.bytes_per_pixel
        for piece in self.slices:
            period, batch = piece.period, piece.batch
            start = piece.start.isoformat() if piece.start else None
            end = piece.end.isoformat() if piece.end else None
            # unit_id(tile, period, batch) is the tile id and this suffix
            suffix = unit_id("", period, batch)
            yield (period.id, start, end, batch,
                   ((tile + suffix, tile, row, col, w, s, e, n, px, px * bpp)
                    for tile, row, col, w, s, e, n, px in tiles))

    def layout(self) -> tuple[np.ndarray, np.ndarray, list[tuple[str, int | None]]]:
        """Where unit_rows' units sit, in its order: the tiles' rows and columns, and each
        slice's (period, batch); unit k is tile k % tiles of slice k // tiles."""
        return (self.tiles.rows, self.tiles.cols,
                [(piece.period.id, piece.batch) for piece in self.slices])


def plan_warnings(plan: Plan) -> list[str]:
    """"warning: key: message" lines for a valid job that is likely a mistake."""
    found = list(plan.spec.warnings)
    small = small_tiles(plan)
    if small:
        found.append(small)
    return [f"warning: {w}" for w in found]


def small_tiles(plan: Plan) -> str | None:
    """grid.size's warning when a job of MANY_TASKS or more has typical tiles under
    SMALL_TILE_SIDE pixels a side and a grid of GOOD_TILE_SIDE pixel tiles gives fewer tasks."""
    spec = plan.spec
    side = math.sqrt(float(np.median(plan.tile_pixels)))
    if side >= SMALL_TILE_SIDE or plan.units < MANY_TASKS:
        return None
    limit = MAX_TILE_DEGREES if plan.tiles.frame.geographic else MAX_TILE_METRES
    size = min(float(f"{GOOD_TILE_SIDE * pixel_size(spec):.2g}"), limit)
    better = dataclasses.replace(spec, grid=dataclasses.replace(spec.grid, size=size))
    tasks = len(make_tiles(better)) * len(plan.slices)
    if tasks >= plan.units:
        return None  # the region is no bigger than a good tile: nothing to gain
    good = round(size / pixel_size(spec))
    return (f"grid.size: tiles of about {side:.0f}×{side:.0f} pixels at {spec.export.scale:g} m "
            f"make {plan.units:,} tasks that spend most of their time starting; grid.size = "
            f"{size:g} makes tiles of about {good:,} pixels a side and {tasks:,} tasks")


def make_plan(spec: JobSpec) -> Plan:
    tiles = make_tiles(spec)
    steps = periods(spec.time)
    return Plan(spec, tiles, tiles.ids(), steps, tile_pixels(tiles, spec.export.scale),
                bytes_per_pixel(spec), slices(steps, spec.batches))


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
