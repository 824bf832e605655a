"""Recipes: what each unit exports. This module holds what planning needs of a recipe (its
parameters, how many bands and bytes a pixel gives); building the EE request lives in each
recipe's module and imports earthengine-api only when called."""

from __future__ import annotations

from core.recipes.catalog import RECIPES, RecipeInfo, validate_params

__all__ = ["RECIPES", "RecipeInfo", "validate_params"]
