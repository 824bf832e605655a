"""Job file (TOML) -> a validated JobSpec. Every problem names the file, the key and the
reason, and all problems are reported at once."""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyproj import CRS
from pyproj.exceptions import CRSError
from shapely.geometry.base import BaseGeometry

from core.recipes import RECIPES, validate_params
from core.region import RegionError, from_bbox, read_region_file
from core.sizes import parse_size


class SpecError(ValueError):
    """A job file with problems; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Step:
    count: int
    unit: str  # "days" or "months"

    def __str__(self) -> str:
        return f"{self.count} {self.unit}"


@dataclass(frozen=True)
class GridSpec:
    size: float  # in degrees on a geographic CRS, metres on a projected one
    crs: str = "EPSG:4326"
    origin: tuple[float, float] | None = None  # tile (0, 0)'s top-left corner
    align: bool = False  # snap tile edges to the export's pixel grid


@dataclass(frozen=True)
class TimeSpec:
    start: dt.date
    end: dt.date  # exclusive, as in ee.ImageCollection.filterDate
    step: Step | None = None


@dataclass(frozen=True)
class ExportSpec:
    destination: str = "drive"
    folder: str = "eebatch"
    asset_folder: str | None = None
    bucket: str | None = None
    scale: float = 30.0
    crs: str = "EPSG:4326"
    file_format: str = "GeoTIFF"
    max_pixels: int = 10**13
    file_dimensions: int | list[int] | None = None
    prefix: str = "{job}_{unit}"


@dataclass(frozen=True)
class LimitsSpec:
    max_tasks: int = 10
    drive_budget: int = 10 * 10**9
    max_attempts: int = 5
    split_depth: int = 2
    poll_seconds: float = 30.0
    download_workers: int = 4


@dataclass(frozen=True)
class BackendSpec:
    kind: str = "emulator"
    project: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class RecipeSpec:
    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobSpec:
    path: Path
    text: str
    name: str
    output_dir: Path
    region: BaseGeometry  # EPSG:4326
    region_source: str  # "bbox [...]" or the file name, for messages
    grid: GridSpec
    time: TimeSpec | None
    recipe: RecipeSpec
    export: ExportSpec
    limits: LimitsSpec
    backend: BackendSpec


# -- the schema: section -> key -> (accepted types, required) ---------------------------------

_NUM = (int, float)
SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "job": {"name": ((str,), True), "output_dir": ((str,), False)},
    "region": {"bbox": ((list,), False), "file": ((str,), False), "layer": ((str,), False)},
    "grid": {
        "size": (_NUM, True), "crs": ((str,), False), "origin": ((list,), False),
        "align": ((bool,), False),
    },
    "time": {
        "start": ((dt.date, str), True), "end": ((dt.date, str), True), "step": ((str,), False),
    },
    "recipe": {"name": ((str,), True)},  # plus the recipe's own parameters
    "export": {
        "destination": ((str,), False), "folder": ((str,), False), "asset_folder": ((str,), False),
        "bucket": ((str,), False), "scale": (_NUM, False), "crs": ((str,), False),
        "file_format": ((str,), False), "max_pixels": (_NUM, False),
        "file_dimensions": ((int, list), False), "prefix": ((str,), False),
    },
    "limits": {
        "max_tasks": ((int,), False), "drive_budget": ((str, int, float), False),
        "max_attempts": ((int,), False), "split_depth": ((int,), False),
        "poll_seconds": (_NUM, False), "download_workers": ((int,), False),
    },
    "backend": {"kind": ((str,), False), "project": ((str,), False), "url": ((str,), False)},
}
REQUIRED_SECTIONS = ("job", "region", "grid", "recipe")
MAX_UNITS = 1_000_000
_STEP = re.compile(r"^\s*(\d+)\s*(day|days|month|months|year|years)\s*$")
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Problems:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.lines.append(f"{self.path}: {key}: {message}")


def _typename(kinds: tuple[type, ...]) -> str:
    names = {int: "integer", float: "number", str: "string", list: "array", bool: "true/false",
             dt.date: "date", dict: "table"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def load_spec(path: Path | str) -> JobSpec:
    """Read and validate a job file; raise SpecError with every problem found."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([f"{path}: cannot read the job file: {exc.strerror}"]) from None
    return parse_spec(text, path)


def parse_spec(text: str, path: Path) -> JobSpec:
    p = _Problems(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError([f"{path}: not valid TOML: {exc}"]) from None

    for section in doc:
        if section not in SCHEMA:
            p.add(f"[{section}]", f"unknown section; known: {', '.join(SCHEMA)}")
    for section in REQUIRED_SECTIONS:
        if section not in doc:
            p.add(f"[{section}]", "section is missing")
    sections: dict[str, dict[str, Any]] = {}
    for section, keys in SCHEMA.items():
        raw = doc.get(section, {})
        if not isinstance(raw, dict):
            p.add(section, "must be a table ([section])")
            raw = {}
        clean: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in keys:
                if section == "recipe":
                    continue  # checked by the recipe's own parameters below
                p.add(f"{section}.{key}", f"unknown key; known: {', '.join(keys)}")
                continue
            kinds, _ = keys[key]
            if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
                p.add(f"{section}.{key}", f"expected {_typename(kinds)}, got {value!r}")
                continue
            clean[key] = value
        for key, (_, required) in keys.items():
            if required and section in doc and key not in raw:
                p.add(f"{section}.{key}", "is required")
        sections[section] = clean

    base = path.parent
    job = sections["job"]
    name = job.get("name", "job")
    if "name" in job and not _SLUG.match(name):
        p.add("job.name", f"{name!r} must be letters, digits, '-', '_' or '.' (it names files)")
    output_dir = (base / job.get("output_dir", f"output/{name}")).resolve()

    region, region_source = _region(sections["region"], doc.get("region"), base, p)
    grid = _grid(sections["grid"], p)
    time = _time(sections["time"], p) if "time" in doc else None
    recipe = _recipe(doc.get("recipe"), sections["recipe"], p)
    export = _export(sections["export"], p)
    limits = _limits(sections["limits"], p)
    backend = _backend(sections["backend"], p)
    if grid and grid.align and _same_crs(grid.crs, export.crs) is False:
        p.add("grid.align", f"needs grid.crs ({grid.crs}) to equal export.crs ({export.crs}): "
                            "tiles can only share the export's pixel grid in its own CRS")

    if p.lines:
        raise SpecError(p.lines)
    assert region is not None and grid is not None and recipe is not None
    spec = JobSpec(path, text, name, output_dir, region, region_source, grid, time, recipe,
                   export, limits, backend)
    # Counting units needs the validated grid, so it is the last check.
    from core.grid import GridError, make_tiles
    from core.plan import periods

    try:
        tiles = len(make_tiles(spec))
    except GridError as exc:
        raise SpecError([f"{path}: grid.size: {exc}"]) from None
    units = tiles * len(periods(spec.time))
    if units == 0:
        raise SpecError([f"{path}: grid.size: {grid.size:g} gives no tile that meets the region"])
    if units > MAX_UNITS:
        raise SpecError([f"{path}: grid.size: {grid.size:g} gives {units:,} units, more than "
                         f"{MAX_UNITS:,}; use larger tiles or a longer time step"])
    return spec


def _region(
    sec: dict[str, Any], raw: Any, base: Path, p: _Problems
) -> tuple[BaseGeometry | None, str]:
    if not isinstance(raw, dict):
        return None, ""
    has_bbox, has_file = "bbox" in raw, "file" in raw
    if has_bbox == has_file:
        p.add("region", "give exactly one of bbox = [west, south, east, north] or file = \"…\"")
        return None, ""
    if "layer" in sec and not has_file:
        p.add("region.layer", "only applies with region.file")
    if has_bbox:
        bbox = sec.get("bbox")
        if bbox is None:
            return None, ""
        if len(bbox) != 4 or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                     for v in bbox):
            p.add("region.bbox", f"must be 4 numbers [west, south, east, north], got {bbox!r}")
            return None, ""
        west, south, east, north = (float(v) for v in bbox)
        ok = True
        if not (-180 <= west <= 180 and -180 <= east <= 180):
            p.add("region.bbox", "west and east must be longitudes between -180 and 180")
            ok = False
        if not (-90 <= south <= 90 and -90 <= north <= 90):
            p.add("region.bbox", "south and north must be latitudes between -90 and 90")
            ok = False
        if west >= east:
            p.add("region.bbox", f"west ({west:g}) must be less than east ({east:g})")
            ok = False
        if south >= north:
            p.add("region.bbox", f"south ({south:g}) must be less than north ({north:g})")
            ok = False
        return (from_bbox(west, south, east, north) if ok else None), f"bbox {bbox}"
    file = sec.get("file")
    if file is None:
        return None, ""
    try:
        geometry = read_region_file(base / file, sec.get("layer"))
    except RegionError as exc:
        p.add("region.file", str(exc))
        return None, ""
    if geometry.is_empty or geometry.area == 0:
        p.add("region.file", f"{file!r} gives an empty region (no area)")
        return None, ""
    return geometry, file


def _same_crs(a: str, b: str) -> bool | None:
    try:
        return bool(CRS.from_user_input(a).equals(CRS.from_user_input(b), ignore_axis_order=True))
    except CRSError:
        return None  # already reported


def _crs(value: str, key: str, p: _Problems) -> CRS | None:
    try:
        return CRS.from_user_input(value)
    except CRSError:
        p.add(key, f"{value!r} is not a known CRS; use an EPSG code such as \"EPSG:32610\"")
        return None


def _grid(sec: dict[str, Any], p: _Problems) -> GridSpec | None:
    if "size" not in sec:
        return None
    size = float(sec["size"])
    crs_text = sec.get("crs", "EPSG:4326")
    crs = _crs(crs_text, "grid.crs", p)
    ok = crs is not None
    if size <= 0:
        p.add("grid.size", f"must be > 0, got {size:g}")
        ok = False
    elif crs is not None and crs.is_geographic and size > 90:
        p.add("grid.size", f"{size:g} degrees is larger than the globe allows (at most 90)")
        ok = False
    origin = sec.get("origin")
    if origin is not None and (len(origin) != 2 or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in origin)):
        p.add("grid.origin", f"must be [x, y], got {origin!r}")
        ok = False
    if not ok:
        return None
    return GridSpec(size, crs_text, tuple(map(float, origin)) if origin else None,  # type: ignore[arg-type]
                    bool(sec.get("align", False)))


def _date(value: Any, key: str, p: _Problems) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        p.add(key, f"{value!r} is not a date (YYYY-MM-DD)")
        return None


def _time(sec: dict[str, Any], p: _Problems) -> TimeSpec | None:
    start = _date(sec["start"], "time.start", p) if "start" in sec else None
    end = _date(sec["end"], "time.end", p) if "end" in sec else None
    step = None
    if "step" in sec:
        m = _STEP.match(sec["step"])
        if not m or int(m.group(1)) == 0:
            p.add("time.step", f"{sec['step']!r} is not a step such as \"16 days\" or \"1 month\"")
        else:
            count, unit = int(m.group(1)), m.group(2).rstrip("s")
            step = Step(count * 12, "months") if unit == "year" else Step(count, unit + "s")
    if start and end and end <= start:
        p.add("time.end", f"{end} is not after time.start {start} (end is exclusive)")
        return None
    return TimeSpec(start, end, step) if start and end else None


def _recipe(raw: Any, sec: dict[str, Any], p: _Problems) -> RecipeSpec | None:
    if not isinstance(raw, dict) or "name" not in sec:
        return None
    name = sec["name"]
    if name not in RECIPES:
        p.add("recipe.name", f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
        return None
    params, problems = validate_params(name, {k: v for k, v in raw.items() if k != "name"})
    for key, problem in problems:
        p.add(f"recipe.{key}", problem)
    return RecipeSpec(name, params)


_DESTINATIONS = {"drive": "folder", "asset": "asset_folder", "gcs": "bucket"}


def _export(sec: dict[str, Any], p: _Problems) -> ExportSpec:
    defaults = ExportSpec()
    dest = sec.get("destination", "drive")
    if dest not in _DESTINATIONS:
        p.add("export.destination", f"{dest!r} is not one of drive, asset, gcs")
    elif dest != "drive" and _DESTINATIONS[dest] not in sec:
        p.add(f"export.{_DESTINATIONS[dest]}", f"is required when destination = {dest!r}")
    scale = float(sec.get("scale", defaults.scale))
    if scale <= 0:
        p.add("export.scale", f"must be > 0 metres, got {scale:g}")
    crs = sec.get("crs", defaults.crs)
    _crs(crs, "export.crs", p)
    max_pixels = int(sec.get("max_pixels", defaults.max_pixels))
    if max_pixels <= 0:
        p.add("export.max_pixels", "must be > 0")
    dims = sec.get("file_dimensions")
    if dims is not None:
        values = dims if isinstance(dims, list) else [dims]
        if not (1 <= len(values) <= 2 and all(isinstance(v, int) and v > 0 and v % 256 == 0
                                             for v in values)):
            p.add("export.file_dimensions", "must be a positive multiple of 256, or [w, h] of them")
    prefix = sec.get("prefix", defaults.prefix)
    if "{unit}" not in prefix:
        p.add("export.prefix", "must contain {unit} so that every unit's files differ")
    return ExportSpec(dest, sec.get("folder", defaults.folder), sec.get("asset_folder"),
                      sec.get("bucket"), scale, crs, sec.get("file_format", defaults.file_format),
                      max_pixels, dims, prefix)


def _limits(sec: dict[str, Any], p: _Problems) -> LimitsSpec:
    d = LimitsSpec()
    budget = d.drive_budget
    if "drive_budget" in sec:
        try:
            budget = parse_size(sec["drive_budget"])
        except ValueError as exc:
            p.add("limits.drive_budget", str(exc))
    ranges = {"max_tasks": (1, 3000), "max_attempts": (1, 100), "split_depth": (0, 8),
              "download_workers": (1, 64)}
    values = {}
    for key, (low, high) in ranges.items():
        value = sec.get(key, getattr(d, key))
        if not low <= value <= high:
            p.add(f"limits.{key}", f"must be between {low} and {high}, got {value}")
        values[key] = value
    poll = float(sec.get("poll_seconds", d.poll_seconds))
    if poll <= 0:
        p.add("limits.poll_seconds", f"must be > 0, got {poll:g}")
    if budget <= 0:
        p.add("limits.drive_budget", "must be more than 0 bytes")
    return LimitsSpec(values["max_tasks"], budget, values["max_attempts"], values["split_depth"],
                      poll, values["download_workers"])


def _backend(sec: dict[str, Any], p: _Problems) -> BackendSpec:
    kind = sec.get("kind", "emulator")
    if kind == "earthengine":
        if "project" not in sec:
            p.add("backend.project", "is required when kind = \"earthengine\" (your Cloud project)")
    elif kind == "emulator":
        url = sec.get("url")
        if url is not None and not re.match(r"^http://(127\.0\.0\.1|localhost)(:\d+)?/?$", url):
            p.add("backend.url", f"{url!r} must be http://127.0.0.1:PORT (the emulator is local)")
    else:
        p.add("backend.kind", f"{kind!r} is not \"earthengine\" or \"emulator\"")
    return BackendSpec(kind, sec.get("project"), sec.get("url"))
