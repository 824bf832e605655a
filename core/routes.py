"""Which way a unit's result comes back from EE, and the direct route's arithmetic.

batch:  an export task (one of EE's few batch slots), its files through Drive (downloads.py).
direct: computed interactively, no slot and no Drive: an image unit by computePixels on the
        unit's exact grid (the batch export's grid: the same pixels), cut into requests under
        EE's per-request limits; a table unit by computeFeatures (core/engine/direct.py).
auto:   direct for the units that fit its limits (below), batch for the rest; a direct unit
        EE cannot compute interactively (memory, the 5-minute limit) moves to batch.

One room for these rules: the job file's check (spec.py), `new` (the route each unit starts
on), the plan's text and the worker read them here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.spec import ExportSpec, JobSpec, RecipeSpec

BATCH, DIRECT, AUTO = "batch", "direct", "auto"
ROUTES = (BATCH, DIRECT, AUTO)  # what export.route may say
UNIT_ROUTES = (BATCH, DIRECT)  # what a unit is on

# EE's computePixels limits (field.md): 48 MB of uncompressed pixels, 32,768 pixels a side.
MAX_REQUEST_BYTES = 48 * 1024 * 1024
MAX_REQUEST_SIDE = 32_768
# Requests are cut to a third of the byte limit (16 MB): each is held in memory until it is
# written, and 32 in flight then need at most half a GB; how EE counts a request's bytes (its
# data type, padding) is not documented either, and a refused request costs a round trip.
REQUEST_SHARE = 1 / 3
CHUNK_STEP = 256  # chunk sides are multiples of it, as EE's own shards are
# auto sends a unit direct when it needs at most this many requests (a 100-request unit is
# ~1.6 GB of pixels: 40 at a time, a few minutes); bigger ones are batch work.
AUTO_MAX_REQUESTS = 100
# EE's limit on interactive requests in flight per project (field.md: 40 on either endpoint).
MAX_DIRECT_REQUESTS = 40
DEGREE_METRES = 111_319.49  # EE's metres per degree for a scale in a geographic CRS


def direct_refusal_of(export: ExportSpec, recipe: RecipeSpec | None) -> str | None:
    """Why a job with this export and recipe cannot take the direct route at all (None: it
    can). auto then sends every unit batch; route = "direct" is refused with this reason."""
    from core.recipes.catalog import RECIPES

    if export.destination != "drive":
        return (f"it writes files into output_dir, and destination {export.destination!r} "
                "needs an export")
    if recipe is None:
        return None
    kind = RECIPES[recipe.name].output(recipe.params)
    fmt = export.file_format.upper()
    if kind == "image" and fmt != "GEOTIFF":
        return f"it writes GeoTIFF images, not {export.file_format}"
    if kind == "table" and fmt not in ("GEOTIFF", "CSV"):  # GeoTIFF: a table's default, CSV
        return f"it writes CSV tables, not {export.file_format}"
    return None


def direct_refusal(spec: JobSpec) -> str | None:
    return direct_refusal_of(spec.export, spec.recipe)


def chunk_side(spec: JobSpec) -> int:
    """The side of the square requests a direct image unit is cut into."""
    from core.recipes import bytes_per_pixel

    assert spec.recipe is not None
    per_pixel = max(bytes_per_pixel(spec), 1)
    side = math.isqrt(int(MAX_REQUEST_BYTES * REQUEST_SHARE) // per_pixel)
    return max(CHUNK_STEP, min(MAX_REQUEST_SIDE, side // CHUNK_STEP * CHUNK_STEP))


def auto_max_pixels(spec: JobSpec) -> int:
    """The most pixels of a unit auto sends direct."""
    return chunk_side(spec) ** 2 * AUTO_MAX_REQUESTS


def direct_seconds(pixel_bands: int, requests: int, at_once: int) -> float:
    """The direct route's time for this work by the emulator's model (its config.py says
    where the rates come from: Google publishes none)."""
    from core.emulator.config import EmulatorConfig

    model = EmulatorConfig()
    busy = requests * model.direct_latency_seconds + pixel_bands / model.direct_pixel_rate
    return busy / max(1, min(at_once, requests))


def starting_route(spec: JobSpec) -> tuple[str, int | None]:
    """(route of every unit, or for auto: DIRECT for units of at most the returned pixels and
    BATCH for the rest). A table unit's size is its rows, which no estimate knows: auto sends
    every table unit direct, and one EE cannot answer in time goes batch."""
    from core.recipes.catalog import RECIPES

    route = spec.export.route
    if route == BATCH or direct_refusal(spec) is not None:
        return BATCH, None
    if route == DIRECT:
        return DIRECT, None
    assert spec.recipe is not None
    if RECIPES[spec.recipe.name].output(spec.recipe.params) == "table":
        return DIRECT, None
    return AUTO, auto_max_pixels(spec)


@dataclass(frozen=True)
class PixelGrid:
    """A unit's pixels as EE lays out its batch export: `crs`, the affine `transform`
    [xScale, xShear, xTranslate, yShear, yScale, yTranslate] (yScale < 0: north up), and
    `width` x `height` pixels."""

    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int

    def window(self, row: int, col: int, height: int, width: int) -> PixelGrid:
        a, b, c, d, e, f = self.transform
        return PixelGrid(self.crs, (a, b, c + col * a, d, e, f + row * e), width, height)


def unit_grid(spec: JobSpec, bounds: tuple[float, float, float, float]) -> PixelGrid:
    """The grid of a unit's batch export (region = the tile, scale and crs of the job): the
    tile's box in the export CRS, snapped outward onto the lattice of `scale` anchored at the
    CRS origin (in a geographic CRS, scale / 111,319.49 degrees), as EE lays out an export
    given region and scale. The direct route asks for exactly this grid, so both routes give
    the same pixels."""
    from pyproj import CRS, Transformer

    export = spec.export
    target = CRS.from_user_input(export.crs)
    source = CRS.from_user_input(spec.grid.crs)
    x0, y0, x1, y1 = bounds
    if source != target:
        x0, y0, x1, y1 = Transformer.from_crs(source, target, always_xy=True).transform_bounds(
            x0, y0, x1, y1, densify_pts=21)
    step = export.scale / DEGREE_METRES if target.is_geographic else export.scale
    eps = 1e-9  # a box already on the lattice stays put
    c0, c1 = math.floor(x0 / step + eps), math.ceil(x1 / step - eps)
    r0, r1 = math.floor(-y1 / step + eps), math.ceil(-y0 / step - eps)
    return PixelGrid(export.crs, (step, 0.0, c0 * step, 0.0, -step, -r0 * step),
                     max(c1 - c0, 1), max(r1 - r0, 1))


@dataclass(frozen=True)
class Chunk:
    """One computePixels request of a unit: a window of its grid, and the file it becomes."""

    row: int  # pixel offsets in the unit's grid
    col: int
    grid: PixelGrid | None  # None: a table (one request, computeFeatures)
    title: str


def chunks(grid: PixelGrid, side: int, prefix: str) -> list[Chunk]:
    """The unit's requests, row by row. One request: PREFIX.tif; more: EE's own shard names,
    PREFIX-RRRRRRRRRR-CCCCCCCCCC.tif (10-digit pixel offsets), which assembly reads alike."""
    if grid.width <= side and grid.height <= side:
        return [Chunk(0, 0, grid, f"{prefix}.tif")]
    return [Chunk(r, c, grid.window(r, c, min(side, grid.height - r), min(side, grid.width - c)),
                  f"{prefix}-{r:010d}-{c:010d}.tif")
            for r in range(0, grid.height, side) for c in range(0, grid.width, side)]
