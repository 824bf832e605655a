"""The recipe catalog: names, parameters with their types and defaults, and output size per
pixel (for estimates before anything has run)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

INDICES = {"NDVI": ("nir", "red"), "NDWI": ("green", "nir")}
MAX_BANDS = 5000  # more than any EE image holds; estimates build one entry per band
_FUNCTION = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Param:
    kind: type | tuple[type, ...]
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None  # returns a problem or None


def _str_list(value: Any) -> str | None:
    if not value or len(value) > MAX_BANDS or not all(isinstance(v, str) and v for v in value):
        return f"must be a non-empty list of at most {MAX_BANDS} band names"
    return None


def _indices(value: Any) -> str | None:
    bad = [v for v in value if not isinstance(v, str) or v not in INDICES]
    return f"unknown index {bad[0]!r}; known: {', '.join(INDICES)}" if bad else None


def _reducer(value: Any) -> str | None:
    known = ("median", "mean", "min", "max", "mosaic", "qualityMosaic")
    return None if value in known else f"unknown reducer {value!r}; known: {', '.join(known)}"


def _percent(value: Any) -> str | None:
    return None if 0 <= value <= 100 else "must be between 0 and 100"


def _function(value: Any) -> str | None:
    return None if _FUNCTION.match(value) else \
        "must be \"module:function\", e.g. \"myrecipes:ndvi\""


def _between(low: int, high: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"must be between {low} and {high}"
    return check


def _no_control(value: Any) -> str | None:
    return "must not hold control characters" if any(ord(c) < 32 for c in value) else None


def _kind(value: Any) -> str | None:
    return None if value in ("image", "table") else "must be \"image\" or \"table\""


@dataclass(frozen=True)
class RecipeInfo:
    name: str
    summary: str
    params: dict[str, Param]
    required: tuple[str, ...] = ()

    def bands(self, params: dict[str, Any]) -> list[tuple[str, int]]:
        """(band name, bytes per pixel) of the exported image, for size estimates."""
        if self.name == "composite":
            # Landsat SR bands are uint16; with an index the image is cast to float32, as one
            # GeoTIFF holds one data type.
            nbytes = 4 if params["indices"] else 2
            return [(b, nbytes) for b in params["bands"]] + [(i, 4) for i in params["indices"]]
        return [(f"b{i}", params["bytes_per_band"]) for i in range(params["bands"])]


RECIPES: dict[str, RecipeInfo] = {
    "composite": RecipeInfo(
        "composite",
        "a reduced (median by default) image collection over each tile and period",
        {
            "collection": Param(str, "LANDSAT/LC08/C02/T1_L2", "image collection id"),
            "bands": Param(list, ["SR_B4", "SR_B3", "SR_B2"], "bands to keep", _str_list),
            "indices": Param(list, [], "normalized differences to add: NDVI, NDWI", _indices),
            "reducer": Param(str, "median", "median, mean, min, max, mosaic", _reducer),
            "cloud_property": Param(str, "CLOUD_COVER", "image property holding cloud cover"),
            "max_cloud": Param((int, float), 30, "keep images with cloud cover below", _percent),
            "nir": Param(str, "SR_B5", "near-infrared band (for NDVI, NDWI)"),
            "red": Param(str, "SR_B4", "red band (for NDVI)"),
            "green": Param(str, "SR_B3", "green band (for NDWI)"),
        },
    ),
    "python": RecipeInfo(
        "python",
        "your own module:function(geometry, start, end, **args) returning an ee.Image",
        {
            "function": Param(str, None, "\"module:function\" to call", _function),
            "path": Param(str, ".", "directory added to sys.path, relative to the job file",
                          _no_control),
            "kind": Param(str, "image", "\"image\" or \"table\" (an ee.FeatureCollection)", _kind),
            "bands": Param(int, 1, "bands the image has (for estimates)", _between(1, MAX_BANDS)),
            "bytes_per_band": Param(int, 4, "bytes per pixel per band (for estimates)",
                                    _between(1, 8)),
            "args": Param(dict, {}, "keyword arguments passed to the function"),
        },
        required=("function",),
    ),
}


def validate_params(name: str, raw: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Return (params with defaults, [(key, problem)])."""
    info = RECIPES[name]
    problems: list[tuple[str, str]] = []
    params: dict[str, Any] = {}
    for key, value in raw.items():
        param = info.params.get(key)
        if param is None:
            problems.append((key, f"unknown parameter of recipe {name!r}; known: "
                                  f"{', '.join(info.params)}"))
            continue
        kinds = param.kind if isinstance(param.kind, tuple) else (param.kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            problems.append((key, f"expected {' or '.join(k.__name__ for k in kinds)}, "
                                  f"got {type(value).__name__} {value!r}"))
            continue
        problem = param.check(value) if param.check else None
        if problem:
            problems.append((key, problem))
            continue
        params[key] = value
    for key in info.required:
        if key not in raw:
            problems.append((key, "is required"))
    for key, param in info.params.items():
        params.setdefault(key, param.default)
    return params, problems
