"""The recipe catalog: every recipe by name, found in the modules of this package.

Discovery is pkgutil over the package rather than a tuple of module names here, so that adding
a recipe is adding its module (and its test) and nothing else. The rule: every module of
core.recipes except the machinery below and private `_` modules is a recipe module, and must
hold `RECIPE`, an instance of a core.recipes.base.Recipe; a module that does not is an error at
import, not a recipe silently missing. The machinery is skipped, not imported: build.py imports
the job-file check, which imports this catalog.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Any

from core.recipes.base import Recipe

_MACHINERY = frozenset({"base", "build", "catalog"})


def discover(package: str = __package__) -> dict[str, Recipe]:
    """The recipes of the package's modules, by name, in the order of their names."""
    found: dict[str, Recipe] = {}
    for module_info in pkgutil.iter_modules(sys.modules[package].__path__):
        if module_info.name in _MACHINERY or module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{module_info.name}")
        recipe = getattr(module, "RECIPE", None)
        if not isinstance(recipe, Recipe):
            raise TypeError(f"{module.__name__} is in the recipe package but holds no RECIPE "
                            "(an instance of core.recipes.base.Recipe)")
        if recipe.name in found:
            raise TypeError(f"{module.__name__}: recipe {recipe.name!r} is defined twice")
        found[recipe.name] = recipe
    return dict(sorted(found.items()))


RECIPES: dict[str, Recipe] = discover()


def validate_params(name: str, raw: dict[str, Any], job_dir: Path | None = None
                    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Return (params with defaults, [(key, problem)]); files the parameters name are
    relative to `job_dir`, the job file's folder."""
    return RECIPES[name].validate(raw, job_dir)
