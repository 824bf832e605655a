"""Unit -> the ee object to export (an ee.Image, or an ee.FeatureCollection for tables), built
by the job's recipe.

earthengine-api is imported inside the functions: planning never needs it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from core.recipes.base import RecipeError, UnitWork
from core.recipes.catalog import RECIPES
from core.spec import JobSpec

__all__ = ["RecipeError", "UnitWork", "build", "tile_geometry"]


def tile_geometry(spec: JobSpec, bounds: tuple[float, float, float, float]) -> Any:
    """The tile as a planar rectangle in the grid CRS (geodesic edges would bulge)."""
    import ee

    return ee.Geometry.Rectangle(list(bounds), proj=spec.grid.crs, geodesic=False)


def build(spec: JobSpec, unit: UnitWork) -> tuple[str, Any]:
    """("image" | "table", ee object)."""
    recipe = RECIPES[spec.recipe.name]
    params = spec.recipe.params
    geometry = tile_geometry(spec, unit.bounds)
    if unit.region is None:
        unit = replace(unit, region=spec.region)
    return recipe.output(params), recipe.build(params, geometry, unit, spec.path.parent)
