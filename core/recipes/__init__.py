"""Recipes: what each unit exports. One module per recipe (core/recipes/composite.py, …), each
holding a `RECIPE` (core/recipes/base.py says what one is); the catalog finds them. This package
gives what planning needs of a recipe (its parameters, how many bands and bytes a pixel gives);
building the EE request (core/recipes/build.py) imports earthengine-api only when called."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.recipes.base import Param, Recipe
from core.recipes.catalog import RECIPES, validate_params

if TYPE_CHECKING:  # types only: the job-file check imports this package
    from core.spec import JobSpec

__all__ = ["RECIPES", "Param", "Recipe", "bytes_per_pixel", "validate_params"]


def bytes_per_pixel(spec: JobSpec) -> int:
    """Bytes one pixel of the job's output weighs, all bands together."""
    return sum(nbytes for _, nbytes in RECIPES[spec.recipe.name].bands(spec.recipe.params))
