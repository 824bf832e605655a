"""The composite recipe: a reduced (median by default) image collection over each tile and
period (and batch of the collection), its bands kept, normalized differences added."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.recipes.base import MAX_BANDS, Param, Recipe, UnitWork

INDICES = {"NDVI": ("nir", "red"), "NDWI": ("green", "nir")}  # index -> the bands it divides
REDUCERS = ("median", "mean", "min", "max", "mosaic", "qualityMosaic")


def _str_list(value: Any) -> str | None:
    if not value or len(value) > MAX_BANDS or not all(isinstance(v, str) and v for v in value):
        return f"must be a non-empty list of at most {MAX_BANDS} band names"
    return None


def _indices(value: Any) -> str | None:
    bad = [v for v in value if not isinstance(v, str) or v not in INDICES]
    return f"unknown index {bad[0]!r}; known: {', '.join(INDICES)}" if bad else None


def _reducer(value: Any) -> str | None:
    return None if value in REDUCERS else \
        f"unknown reducer {value!r}; known: {', '.join(REDUCERS)}"


def _percent(value: Any) -> str | None:
    return None if 0 <= value <= 100 else "must be between 0 and 100"


class Composite(Recipe):
    name = "composite"
    help = "a reduced (median by default) image collection over each tile and period"
    count_batches = True
    parameters = (
        Param("collection", str, "LANDSAT/LC08/C02/T1_L2", "image collection id"),
        Param("bands", list, ["SR_B4", "SR_B3", "SR_B2"], "bands to keep", _str_list),
        Param("indices", list, [], "normalized differences to add: NDVI, NDWI", _indices),
        Param("reducer", str, "median", "median, mean, min, max, mosaic", _reducer),
        Param("cloud_property", str, "CLOUD_COVER", "image property holding cloud cover"),
        Param("max_cloud", (int, float), 30, "keep images with cloud cover below", _percent),
        Param("nir", str, "SR_B5", "near-infrared band (for NDVI, NDWI)"),
        Param("red", str, "SR_B4", "red band (for NDVI)"),
        Param("green", str, "SR_B3", "green band (for NDWI)"),
    )

    def bands(self, params: dict[str, Any]) -> list[tuple[str, int]]:
        # Landsat SR bands are uint16; with an index the image is cast to float32, as one
        # GeoTIFF holds one data type.
        nbytes = 4 if params["indices"] else 2
        return [(b, nbytes) for b in params["bands"]] + [(i, 4) for i in params["indices"]]

    def build(self, params: dict[str, Any], geometry: Any, unit: UnitWork,
              job_dir: Path) -> Any:
        import ee

        p = params
        batch = unit.batch if unit.batch is not None and unit.batch.by == "count" else None
        # A batch by count is taken of the images over the job's whole region, so batch k is
        # the same images on every tile (its mosaic has no seams); by date the unit's own
        # dates are the batch's.
        where = geometry if batch is None else ee.Geometry.Rectangle(
            list(batch.region or ()), proj="EPSG:4326", geodesic=False)
        collection = ee.ImageCollection(p["collection"]).filterBounds(where)
        if unit.start and unit.end:
            collection = collection.filterDate(unit.start, unit.end)
        collection = collection.filter(ee.Filter.lt(p["cloud_property"], p["max_cloud"]))
        if batch is not None:
            assert batch.size is not None
            collection = ee.ImageCollection(
                collection.sort("system:time_start").toList(batch.size, batch.offset))
        reducer = p["reducer"]
        if reducer == "qualityMosaic":
            reduced = collection.qualityMosaic(p["nir"])
        else:
            reduced = getattr(collection, reducer)()
        image = reduced.select(p["bands"])
        for index in p["indices"]:
            pair = [p[band] for band in INDICES[index]]
            image = image.toFloat().addBands(reduced.normalizedDifference(pair).rename(index))
        return image


RECIPE = Composite()
