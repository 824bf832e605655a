"""Local vector files for the table and classify recipes: a GeoJSON, GeoPackage or Shapefile read
into features (a shapely geometry in EPSG:4326 and its properties), then split by the grid so
each unit sends EE only what falls in its tile.

Read at validate time (the plan reports a bad file) and again by each unit's build: the file is
read once per process and kept while its size and modification time stay the same.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError, ProjError
from shapely.errors import GEOSException
from shapely.geometry.base import BaseGeometry

WGS84 = "EPSG:4326"
# Properties every row of a table recipe gets from its unit; a file's own column of the same
# name would be overwritten, so it is refused.
UNIT_COLUMNS = ("tile", "start", "end")
MAX_INLINE = 20_000  # features sent inline in one request (EE refuses requests over ~10 MB)
DIGITS = 9  # decimals of a degree kept in what is sent to EE: 0.1 mm


class VectorError(ValueError):
    """The file cannot be used; the message says why."""


@dataclass(frozen=True)
class Features:
    """A vector file's features: geometries in EPSG:4326, each with its properties."""

    source: str  # the path as the job file wrote it, for messages
    columns: tuple[str, ...]
    geometries: tuple[BaseGeometry, ...]
    properties: tuple[dict[str, Any], ...]
    # per grid CRS: the geometries in it, and a search tree over them (every unit of a job
    # asks again; building them once keeps a job of many tiles and zones quick)
    _in_grid: dict[str, tuple[list[BaseGeometry], shapely.STRtree]] = field(
        default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.geometries)

    def in_grid(self, crs: str) -> tuple[list[BaseGeometry], shapely.STRtree]:
        if crs not in self._in_grid:
            geometries = [to_grid(g, crs) for g in self.geometries]
            self._in_grid[crs] = (geometries, shapely.STRtree(geometries))
        return self._in_grid[crs]


def resolve(job_dir: Path | None, value: str) -> Path | None:
    """A path the job file gives, relative to the job file's folder; None when it is relative
    and that folder is not known (then it cannot be checked yet)."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    return None if job_dir is None else job_dir / path


def read_features(path: Path, source: str, layer: str = "") -> Features:
    """The file's features; VectorError when it is missing, unreadable, empty or invalid."""
    try:
        stat = path.stat()
    except OSError:
        raise VectorError(f"file {source!r} does not exist ({path})") from None
    return _read(str(path.resolve()), stat.st_mtime_ns, stat.st_size, layer, source)


@lru_cache(maxsize=16)
def _read(path: str, mtime_ns: int, size: int, layer: str, source: str) -> Features:
    import pyogrio.raw  # GDAL inside a wheel; only jobs with a vector file load it

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            meta, _, wkb, fields = pyogrio.raw.read(path, layer=layer or None,
                                                    read_geometry=True)
    except Exception as exc:  # pyogrio raises DataSourceError, DataLayerError, ...
        raise VectorError(f"cannot read {source!r}: {str(exc).strip()}") from None
    if wkb is None or len(wkb) == 0:
        raise VectorError(f"{source!r} has no features")
    try:
        geometries = list(shapely.from_wkb(wkb))
    except GEOSException as exc:
        raise VectorError(f"invalid geometry in {source!r}: {exc}") from None
    for i, geometry in enumerate(geometries):
        if geometry is None or geometry.is_empty:
            raise VectorError(f"{source!r}: feature {i + 1} has no geometry")
    crs = meta.get("crs")
    if crs:
        try:
            source_crs = CRS.from_user_input(crs)
            if not source_crs.equals(CRS.from_epsg(4326), ignore_axis_order=True):
                transformer = Transformer.from_crs(source_crs, WGS84, always_xy=True)
                geometries = [_transform(g, transformer) for g in geometries]
        except (CRSError, ProjError) as exc:
            raise VectorError(f"cannot reproject {source!r} from {crs}: {exc}") from None
    west, south, east, north = shapely.total_bounds(geometries)
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        raise VectorError(f"{source!r} reaches off the globe (bounds {west:g}, {south:g}, "
                          f"{east:g}, {north:g} in EPSG:4326); is its CRS right?")
    columns = tuple(str(name) for name in meta["fields"])
    rows = tuple({name: _plain(values[i]) for name, values in zip(columns, fields, strict=True)}
                 for i in range(len(geometries)))
    return Features(source, columns, tuple(geometries), rows)


def _plain(value: Any) -> Any:
    """A field's value as JSON takes it (EE's properties): numbers, text, booleans or None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (dt.date, dt.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _transform(geometry: BaseGeometry, transformer: Transformer) -> BaseGeometry:
    def apply(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geometry, apply)


@lru_cache(maxsize=8)
def _transformer(source: str, target: str) -> Transformer:
    return Transformer.from_crs(source, target, always_xy=True)


def _same(crs: str) -> bool:
    return crs.upper() in (WGS84, "EPSG:4326", "WGS84", "OGC:CRS84")


def to_grid(geometry: BaseGeometry, crs: str) -> BaseGeometry:
    return geometry if _same(crs) else _transform(geometry, _transformer(WGS84, crs))


def to_wgs84(geometry: BaseGeometry, crs: str) -> BaseGeometry:
    return geometry if _same(crs) else _transform(geometry, _transformer(crs, WGS84))


def points_in_tile(features: Features, bounds: tuple[float, float, float, float],
                   crs: str) -> list[int]:
    """Indices of the points that fall in the tile, its bounds half-open: a point on a tile's
    west or south edge is that tile's, one on its east or north edge the neighbour's, so every
    point inside the grid belongs to exactly one tile."""
    west, south, east, north = bounds
    points, tree = features.in_grid(crs)
    found = []
    for i in sorted(int(i) for i in tree.query(shapely.box(*bounds))):
        x, y = points[i].x, points[i].y
        if west <= x < east and south <= y < north:
            found.append(i)
    return found


def zone_parts(features: Features, bounds: tuple[float, float, float, float],
               crs: str) -> list[tuple[int, BaseGeometry]]:
    """(zone index, the zone's part in the tile, in EPSG:4326) for each zone that shares area
    with the tile. A zone in two tiles gives a part in each; the parts do not overlap."""
    tile = shapely.box(*bounds)
    zones, tree = features.in_grid(crs)
    parts = []
    for i in sorted(int(i) for i in tree.query(tile, predicate="intersects")):
        part = _polygonal(zones[i].intersection(tile))
        if part is not None:
            parts.append((i, to_wgs84(part, crs)))
    return parts


def region_part(region: BaseGeometry, bounds: tuple[float, float, float, float],
                crs: str) -> BaseGeometry | None:
    """The part of the job's region (EPSG:4326) within the tile (`bounds` in the grid CRS
    `crs`), in EPSG:4326; None when they share no area."""
    part = _polygonal(to_grid(region, crs).intersection(shapely.box(*bounds)))
    return None if part is None else to_wgs84(part, crs)


def _polygonal(geometry: BaseGeometry) -> BaseGeometry | None:
    """The areas of an intersection (a zone touching a tile's edge leaves a line there)."""
    polygons = [g for g in shapely.get_parts(geometry)
                if g.geom_type == "Polygon" and g.area > 0]
    if not polygons:
        return None
    return polygons[0] if len(polygons) == 1 else shapely.MultiPolygon(polygons)


def geojson(geometry: BaseGeometry) -> dict[str, Any]:
    """The geometry as GeoJSON; a shape's coordinates rounded to DIGITS decimals of a degree
    (a point's are the file's own, so EE gets the point the tile was chosen by)."""
    if geometry.geom_type not in ("Point", "MultiPoint"):
        geometry = shapely.transform(geometry, lambda xy: np.round(xy, DIGITS))
    return shapely.geometry.mapping(geometry)  # type: ignore[no-any-return]


def ee_collection(items: list[tuple[BaseGeometry, dict[str, Any]]]) -> Any:
    """An ee.FeatureCollection of (EPSG:4326 geometry, properties), planar (geodesic=False) as
    the tiles are. Import ee only when building."""
    import ee

    def planar(geometry: BaseGeometry) -> Any:
        if geometry.geom_type in ("Point", "MultiPoint"):  # no edges (and no geodesic arg)
            return ee.Geometry(geojson(geometry))
        return ee.Geometry(geojson(geometry), None, False)

    return ee.FeatureCollection([ee.Feature(planar(geometry), properties)
                                 for geometry, properties in items])


def check_kinds(features: Features, kinds: tuple[str, ...], what: str) -> str | None:
    """A problem when a feature's geometry is not one of `kinds` (e.g. zones that are points)."""
    for i, geometry in enumerate(features.geometries):
        if geometry.geom_type not in kinds:
            return (f"{features.source!r}: feature {i + 1} is a {geometry.geom_type}; {what} "
                    f"must be {' or '.join(kinds)}")
    return None


def check_columns(source: str, columns: list[str], taken: list[str]) -> str | None:
    """A problem when a column the recipe keeps has a name the recipe writes itself."""
    clash = [c for c in columns if c in taken]
    if clash:
        return (f"{source!r} has a column {clash[0]!r}, a name the recipe writes in each row "
                f"({', '.join(taken)}); rename that column")
    return None


def grid_crs(geometry: Any) -> str:
    """The grid CRS of a unit's tile, as core.recipes.build.tile_geometry built it: an
    ee.Geometry.Rectangle with `proj` (a client-side ComputedObject, its arguments readable
    without asking EE). UnitWork does not carry the CRS itself."""
    proj = getattr(geometry, "args", {}).get("crs")
    crs = getattr(proj, "args", {}).get("crs") if proj is not None else None
    return crs if isinstance(crs, str) else WGS84


def unit_properties(unit: Any) -> dict[str, str]:
    """What each row of a unit's table says of the unit: its tile and its period ("" for the
    start and end of a job without [time])."""
    return {"tile": unit.id.split("_")[0], "start": unit.start or "", "end": unit.end or ""}
