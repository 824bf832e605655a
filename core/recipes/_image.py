"""The image the stats, sample and classify recipes read: built as the composite recipe builds
its image (an image collection filtered by bounds, dates and cloud cover, reduced), with the
same parameters and checks, but of float bands only (the bands, then the indices) and with
bands optional when an index is asked for."""

from __future__ import annotations

import dataclasses
from typing import Any

from core.recipes.base import MAX_BANDS, Param
from core.recipes.composite import INDICES
from core.recipes.composite import RECIPE as COMPOSITE

_COMPOSITE = COMPOSITE.params
NAMES = ("collection", "bands", "indices", "reducer", "cloud_property", "max_cloud", "nir",
         "red", "green")


def _band_list(value: Any) -> str | None:
    if len(value) > MAX_BANDS or not all(isinstance(v, str) and v for v in value):
        return f"must be a list of at most {MAX_BANDS} band names"
    if len(set(value)) != len(value):
        return "names a band twice"
    return None


def _positive(value: Any) -> str | None:
    return None if 0 < value <= 1e7 else "must be more than 0 and at most 10,000,000 metres"


def scale_parameter(help: str) -> Param:
    """The scale EE computes at (reduceRegions, sampleRegions): metres per pixel."""
    return Param("scale", (int, float), 30, help, _positive)


def image_parameters(bands: list[str], indices: list[str]) -> tuple[Param, ...]:
    """The composite's image parameters, with these defaults for bands and indices."""
    return (
        _COMPOSITE["collection"],
        dataclasses.replace(_COMPOSITE["bands"], default=bands, check=_band_list,
                            help="bands to read (may be [] when indices are given)"),
        dataclasses.replace(_COMPOSITE["indices"], default=indices),
        dataclasses.replace(_COMPOSITE["reducer"],
                            help="how a period's images are combined first: median, mean, "
                                 "min, max, mosaic"),
        *(_COMPOSITE[name] for name in NAMES[4:]),
    )


def image_problems(params: dict[str, Any]) -> list[tuple[str, str]]:
    if not params["bands"] and not params["indices"]:
        return [("bands", "with no indices, give at least one band")]
    if set(params["bands"]) & set(params["indices"]):
        return [("indices", "an index has the name of a band")]
    return []


def band_names(params: dict[str, Any]) -> list[str]:
    """The image's bands: the bands, then the indices."""
    return [*params["bands"], *params["indices"]]


def composite_image(params: dict[str, Any], bounds: Any, start: str | None,
                    end: str | None, batch: Any = None) -> Any:
    """The reduced collection over `bounds` (an ee.Geometry or ee.FeatureCollection) and the
    dates [start, end), as float32 bands: the bands, then the indices. With a `batch` by
    count ([batches], core/batches.py), only its `size` images from `offset`, of the
    collection over the job's region in date order, as the composite recipe takes them (so
    batch k is the same images on every tile)."""
    import ee

    p = params
    by_count = batch is not None and batch.by == "count"
    where = ee.Geometry.Rectangle(list(batch.region or ()), proj="EPSG:4326",
                                  geodesic=False) if by_count else bounds
    collection = ee.ImageCollection(p["collection"]).filterBounds(where)
    if start and end:
        collection = collection.filterDate(start, end)
    collection = collection.filter(ee.Filter.lt(p["cloud_property"], p["max_cloud"]))
    if by_count:
        collection = ee.ImageCollection(
            collection.sort("system:time_start").toList(batch.size, batch.offset))
    reducer = p["reducer"]
    reduced = (collection.qualityMosaic(p["nir"]) if reducer == "qualityMosaic"
               else getattr(collection, reducer)())
    parts = [reduced.select(p["bands"]).toFloat()] if p["bands"] else []
    for index in p["indices"]:
        pair = [p[band] for band in INDICES[index]]
        parts.append(reduced.normalizedDifference(pair).toFloat().rename(index))
    image = parts[0]
    for part in parts[1:]:
        image = image.addBands(part)
    return image
