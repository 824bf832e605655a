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
from shapely.geometry.base import BaseGeometry

from core.region import reproject

if TYPE_CHECKING:
    from core.spec import JobSpec

METRES_PER_DEGREE = 111_319.49  # at the equator; EE uses the same figure for degree scales
PROJECTED_ORIGIN = (-20_000_000.0, 20_000_000.0)
MAX_CANDIDATES = 20_000_000  # bounding-box cells examined before giving up


class GridError(ValueError):
    pass


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
        return [tile_id(int(r), int(c)) for r, c in zip(self.rows, self.cols, strict=True)]


def tile_id(row: int, col: int) -> str:
    return f"r{row}c{col}"


def child_id(parent: str, quadrant: int) -> str:
    """Quadrants 0..3 = north-west, north-east, south-west, south-east."""
    return f"{parent}.{quadrant}"


Bounds = tuple[float, float, float, float]


def split_bounds(bounds: Bounds) -> list[Bounds]:
    """Four quadrants in child_id order."""
    w, s, e, n = bounds
    mx, my = (w + e) / 2, (s + n) / 2
    return [(w, my, mx, n), (mx, my, e, n), (w, s, mx, my), (mx, s, e, my)]


def pixel_size(spec: JobSpec) -> float:
    """One export pixel in grid units (degrees for a geographic grid)."""
    scale = spec.export.scale
    return scale / METRES_PER_DEGREE if CRS.from_user_input(spec.grid.crs).is_geographic else scale


def frame(spec: JobSpec) -> Frame:
    crs = CRS.from_user_input(spec.grid.crs)
    geographic = bool(crs.is_geographic)
    region = spec.region
    if not crs.equals(CRS.from_epsg(4326), ignore_axis_order=True):
        region = reproject(region, CRS.from_epsg(4326), crs)
    ox, oy = spec.grid.origin or ((-180.0, 90.0) if geographic else PROJECTED_ORIGIN)
    size = spec.grid.size
    if spec.grid.align:
        # Whole pixels per tile and an origin on the pixel lattice: tiles mosaic without seams.
        px = pixel_size(spec)
        size = max(1, round(size / px)) * px
        ox, oy = math.floor(ox / px) * px, math.ceil(oy / px) * px
    return Frame(spec.grid.crs, geographic, size, ox, oy, region)


def _candidates(f: Frame) -> tuple[np.ndarray, np.ndarray]:
    minx, miny, maxx, maxy = f.region.bounds
    # The 1e-9 nudges keep a region edge lying exactly on a grid line from adding a tile.
    c0 = math.floor((minx - f.origin_x) / f.size + 1e-9)
    c1 = math.ceil((maxx - f.origin_x) / f.size - 1e-9)
    r0 = math.floor((f.origin_y - maxy) / f.size + 1e-9)
    r1 = math.ceil((f.origin_y - miny) / f.size - 1e-9)
    ncols, nrows = max(c1 - c0, 0), max(r1 - r0, 0)
    if ncols * nrows > MAX_CANDIDATES:
        raise GridError(f"{ncols * nrows:,} grid cells cover the region's bounding box; "
                        "use larger tiles")
    rows, cols = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
    return rows.ravel(), cols.ravel()


def make_tiles(spec: JobSpec) -> Tiles:
    """Every tile whose area meets the region's own area (not merely its bounding box)."""
    f = frame(spec)
    rows, cols = _candidates(f)
    if len(rows) == 0:
        return Tiles(f, rows, cols)
    west = f.origin_x + cols * f.size
    north = f.origin_y - rows * f.size
    boxes = shapely.box(west, north - f.size, west + f.size, north)
    shapely.prepare(f.region)
    keep = shapely.intersects(f.region, boxes)
    # Touching along an edge or at a corner shares no area: not a tile of this region.
    touching = shapely.touches(f.region, boxes[keep])
    idx = np.flatnonzero(keep)[~touching]
    return Tiles(f, rows[idx], cols[idx])


def area_m2(f: Frame, bounds: np.ndarray) -> np.ndarray:
    """Approximate ground area of each tile (for pixel estimates)."""
    w, s, e, n = bounds.T
    if not f.geographic:
        return (e - w) * (n - s)
    lat = np.radians((s + n) / 2)
    return (e - w) * METRES_PER_DEGREE * np.cos(lat) * (n - s) * 110_574.0
