"""Region -> tiles on a regular grid with stable row/column ids; quadtree split of a tile.

The grid is anchored at a fixed origin: (-180, 90) on a geographic CRS, (-20,000 km, 20,000 km)
on a projected one (so rows and columns are positive). A tile's row and column, and so its id,
depend only on where it is, never on the region's extent or the order tiles were made in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import shapely
from pyproj import CRS
from pyproj.exceptions import ProjError
from shapely.geometry.base import BaseGeometry

from core.region import Bounds, reproject

if TYPE_CHECKING:
    from core.spec import JobSpec

METRES_PER_DEGREE = 111_319.49  # at the equator; EE uses the same figure for degree scales
PROJECTED_ORIGIN = (-20_000_000.0, 20_000_000.0)
MAX_CANDIDATES = 20_000_000  # bounding-box cells examined before giving up
CHUNK = 250_000  # candidate boxes built at once, so memory stays small whatever the grid
MAX_INDEX = 2**53  # rows and columns stay exact in a float and fit numpy's int64


class GridError(ValueError):
    """The grid cannot tile the region; `key` is the job file key to blame."""

    def __init__(self, message: str, key: str = "grid.size") -> None:
        super().__init__(message)
        self.key = key


class TooManyTiles(GridError):
    """More tiles than the caller's limit; `at_least` is a lower bound of how many."""

    def __init__(self, at_least: float) -> None:
        super().__init__(f"at least {at_least:,.0f} tiles")
        self.at_least = at_least


@dataclass(frozen=True)
class Frame:
    """The grid in its CRS: tile size, origin, and the region reprojected into it."""

    crs: str
    geographic: bool
    size: float
    origin_x: float
    origin_y: float
    region: BaseGeometry


@dataclass(frozen=True)
class Tiles:
    """Tiles that meet the region, as parallel arrays (fast for 100,000s of tiles)."""

    frame: Frame
    rows: np.ndarray
    cols: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def bounds(self) -> np.ndarray:
        """(n, 4) array of west, south, east, north in the grid CRS."""
        f = self.frame
        west = f.origin_x + self.cols * f.size
        north = f.origin_y - self.rows * f.size
        return np.column_stack([west, north - f.size, west + f.size, north])

    def ids(self) -> list[str]:
        # tile_id's format over Python ints made at once: a NumPy scalar per tile took 1.7 s
        # of a million tiles' `eebatch new`.
        return [f"r{r}c{c}" for r, c in zip(self.rows.tolist(), self.cols.tolist(), strict=True)]


def tile_id(row: int, col: int) -> str:
    return f"r{row}c{col}"


def child_id(parent: str, quadrant: int) -> str:
    """Quadrants 0..3 = north-west, north-east, south-west, south-east."""
    return f"{parent}.{quadrant}"


def split_bounds(bounds: Bounds, pixel: float | None = None) -> list[Bounds]:
    """Four quadrants in child_id order. With `pixel` (an aligned grid's pixel size), the cut
    falls on the pixel lattice, so the quarters of a tile an odd number of pixels wide still
    mosaic without a half-pixel overlap."""
    w, s, e, n = bounds
    mx, my = _cut(w, e, pixel), _cut(s, n, pixel)
    return [(w, my, mx, n), (mx, my, e, n), (w, s, mx, my), (mx, s, e, my)]


def _cut(low: float, high: float, pixel: float | None) -> float:
    middle = (low + high) / 2
    if pixel is None:
        return middle
    snapped = round(middle / pixel) * pixel
    if not low < snapped < high:  # a tile one pixel wide: no lattice line inside it
        return middle
    return snapped


def pixel_size(spec: JobSpec) -> float:
    """One export pixel in grid units (degrees for a geographic grid)."""
    scale = spec.export.scale
    return scale / METRES_PER_DEGREE if CRS.from_user_input(spec.grid.crs).is_geographic else scale


def frame(spec: JobSpec) -> Frame:
    crs = CRS.from_user_input(spec.grid.crs)
    geographic = bool(crs.is_geographic)
    region = spec.region
    if not crs.equals(CRS.from_epsg(4326), ignore_axis_order=True):
        try:
            region = reproject(region, CRS.from_epsg(4326), crs)
        except ProjError as exc:
            raise GridError(f"cannot reproject the region to {spec.grid.crs}: {exc}",
                            "grid.crs") from None
    if not all(math.isfinite(v) for v in region.bounds):
        raise GridError(f"the region reaches where {spec.grid.crs} is undefined; use a CRS "
                        "that covers the whole region", "grid.crs")
    ox, oy = spec.grid.origin or ((-180.0, 90.0) if geographic else PROJECTED_ORIGIN)
    size = spec.grid.size
    if spec.grid.align:
        # Whole pixels per tile and an origin on the pixel lattice: tiles mosaic without seams.
        px = pixel_size(spec)
        size = max(1, round(size / px)) * px
        ox, oy = math.floor(ox / px) * px, math.ceil(oy / px) * px
    return Frame(spec.grid.crs, geographic, size, ox, oy, region)


def _cell_range(f: Frame) -> tuple[int, int, int, int]:
    """Rows r0..r1 and columns c0..c1 (ends exclusive) of the region's bounding box."""
    minx, miny, maxx, maxy = f.region.bounds
    # The 1e-9 nudges keep a region edge lying exactly on a grid line from adding a tile.
    c0 = math.floor((minx - f.origin_x) / f.size + 1e-9)
    c1 = math.ceil((maxx - f.origin_x) / f.size - 1e-9)
    r0 = math.floor((f.origin_y - maxy) / f.size + 1e-9)
    r1 = math.ceil((f.origin_y - miny) / f.size - 1e-9)
    if max(abs(c0), abs(c1), abs(r0), abs(r1)) > MAX_INDEX:
        raise GridError(f"the region lies more than {MAX_INDEX:.1e} tiles from the grid's "
                        "origin; use larger tiles or an origin nearer the region")
    return r0, max(r1, r0), c0, max(c1, c0)


def make_tiles(spec: JobSpec, limit: int | None = None) -> Tiles:
    """Every tile whose area meets the region's own area (not merely its bounding box).
    With a limit, raise TooManyTiles as soon as there are more tiles than that: before any
    tile is built when the region's area alone proves it, else while they are built."""
    f = frame(spec)
    if limit is not None:
        # The tiles that meet the region cover it, so there are at least area / tile area.
        # (Divided twice: size**2 underflows to 0 for a tiny size and overflows for a huge one.)
        at_least = f.region.area / f.size / f.size
        if at_least > limit:
            raise TooManyTiles(at_least)
    r0, r1, c0, c1 = _cell_range(f)
    ncols, total = c1 - c0, (r1 - r0) * (c1 - c0)
    if total > MAX_CANDIDATES:
        raise GridError(f"{total:,} grid cells cover the region's bounding box; use larger tiles")
    if shapely.equals(f.region, shapely.box(*f.region.bounds)):
        # A rectangle shares area with every cell of its bounding range: no shapely box per
        # cell (a million tiles: 2-4 s of `eebatch new`, and of every reopen, which checks
        # the job file again).
        if limit is not None and total > limit:
            raise TooManyTiles(total)
        cell = np.arange(total, dtype=np.int64)
        return Tiles(f, r0 + cell // max(ncols, 1), c0 + cell % max(ncols, 1))
    shapely.prepare(f.region)
    rows_kept: list[np.ndarray] = []
    cols_kept: list[np.ndarray] = []
    kept = 0
    for start in range(0, total, CHUNK):  # row-major, as tile order is
        cell = np.arange(start, min(start + CHUNK, total), dtype=np.int64)
        rows, cols = r0 + cell // ncols, c0 + cell % ncols
        west = f.origin_x + cols * f.size
        north = f.origin_y - rows * f.size
        boxes = shapely.box(west, north - f.size, west + f.size, north)
        keep = shapely.intersects(f.region, boxes)
        # Touching along an edge or at a corner shares no area: not a tile of this region.
        touching = shapely.touches(f.region, boxes[keep])
        idx = np.flatnonzero(keep)[~touching]
        rows_kept.append(rows[idx])
        cols_kept.append(cols[idx])
        kept += len(idx)
        if limit is not None and kept > limit:
            raise TooManyTiles(kept)
    empty = np.zeros(0, dtype=np.int64)
    return Tiles(f, np.concatenate(rows_kept) if rows_kept else empty,
                 np.concatenate(cols_kept) if cols_kept else empty)


def area_m2(f: Frame, bounds: np.ndarray) -> np.ndarray:
    """Approximate ground area of each tile (for pixel estimates)."""
    w, s, e, n = bounds.T
    if not f.geographic:
        return (e - w) * (n - s)
    lat = np.radians((s + n) / 2)
    return (e - w) * METRES_PER_DEGREE * np.cos(lat) * (n - s) * 110_574.0


def tile_pixels(tiles: Tiles, scale: float) -> np.ndarray:
    """Pixels of each tile at the export scale (float: a job file can ask for absurd counts)."""
    return np.ceil(area_m2(tiles.frame, tiles.bounds()) / scale**2)
