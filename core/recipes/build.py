"""Unit -> the ee object to export (an ee.Image, or an ee.FeatureCollection for tables).

earthengine-api is imported inside the functions: planning never needs it.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any

from core.spec import JobSpec


@dataclass(frozen=True)
class UnitWork:
    """What a recipe needs to know of one unit."""

    id: str
    bounds: tuple[float, float, float, float]  # in the grid CRS
    start: str | None  # ISO dates, end exclusive
    end: str | None


class RecipeError(Exception):
    """The user's recipe could not be built (bad module, wrong return type): fatal."""


def tile_geometry(spec: JobSpec, bounds: tuple[float, float, float, float]) -> Any:
    """The tile as a planar rectangle in the grid CRS (geodesic edges would bulge)."""
    import ee

    return ee.Geometry.Rectangle(list(bounds), proj=spec.grid.crs, geodesic=False)


def build(spec: JobSpec, unit: UnitWork) -> tuple[str, Any]:
    """("image" | "table", ee object)."""
    geometry = tile_geometry(spec, unit.bounds)
    params = spec.recipe.params
    if spec.recipe.name == "composite":
        return "image", _composite(params, geometry, unit)
    return _python(spec, params, geometry, unit)


def _composite(p: dict[str, Any], geometry: Any, unit: UnitWork) -> Any:
    import ee

    collection = ee.ImageCollection(p["collection"]).filterBounds(geometry)
    if unit.start and unit.end:
        collection = collection.filterDate(unit.start, unit.end)
    collection = collection.filter(ee.Filter.lt(p["cloud_property"], p["max_cloud"]))
    reducer = p["reducer"]
    if reducer == "qualityMosaic":
        reduced = collection.qualityMosaic(p["nir"])
    else:
        reduced = getattr(collection, reducer)()
    image = reduced.select(p["bands"])
    for index in p["indices"]:
        pair = {"NDVI": [p["nir"], p["red"]], "NDWI": [p["green"], p["nir"]]}[index]
        image = image.toFloat().addBands(reduced.normalizedDifference(pair).rename(index))
    return image


def _python(spec: JobSpec, p: dict[str, Any], geometry: Any, unit: UnitWork) -> tuple[str, Any]:
    import ee

    module_name, _, func_name = p["function"].partition(":")
    directory = str((spec.path.parent / p["path"]).resolve())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise RecipeError(f"recipe.function {p['function']!r}: {exc}") from None
    try:
        result = func(geometry, unit.start, unit.end, **p["args"])
    except Exception as exc:  # the user's code: report it as theirs, and do not retry it
        raise RecipeError(f"{p['function']} raised {type(exc).__name__}: {exc}") from None
    if p["kind"] == "table":
        if not isinstance(result, ee.FeatureCollection):
            raise RecipeError(f"{p['function']} returned {type(result).__name__}, "
                              "not an ee.FeatureCollection (kind = \"table\")")
        return "table", result
    if not isinstance(result, ee.Image):
        raise RecipeError(f"{p['function']} returned {type(result).__name__}, not an ee.Image")
    return "image", result
