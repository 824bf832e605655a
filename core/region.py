"""Read a job's region: a bbox, or a GeoJSON / GeoPackage / Shapefile with its CRS honoured.
Everything comes back as one shapely geometry in EPSG:4326 (lon, lat)."""

from __future__ import annotations

import warnings
from pathlib import Path

import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError, ProjError
from shapely.errors import GEOSException
from shapely.geometry.base import BaseGeometry


class RegionError(ValueError):
    """The region cannot be used; the message says why."""


def from_bbox(west: float, south: float, east: float, north: float) -> BaseGeometry:
    return shapely.box(west, south, east, north)


def globe_problems(west: float, south: float, east: float, north: float) -> list[str]:
    """Why lon/lat bounds are not on the globe (NaN and inf included): a bbox and a region file
    are held to the same limits."""
    problems = []
    if not (-180 <= west <= 180 and -180 <= east <= 180):
        problems.append("west and east must be longitudes between -180 and 180")
    if not (-90 <= south <= 90 and -90 <= north <= 90):
        problems.append("south and north must be latitudes between -90 and 90")
    return problems


Bounds = tuple[float, float, float, float]
# A box wholly beyond this latitude, whose longitudes would be ordinary latitudes, is more often
# a (lat, lon) slip than a polar job: a mid-latitude place west of 60°W or east of 60°E typed
# latitude first lands there. Only a warning, as Arctic and Antarctic jobs exist.
POLAR = 60.0


def as_lat_lon(bounds: Bounds) -> Bounds:
    """The box meant by west, south, east, north typed in (lat, lon) order."""
    west, south, east, north = bounds
    return south, west, north, east


def box_text(bounds: Bounds) -> str:
    return "[" + ", ".join(f"{v:g}" for v in bounds) + "]"


def degrees(value: float, positive: str, negative: str, digits: int) -> str:
    """124.4°W for -124.4 with "E", "W": no minus sign to misread."""
    return f"{abs(value):.{digits}f}°{positive if value >= 0 else negative}"


def extent_text(bounds: tuple[float, float, float, float]) -> str:
    """"124.4°W–114.1°W, 32.5°N–42.0°N": enough decimals to tell the edges apart."""
    west, south, east, north = bounds
    span = min(east - west, north - south)
    digits = 1 if span >= 1 else 3 if span >= 0.01 else 5
    return (f"{degrees(west, 'E', 'W', digits)}–{degrees(east, 'E', 'W', digits)}, "
            f"{degrees(south, 'N', 'S', digits)}–{degrees(north, 'N', 'S', digits)}")


def swap_hint(bounds: Bounds) -> str:
    """For bounds off the globe: a hint naming the box they make when read as (lat, lon), if
    that box is on the globe; else ""."""
    meant = as_lat_lon(bounds)
    if globe_problems(*meant):
        return ""
    return f"; read as (lat, lon) it would be {box_text(meant)} (west, south, east, north)"


def polar_swap(bounds: Bounds) -> str | None:
    """Where valid bounds lie ("north of 60°N") when they are wholly polar but, read as
    (lat, lon), make a box between 60°S and 60°N; else None."""
    _, south, _, north = bounds
    meant = as_lat_lon(bounds)
    if not (meant[1] > -POLAR and meant[3] < POLAR):
        return None
    if south >= POLAR:
        return f"north of {POLAR:g}°N"
    if north <= -POLAR:
        return f"south of {POLAR:g}°S"
    return None


def read_region_file(path: Path, layer: str | None = None) -> BaseGeometry:
    """Union of every feature's geometry, reprojected to EPSG:4326."""
    import pyogrio.raw  # GDAL inside a wheel; imported here so planning a bbox job never loads it

    if not path.exists():
        raise RegionError(f"file {str(path)!r} does not exist")
    try:
        with warnings.catch_warnings():  # GDAL's warnings (an unclosed ring) become errors below
            warnings.simplefilter("ignore", RuntimeWarning)
            meta, _, wkb, _ = pyogrio.raw.read(path, layer=layer, read_geometry=True, columns=[])
    except Exception as exc:  # pyogrio raises DataSourceError, DataLayerError, ...
        raise RegionError(f"cannot read {str(path)!r}: {str(exc).strip()}") from None
    if wkb is None or len(wkb) == 0:
        raise RegionError(f"{str(path)!r} has no features")
    try:
        geoms = [g for g in shapely.from_wkb(wkb) if g is not None and not g.is_empty]
    except GEOSException as exc:  # e.g. a ring that does not close
        raise RegionError(f"invalid geometry in {str(path)!r}: {_geos_reason(exc)}") from None
    if not geoms:
        raise RegionError(f"{str(path)!r} has no non-empty geometry")
    invalid = [g for g in geoms if not g.is_valid]
    if invalid:
        reason = shapely.is_valid_reason(invalid[0])
        raise RegionError(f"invalid geometry in {str(path)!r}: {reason}")
    geometry = shapely.union_all(geoms)
    crs = meta.get("crs")
    if crs:
        try:
            source = CRS.from_user_input(crs)
            if not source.equals(CRS.from_epsg(4326), ignore_axis_order=True):
                geometry = reproject(geometry, source, CRS.from_epsg(4326))
        except (CRSError, ProjError) as exc:
            raise RegionError(f"cannot reproject {str(path)!r} from {crs}: {exc}") from None
    # Coordinates outside their CRS reproject to inf or land off the globe; a bbox there is
    # refused, so the file is too.
    problems = globe_problems(*geometry.bounds)
    if problems:
        bounds = ", ".join(f"{v:g}" for v in geometry.bounds)
        raise RegionError(f"{str(path)!r} reaches off the globe (bounds {bounds} in EPSG:4326): "
                          f"{'; '.join(problems)}; is its CRS right?"
                          f"{swap_hint(geometry.bounds)}")
    return geometry


def _geos_reason(exc: GEOSException) -> str:
    text = str(exc).strip()
    return text.partition(": ")[2] or text  # drop GEOS's "IllegalArgumentException: "


def reproject(geometry: BaseGeometry, source: CRS | str, target: CRS | str) -> BaseGeometry:
    transformer = Transformer.from_crs(source, target, always_xy=True)
    return shapely.transform(geometry, lambda xy: _apply(transformer, xy))


def _apply(transformer: Transformer, xy):  # type: ignore[no-untyped-def]
    import numpy as np

    x, y = transformer.transform(xy[:, 0], xy[:, 1])
    return np.column_stack([x, y])
