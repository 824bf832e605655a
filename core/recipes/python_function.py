"""The python recipe: the user's own module:function(geometry, start, end, **args), imported
from a folder beside the job file, returning an ee.Image (or an ee.FeatureCollection)."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any

from core.recipes.base import MAX_BANDS, Output, Param, Recipe, RecipeError, UnitWork, between

_FUNCTION = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*\Z")


def _function(value: Any) -> str | None:
    return None if _FUNCTION.match(value) else \
        "must be \"module:function\", e.g. \"myrecipes:ndvi\""


def _no_control(value: Any) -> str | None:
    return "must not hold control characters" if any(ord(c) < 32 for c in value) else None


def _kind(value: Any) -> str | None:
    return None if value in ("image", "table") else "must be \"image\" or \"table\""


class PythonFunction(Recipe):
    name = "python"
    help = "your own module:function(geometry, start, end, **args) returning an ee.Image"
    parameters = (
        Param("function", str, None, "\"module:function\" to call", _function, required=True),
        Param("path", str, ".", "directory added to sys.path, relative to the job file",
              _no_control),
        Param("kind", str, "image", "\"image\" or \"table\" (an ee.FeatureCollection)", _kind),
        Param("bands", int, 1, "bands the image has (for estimates)", between(1, MAX_BANDS)),
        Param("bytes_per_band", int, 4, "bytes per pixel per band (for estimates)",
              between(1, 8)),
        Param("args", dict, {}, "keyword arguments passed to the function"),
    )

    def output(self, params: dict[str, Any]) -> Output:
        return "table" if params["kind"] == "table" else "image"

    def bands(self, params: dict[str, Any]) -> list[tuple[str, int]]:
        return [(f"b{i}", params["bytes_per_band"]) for i in range(params["bands"])]

    def band_names(self, params: dict[str, Any]) -> list[str]:
        return []  # the function names its bands; bands() only counts them

    def build(self, params: dict[str, Any], geometry: Any, unit: UnitWork,
              job_dir: Path) -> Any:
        import ee

        p = params
        module_name, _, func_name = p["function"].partition(":")
        directory = str((job_dir / p["path"]).resolve())
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
        if self.output(p) == "table":
            if not isinstance(result, ee.FeatureCollection):
                raise RecipeError(f"{p['function']} returned {type(result).__name__}, "
                                  "not an ee.FeatureCollection (kind = \"table\")")
            return result
        if not isinstance(result, ee.Image):
            raise RecipeError(f"{p['function']} returned {type(result).__name__}, "
                              "not an ee.Image")
        return result


RECIPE = PythonFunction()
