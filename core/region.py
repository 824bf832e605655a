"""Read a job's region: a bbox, or a GeoJSON / GeoPackage / Shapefile with its CRS honoured.
Everything comes back as one shapely geometry in EPSG:4326 (lon, lat)."""

from __future__ import annotations

from pathlib import Path

import shapely
from pyproj import CRS, Transformer
from shapely.geometry.base import BaseGeometry


class RegionError(ValueError):
    """The region cannot be used; the message says why."""


def from_bbox(west: float, south: float, east: float, north: float) -> BaseGeometry:
    return shapely.box(west, south, east, north)


def read_region_file(path: Path, layer: str | None = None) -> BaseGeometry:
    """Union of every feature's geometry, reprojected to EPSG:4326."""
    import pyogrio.raw  # GDAL inside a wheel; imported here so planning a bbox job never loads it

    if not path.exists():
        raise RegionError(f"file {str(path)!r} does not exist")
    try:
        meta, _, wkb, _ = pyogrio.raw.read(path, layer=layer, read_geometry=True, columns=[])
    except Exception as exc:  # pyogrio raises DataSourceError, DataLayerError, ...
        raise RegionError(f"cannot read {str(path)!r}: {str(exc).strip()}") from None
    if wkb is None or len(wkb) == 0:
        raise RegionError(f"{str(path)!r} has no features")
    geoms = [g for g in shapely.from_wkb(wkb) if g is not None and not g.is_empty]
    if not geoms:
        raise RegionError(f"{str(path)!r} has no non-empty geometry")
    invalid = [g for g in geoms if not g.is_valid]
    if invalid:
        reason = shapely.is_valid_reason(invalid[0])
        raise RegionError(f"invalid geometry in {str(path)!r}: {reason}")
    geometry = shapely.union_all(geoms)
    crs = meta.get("crs")
    if crs:
        source = CRS.from_user_input(crs)
        if not source.equals(CRS.from_epsg(4326), ignore_axis_order=True):
            geometry = reproject(geometry, source, CRS.from_epsg(4326))
    return geometry


def reproject(geometry: BaseGeometry, source: CRS | str, target: CRS | str) -> BaseGeometry:
    transformer = Transformer.from_crs(source, target, always_xy=True)
    return shapely.transform(geometry, lambda xy: _apply(transformer, xy))


def _apply(transformer: Transformer, xy):  # type: ignore[no-untyped-def]
    import numpy as np

    x, y = transformer.transform(xy[:, 0], xy[:, 1])
    return np.column_stack([x, y])
