"""What a recipe is. A recipe says what each unit (tile x period) exports: its parameters
(declared, with type, default, help and check), what it outputs (an image or a table), its bands
and bytes per pixel (for estimates before anything has run), and how it builds the EE object of
one unit.

A recipe is a module of the core.recipes package holding a `RECIPE`, an instance of a `Recipe`
subclass; the catalog (core/recipes/catalog.py) finds it there. Planning reads everything but
`build`: earthengine-api is imported inside `build` only, so planning never imports it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

from core.batches import Batch

Output = Literal["image", "table"]
MAX_BANDS = 5000  # more than any EE image holds; estimates build one entry per band
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+\Z")  # \Z: "$" would let a key end in \n


@dataclass(frozen=True)
class Param:
    """One parameter of a recipe, as the job file's [recipe] section writes it."""

    name: str
    kind: type | tuple[type, ...]  # what TOML value it takes (bool is never an int here)
    default: Any  # what it is when the job file leaves it out (None for a required one)
    help: str  # one line, shown by the job form
    check: Callable[[Any], str | None] | None = None  # a value of `kind` -> a problem or None
    required: bool = False  # the job file must give it


@dataclass(frozen=True)
class UnitWork:
    """What a recipe needs to know of one unit."""

    id: str
    bounds: tuple[float, float, float, float]  # in the grid CRS
    start: str | None  # ISO dates, end exclusive (by date, the batch's: every recipe follows)
    end: str | None
    # The unit's batch of its collection ([batches], core/batches.py): by count, a recipe
    # with `count_batches` reduces only `batch.size` images from `batch.offset`, of its
    # collection over `batch.region` in date order. None without [batches].
    batch: Batch | None = None
    # The job's region (a shapely geometry in EPSG:4326; build() sets it), for a recipe that
    # keeps to the region within its tile (stats without zones). None: not known.
    region: Any = None
    # The asset of the model the job trained once in EE for this unit (a recipe that
    # `trains`: core/engine/training.py makes it before the unit is sent). None otherwise.
    model: str | None = None


class RecipeError(Exception):
    """The user's recipe could not be built (bad module, wrong return type): fatal."""


def between(low: int, high: int) -> Callable[[Any], str | None]:
    """A check that a number lies in [low, high]."""
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"must be between {low} and {high}"
    return check


def toml_value(value: Any) -> str:
    """A parameter's value as a job file writes it (TOML, inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # a JSON string is a TOML basic string, but for DEL
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = [f"{k if _BARE_KEY.match(k) else toml_value(k)} = {toml_value(v)}"
                 for k, v in value.items()]
        return "{ " + ", ".join(pairs) + " }" if pairs else "{}"
    if isinstance(value, (dt.date, dt.time)):  # datetime is a date
        return value.isoformat()
    return repr(value)  # int, float (inf and nan are TOML's too)


class Recipe(ABC):
    """A recipe; a subclass sets the three class attributes and writes `bands` and `build`."""

    name: ClassVar[str]  # as the job file's recipe.name says it
    help: ClassVar[str]  # one line: what a unit exports
    parameters: ClassVar[tuple[Param, ...]]  # in the order they are listed
    # True when `build` cuts its image collection to `unit.batch` by count (toList(size,
    # offset)); the job-file check refuses [batches] by = "count" for a recipe without it.
    count_batches: ClassVar[bool] = False
    # True when the recipe trains a model once in EE before its units run (classify): the
    # worker exports `model(...)` to an asset (core/engine/training.py) and every unit's
    # `build` gets that asset as `unit.model`, so every unit uses the same trained model.
    trains: ClassVar[bool] = False

    @cached_property
    def params(self) -> dict[str, Param]:
        """The parameters by name."""
        return {p.name: p for p in self.parameters}

    @property
    def required(self) -> tuple[str, ...]:
        """Names of the parameters the job file must give."""
        return tuple(p.name for p in self.parameters if p.required)

    def output(self, params: dict[str, Any]) -> Output:
        """What a unit exports: "image" (an ee.Image) or "table" (an ee.FeatureCollection)."""
        return "image"

    @abstractmethod
    def bands(self, params: dict[str, Any]) -> list[tuple[str, int]]:
        """(band name, bytes per pixel) of the exported image, for size estimates."""

    def band_names(self, params: dict[str, Any]) -> list[str]:
        """The exported image's band names, written beside each GeoTIFF (core/outputs/bands.py);
        [] when the recipe does not know them (its bands are placeholders for the estimate)."""
        return [name for name, _ in self.bands(params)]

    @abstractmethod
    def build(self, params: dict[str, Any], geometry: Any, unit: UnitWork,
              job_dir: Path) -> Any:
        """The unit's EE object to export: an ee.Image, or an ee.FeatureCollection when
        `output` says "table". `geometry` is the unit's tile (an ee.Geometry), `job_dir` the job
        file's folder (what relative paths in params are relative to). Import ee in here.
        Raise RecipeError for a mistake of the user's that retrying will not mend."""

    def model_key(self, params: dict[str, Any], period: str) -> str:
        """Which model a unit of `period` uses: "job" when one serves every period, else the
        period's id (a recipe that `trains` says which)."""
        return "job"

    def model(self, params: dict[str, Any], job_dir: Path, start: str | None,
              end: str | None) -> Any:
        """The model to train in EE for units whose period runs from `start` to `end` (an
        ee.Classifier, trained), exported once to an asset. Only for a recipe that `trains`."""
        raise NotImplementedError(f"recipe {self.name!r} trains no model")

    def model_summary(self, params: dict[str, Any]) -> str:
        """One line for the plan: what the recipe trains before its units, and where it goes."""
        return ""

    def settings(self, params: dict[str, Any]) -> list[str]:
        """`key = value` of each parameter the job sets away from its default, in the order
        of `parameters`: what the plan says of the recipe."""
        return [f"{p.name} = {toml_value(params[p.name])}" for p in self.parameters
                if params.get(p.name) is not None and params[p.name] != p.default]

    def manual(self) -> list[str]:
        """The recipe, then its parameters a line each (type, default or required, help)."""
        lines = [f"{self.name}: {self.help}"]
        for p in self.parameters:
            kinds = p.kind if isinstance(p.kind, tuple) else (p.kind,)
            given = "required" if p.required else f"default {toml_value(p.default)}"
            lines.append(f"  {p.name} ({' or '.join(k.__name__ for k in kinds)}, {given}): "
                         f"{p.help}")
        return lines

    def validate(self, raw: dict[str, Any], job_dir: Path | None = None
                 ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """The job file's parameters -> (params with defaults, [(key, problem)]). A recipe
        whose parameters depend on each other, or name files (relative to `job_dir`, the job
        file's folder; None when unknown), extends this."""
        problems: list[tuple[str, str]] = []
        params: dict[str, Any] = {}
        for key, value in raw.items():
            param = self.params.get(key)
            if param is None:
                problems.append((key, f"unknown parameter of recipe {self.name!r}; known: "
                                      f"{', '.join(self.params)}"))
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
        for key in self.required:
            if key not in raw:
                problems.append((key, "is required"))
        for key, param in self.params.items():
            params.setdefault(key, param.default)
        return params, problems
