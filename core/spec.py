"""Job file (TOML) -> a validated JobSpec. Every problem names the file, the key and the
reason, and all problems are reported at once."""

from __future__ import annotations

import datetime as dt
import math
import re
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError, ProjError
from shapely.geometry.base import BaseGeometry

from core.batches import BY, MAX_EE_INT, MAX_SIZE, BatchSpec, date_cuts
from core.limits import BOUNDS, MAX_EECU_HOURS, MAX_POLL
from core.naming import WORKLOAD_TAG, default_workload_tag
from core.places import overlaps, places_named
from core.problems import Problem, key_lines, line_of
from core.recipes import RECIPES, validate_params
from core.region import (
    RegionError,
    as_lat_lon,
    box_text,
    extent_text,
    from_bbox,
    globe_problems,
    polar_swap,
    read_region_file,
    swap_hint,
)
from core.routes import DIRECT, ROUTES, direct_refusal_of
from core.sizes import parse_size


class SpecError(ValueError):
    """A job file with problems; `problems` holds them all, each a Problem (file, key,
    message, line) that prints as its one line."""

    def __init__(self, problems: list[Problem]) -> None:
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
    period_folders: bool = True  # each period's files under output_dir/PERIOD/


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
    # EE task priority (0-9999), sent only when the job file asks: Google presents it as a
    # feature of paid projects, and a noncommercial project may refuse it.
    priority: int | None = None
    workload_tag: str = ""  # "": eebatch-JOB (core/naming.py)
    route: str = "batch"  # batch | direct | auto (core/routes.py)


@dataclass(frozen=True)
class LimitsSpec:
    max_tasks: int = 10
    drive_budget: int = 10 * 10**9
    max_attempts: int = 5
    split_depth: int = 2
    poll_seconds: float = 30.0
    download_workers: int = 4
    # How long an exported unit's files may be missing from Drive's listing before the export
    # is redone: Drive's search index lags new files (undocumented by how much).
    listing_grace_minutes: float = 10.0
    # The cost guard (core/engine/costs.py). A cap on the job's EECU-hours: no export is sent
    # that the learned cost says would cross it (None: no cap).
    eecu_hours: float | None = None
    # The project's monthly EECU-hours tier (150, 1,000 or 100,000 noncommercial): a warning
    # once this month's use and the job's forecast near it (None: not watched).
    eecu_tier_hours: float | None = None
    # Stop sending exports while EE says the project is in restricted mode.
    pause_when_restricted: bool = False
    # A task running this many times longer than the median of its finished siblings of about
    # its size is cancelled and sent again, once (0: never).
    straggler_factor: float = 0.0
    # Direct-route requests in flight at once (EE allows 40 per project, shared with the
    # project's other interactive use: the Code Editor, other scripts).
    direct_requests: int = 32


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
    # "key: message" for what is valid but likely a mistake; `eebatch plan` shows them
    warnings: tuple[str, ...] = ()
    batches: BatchSpec | None = None  # [batches]: each period's collection cut into batches


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
        "period_folders": ((bool,), False),
    },
    "recipe": {"name": ((str,), True)},  # plus the recipe's own parameters
    "export": {
        "destination": ((str,), False), "folder": ((str,), False), "asset_folder": ((str,), False),
        "bucket": ((str,), False), "scale": (_NUM, False), "crs": ((str,), False),
        "file_format": ((str,), False), "max_pixels": (_NUM, False),
        "file_dimensions": ((int, list), False), "prefix": ((str,), False),
        "priority": ((int,), False), "workload_tag": ((str,), False),
        "route": ((str,), False),
    },
    "limits": {
        "max_tasks": ((int,), False), "drive_budget": ((str, int, float), False),
        "max_attempts": ((int,), False), "split_depth": ((int,), False),
        "poll_seconds": (_NUM, False), "download_workers": ((int,), False),
        "listing_grace_minutes": (_NUM, False), "eecu_hours": (_NUM, False),
        "eecu_tier_hours": (_NUM, False), "pause_when_restricted": ((bool,), False),
        "straggler_factor": (_NUM, False), "direct_requests": ((int,), False),
    },
    "backend": {"kind": ((str,), False), "project": ((str,), False), "url": ((str,), False)},
    "batches": {
        "by": ((str,), True), "size": ((int,), False), "count": ((int,), False),
        "images": ((int,), False), "step": ((str,), False),
    },
}
REQUIRED_SECTIONS = ("job", "region", "grid", "recipe")
MAX_UNITS = 1_000_000
MAX_GRACE_MINUTES = 24 * 60.0  # listing_grace_minutes: a day at most
MAX_STRAGGLER = 1000.0
MAX_NAME = 64  # job.name names the session file and, through the prefix, every exported file
MAX_FILE_NAME = 200  # an exported file's name before its "-0000000000-0000000000.tif" suffix
UNIT_ID_MAX = 41  # "r1234567c1234567" + 8 quadtree levels ".0" + "_20230601"
MAX_INT64 = 2**63 - 1  # EE's maxPixels and the store's byte counts are 64-bit integers
MIN_SCALE = 0.01  # metres: finer than any imagery in EE
MAX_TILE_DEGREES = 90.0
MAX_TILE_METRES = 40_075_017.0  # the Earth's circumference
# Earth Engine holds no data before the 19th century or far in the future; dates within these
# also keep every step's arithmetic inside Python's calendar (years 1-9999).
FIRST_DAY, LAST_DAY = dt.date(1800, 1, 1), dt.date(2500, 1, 1)
MAX_STEP = {"days": 366_000, "months": 12_000}  # about 1000 years
_STEP = re.compile(r"^\s*(\d+)\s*(day|days|month|months|year|years)\s*\Z")
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
# export.file_format by what the recipe exports (case-insensitive, as ee.batch reads it); a table
# export's GeoTIFF is the untouched default and means CSV. Only formats whose file names
# eebatch knows (core/engine/matching.py): it takes no Drive file it cannot tell is its own.
FILE_FORMATS = {"image": ("GeoTIFF",),
                "table": ("CSV", "GeoJSON", "KML", "KMZ", "SHP", "GeoTIFF")}


class _Problems:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self._lines: dict[str, int] | None = None  # where each key is, read on the first problem

    def add(self, key: str, message: str) -> None:
        if self._lines is None:
            self._lines = key_lines(self.text)
        self.problems.append(Problem(self.path, key, message, line_of(key, self._lines)))

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(f"{key}: {message}")


def _typename(kinds: tuple[type, ...]) -> str:
    names = {int: "integer", float: "number", str: "string", list: "array", bool: "true/false",
             dt.date: "date", dict: "table"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def _non_finite(value: Any) -> bool:
    """NaN or ±inf anywhere in a value (TOML accepts nan and inf as floats)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(_non_finite(v) for v in value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    return False


def _control(value: str) -> bool:
    """A control character (NUL above all) breaks file names, paths and API calls."""
    return any(ord(c) < 32 or ord(c) == 127 for c in value)


def load_spec(path: Path | str) -> JobSpec:
    """Read and validate a job file; raise SpecError with every problem found."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError([Problem(path, "", f"cannot read the job file: {exc.strerror}")]
                        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise SpecError([Problem(path, "", f"not UTF-8 text: byte 0x{data[exc.start]:02x} at "
                                 f"line {line}, column {column}; save the job file as UTF-8",
                                 line)]) from None
    return parse_spec(text, path)


_AT_LINE = re.compile(r"\(at line (\d+), column \d+\)")
_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_-]+)\s*\]")
_DATE_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=\s*(\d{4}-\d\d-\d\d(?:[T ][0-9:.+Z-]*)?)")


def _toml_problem(path: Path, text: str, error: str) -> Problem:
    """The TOML parser's error, at its line; a date that is no date names its key: "time.start:
    2023-13-01 is not a valid date" (tomllib says "Invalid date or datetime", or for month 13
    that a statement goes on after the number 2023)."""
    at = _AT_LINE.search(error)
    number = int(at.group(1)) if at else None
    return _bad_date(path, text, number) or Problem(path, "", f"not valid TOML: {error}", number)


def _bad_date(path: Path, text: str, number: int | None) -> Problem | None:
    """None when the error's line holds no such date."""
    lines = text.splitlines()
    m = _DATE_KEY.match(lines[number - 1]) if number and number <= len(lines) else None
    if not m:
        return None
    key, value = m.group(1), m.group(2).strip()
    try:
        dt.datetime.fromisoformat(value)
        return None  # a real date: the error is something else on the line
    except ValueError:
        pass
    section = next((h.group(1) for line in reversed(lines[:number - 1])
                    if (h := _HEADER.match(line))), None)
    name = f"{section}.{key}" if section else key
    return Problem(path, name, f"{value} is not a valid date (YYYY-MM-DD)", number)


def parse_spec(text: str, path: Path) -> JobSpec:
    p = _Problems(path, text)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError([_toml_problem(path, text, str(exc))]) from None

    for section in doc:
        if section not in SCHEMA:
            p.add(f"[{section}]", f"unknown section; known: {', '.join(SCHEMA)}")
    for section in REQUIRED_SECTIONS:
        if section not in doc:
            p.add(f"[{section}]", "section is missing")
    sections: dict[str, dict[str, Any]] = {}
    rejected: set[str] = set()  # keys already reported for their value: not "missing" as well
    for section, keys in SCHEMA.items():
        raw = doc.get(section, {})
        if not isinstance(raw, dict):
            p.add(section, "must be a table ([section])")
            sections[section] = {}  # and no "is required" for its keys: one line
            continue
        clean: dict[str, Any] = {}
        for key, value in raw.items():
            if _non_finite(value):
                p.add(f"{section}.{key}", f"nan and inf are not allowed, got {value!r}")
                rejected.add(f"{section}.{key}")
                continue
            if isinstance(value, str) and _control(value):
                p.add(f"{section}.{key}", f"must not hold control characters, got {value!r}")
                rejected.add(f"{section}.{key}")
                continue
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
            if required and isinstance(raw, dict) and section in doc and key not in raw:
                p.add(f"{section}.{key}", "is required")
        sections[section] = clean

    base = path.parent
    job = sections["job"]
    name = job.get("name", "job")
    if "name" in job and not _SLUG.match(name):
        p.add("job.name", f"{name!r} must be letters, digits, '-', '_' or '.' (it names files)")
        name = "job"
    elif len(name) > MAX_NAME:
        p.add("job.name", f"is {len(name)} characters long; at most {MAX_NAME} (it names the "
                          "session file and the exported files)")
        name = "job"
    output_dir = _output_dir(base, job.get("output_dir", f"output/{name}"), p)

    region, region_source = _region(sections["region"], doc.get("region"), base, p)
    if region is not None:
        where = "region.file" if "file" in sections["region"] else "region.bbox"
        _warn_far_from_named_place(region.bounds, where, region_source, (name, path.stem), p)
    grid = _grid(sections["grid"], p)
    time = _time(sections["time"], p) if "time" in doc else None
    recipe = _recipe(doc.get("recipe"), sections["recipe"], rejected, p, path.resolve().parent)
    export = _export(sections["export"], name, recipe, p)
    limits = _limits(sections["limits"], p)
    backend = _backend(sections["backend"], "backend" in doc, p)
    batches = _batches(sections["batches"], doc.get("batches"), time, "time" in doc, recipe, p)
    if batches is not None:
        _batch_prefix(batches, export.prefix, name, p)
    if export.route == DIRECT and recipe is not None and not p.problems:
        why = direct_refusal_of(export, recipe)
        if why is not None:
            p.add("export.route", f"\"direct\" cannot serve this job: {why}; use \"auto\""
                                  " (direct where it can) or \"batch\"")
    if grid and grid.align and _same_crs(grid.crs, export.crs) is False:
        p.add("grid.align", f"needs grid.crs ({grid.crs}) to equal export.crs ({export.crs}): "
                            "tiles can only share the export's pixel grid in its own CRS")

    if p.problems:
        raise SpecError(p.problems)
    assert region is not None and grid is not None and recipe is not None
    assert output_dir is not None
    spec = JobSpec(path, text, name, output_dir, region, region_source, grid, time, recipe,
                   export, limits, backend, tuple(p.warnings), batches)
    _check_units(spec)
    return spec


def _check_units(spec: JobSpec) -> None:
    """Counting units needs the validated grid, so it is the last check. The unit cap bounds
    the work: make_tiles stops as soon as the tiles exceed it, often before building any."""
    from core.batches import count_slices
    from core.grid import GridError, TooManyTiles, make_tiles, tile_pixels
    from core.periods import periods
    from core.recipes import bytes_per_pixel

    p, size = _Problems(spec.path, spec.text), spec.grid.size
    n_periods = count_slices(periods(spec.time), spec.batches)  # x batches, if any
    if n_periods > MAX_UNITS:  # only batches make this many: periods are fewer than days
        assert spec.batches is not None
        key = "batches.count" if spec.batches.by == "count" else "batches.step"
        p.add(key, f"makes {n_periods:,} batches in all, more than {MAX_UNITS:,} units even on "
                   "one tile; use fewer batches")
        raise SpecError(p.problems)
    try:
        tiles = make_tiles(spec, limit=MAX_UNITS // n_periods)
    except TooManyTiles as exc:
        units = exc.at_least * n_periods
        count = f"at least {math.ceil(units):,}" if math.isfinite(units) else "uncountably many"
        fewer = " or fewer batches" if spec.batches else ""
        p.add("grid.size", f"{size:g} gives {count} units, more than {MAX_UNITS:,}; use larger "
                           f"tiles or a longer time step{fewer}")
        raise SpecError(p.problems) from None
    except GridError as exc:
        p.add(exc.key, str(exc))
        raise SpecError(p.problems) from None
    if len(tiles) == 0:
        p.add("grid.size", f"{size:g} gives no tile that meets the region")
        raise SpecError(p.problems)
    # Each unit's estimate is stored as a 64-bit integer.
    largest = float(tile_pixels(tiles, spec.export.scale).max()) * bytes_per_pixel(spec)
    if not largest <= MAX_INT64:
        p.add("export.scale", f"{spec.export.scale:g} m makes a tile of ~{largest:.1e} bytes, "
                              "too many to count; use a larger scale or smaller tiles")
        raise SpecError(p.problems)


def _output_dir(base: Path, value: str, p: _Problems) -> Path | None:
    long = [part for part in Path(value).parts if len(part.encode()) > 255]
    if long:
        p.add("job.output_dir", f"a folder name is longer than 255 bytes: {long[0][:40]!r}…")
        return None
    try:
        return (base / value).resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        p.add("job.output_dir", f"{value!r} cannot be resolved: {exc}")
        return None


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
        west, south, east, north = bounds = tuple(float(v) for v in bbox)
        off_globe = globe_problems(west, south, east, north)
        for problem in off_globe:
            p.add("region.bbox", problem + swap_hint(bounds))
        ok = not off_globe
        if west >= east:
            p.add("region.bbox", f"west ({west:g}) must be less than east ({east:g})")
            ok = False
        if south >= north:
            p.add("region.bbox", f"south ({south:g}) must be less than north ({north:g})")
            ok = False
        if ok:
            _warn_polar(bounds, "region.bbox", box_text(bounds), p)
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
    _warn_polar(geometry.bounds, "region.file", repr(file), p)
    return geometry, file


def _warn_polar(bounds: tuple[float, float, float, float], key: str, what: str,
                p: _Problems) -> None:
    where = polar_swap(bounds)
    if where:
        p.warn(key, f"{what} lies wholly {where}; if it was written in (lat, lon) order, the box "
                    f"meant is {box_text(as_lat_lon(bounds))} (west, south, east, north)")


def _warn_far_from_named_place(bounds: tuple[float, float, float, float], key: str,
                               source: str, names: tuple[str, ...], p: _Problems) -> None:
    """A region that misses the place the job is named after ("kenya-ndvi") while its
    (lat, lon) reading covers it was most likely typed latitude first."""
    meant = as_lat_lon(bounds)
    if globe_problems(*meant) or polar_swap(bounds):  # no swap, or already said
        return
    for place, box in places_named(*names):
        if not overlaps(bounds, box) and overlaps(meant, box):
            what = box_text(bounds) if key == "region.bbox" else repr(source)
            p.warn(key, f"{what} lies far from {place} ({extent_text(box)}), which the job's "
                        f"name names; if it was written in (lat, lon) order, the box meant is "
                        f"{box_text(meant)} (west, south, east, north)")
            return


def _same_crs(a: str, b: str) -> bool | None:
    try:
        return bool(CRS.from_user_input(a).equals(CRS.from_user_input(b), ignore_axis_order=True))
    except CRSError:
        return None  # already reported


def _crs(value: str, key: str, p: _Problems) -> CRS | None:
    try:
        crs = CRS.from_user_input(value)
    except CRSError:
        p.add(key, f"{value!r} is not a known CRS; use an EPSG code such as \"EPSG:32610\"")
        return None
    if not (crs.is_geographic or crs.is_projected) or len(crs.axis_info) != 2:
        p.add(key, f"{value!r} is a {crs.type_name}; use a 2D geographic or projected CRS "
                   "such as \"EPSG:4326\" or \"EPSG:32610\"")
        return None
    try:
        Transformer.from_crs(CRS.from_epsg(4326), crs, always_xy=True)
    except ProjError:
        p.add(key, f"{value!r} cannot be reached from EPSG:4326 (longitude, latitude)")
        return None
    return crs


def _grid(sec: dict[str, Any], p: _Problems) -> GridSpec | None:
    if "size" not in sec:
        return None
    size = float(sec["size"])
    crs_text = sec.get("crs", "EPSG:4326")
    crs = _crs(crs_text, "grid.crs", p)
    ok = crs is not None
    if not size > 0:
        p.add("grid.size", f"must be > 0, got {size:g}")
        ok = False
    elif crs is not None and crs.is_geographic and size > MAX_TILE_DEGREES:
        p.add("grid.size", f"{size:g} degrees is larger than the globe allows "
                           f"(at most {MAX_TILE_DEGREES:g})")
        ok = False
    elif crs is not None and crs.is_projected and size > MAX_TILE_METRES:
        p.add("grid.size", f"{size:g} metres is larger than the Earth's circumference")
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
        day = value.date()
    elif isinstance(value, dt.date):
        day = value
    else:
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            p.add(key, f"{value!r} is not a date (YYYY-MM-DD)")
            return None
    if not FIRST_DAY <= day <= LAST_DAY:
        p.add(key, f"{day} is outside {FIRST_DAY} to {LAST_DAY}, the dates Earth Engine's "
                   "data can have")
        return None
    return day


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
            if step.count > MAX_STEP[step.unit]:
                p.add("time.step", f"{sec['step']!r} is longer than 1000 years")
                step = None
    if start and end and end <= start:
        p.add("time.end", f"{end} is not after time.start {start} (end is exclusive)")
        return None
    folders = sec.get("period_folders", True)
    return TimeSpec(start, end, step, folders) if start and end else None


def _recipe(raw: Any, sec: dict[str, Any], rejected: set[str], p: _Problems,
            job_dir: Path) -> RecipeSpec | None:
    if not isinstance(raw, dict) or "name" not in sec:
        return None
    name = sec["name"]
    if name not in RECIPES:
        p.add("recipe.name", f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
        return None
    params, problems = validate_params(
        name, {k: v for k, v in raw.items() if k != "name" and f"recipe.{k}" not in rejected},
        job_dir)
    for key, problem in problems:
        p.add(f"recipe.{key}", problem)
    return RecipeSpec(name, params)


_DESTINATIONS = {"drive": "folder", "asset": "asset_folder", "gcs": "bucket"}


def _export(sec: dict[str, Any], job: str, recipe: RecipeSpec | None,
            p: _Problems) -> ExportSpec:
    defaults = ExportSpec()
    dest = sec.get("destination", "drive")
    if dest not in _DESTINATIONS:
        p.add("export.destination", f"{dest!r} is not one of drive, asset, gcs")
    elif dest != "drive" and _DESTINATIONS[dest] not in sec:
        p.add(f"export.{_DESTINATIONS[dest]}", f"is required when destination = {dest!r}")
    scale = float(sec.get("scale", defaults.scale))
    if scale < MIN_SCALE:
        p.add("export.scale", f"must be at least {MIN_SCALE:g} metres, got {scale:g}")
    crs = sec.get("crs", defaults.crs)
    _crs(crs, "export.crs", p)
    max_pixels = int(sec.get("max_pixels", defaults.max_pixels))
    if not 0 < max_pixels <= MAX_INT64:
        p.add("export.max_pixels", f"must be between 1 and {MAX_INT64:,}")
    dims = sec.get("file_dimensions")
    if dims is not None:
        values = dims if isinstance(dims, list) else [dims]
        if not (1 <= len(values) <= 2 and all(isinstance(v, int) and v > 0 and v % 256 == 0
                                             for v in values)):
            p.add("export.file_dimensions", "must be a positive multiple of 256, or [w, h] of them")
    prefix = sec.get("prefix", defaults.prefix)
    _prefix(prefix, job, p)
    file_format = sec.get("file_format", defaults.file_format)
    if recipe is not None:
        kind = RECIPES[recipe.name].output(recipe.params)
        known = FILE_FORMATS.get(kind, ())
        if file_format.upper() not in (f.upper() for f in known):
            p.add("export.file_format", f"{file_format!r} is not one of {', '.join(known)} "
                                        f"(for {kind} exports)")
    priority = sec.get("priority")
    if priority is not None and not 0 <= priority <= 9999:
        p.add("export.priority", f"must be from 0 to 9999 (EE's default is 100), got {priority}")
    tag = sec.get("workload_tag") or default_workload_tag(job)
    if not WORKLOAD_TAG.fullmatch(tag):
        p.add("export.workload_tag", f"{tag!r} must be 1 to 63 letters, digits, '-', '_' or "
                                     "'.', starting and ending with a letter or digit")
    route = sec.get("route", defaults.route)
    if route not in ROUTES:
        p.add("export.route", f"{route!r} is not one of {', '.join(ROUTES)}")
    return ExportSpec(dest, sec.get("folder", defaults.folder), sec.get("asset_folder"),
                      sec.get("bucket"), scale, crs, file_format, max_pixels, dims, prefix,
                      priority, tag, route)


def _prefix(prefix: str, job: str, p: _Problems) -> None:
    """The prefix is formatted with job= and unit= for every export: it must be a well-formed
    template of those two alone, and make a file name that Drive and the disk both take."""
    key = "export.prefix"
    try:
        fields = [(f, conv, fmt) for _, f, fmt, conv in string.Formatter().parse(prefix)
                  if f is not None]
    except ValueError as exc:
        p.add(key, f"{prefix!r} is not a well-formed template ({exc}); write {{job}} and "
                   "{unit}, and no other braces")
        return
    for f, conv, fmt in fields:
        if f not in ("job", "unit") or conv or fmt:
            text = "{" + f + (f"!{conv}" if conv else "") + (f":{fmt}" if fmt else "") + "}"
            p.add(key, f"{text} is not a placeholder; use only {{job}} and {{unit}}")
            return
    if "unit" not in (f for f, _, _ in fields):
        p.add(key, "must contain {unit} so that every unit's files differ")
        return
    sample = prefix.format(job=job, unit="r1c2_20230601")
    if not _SLUG.match(sample):
        p.add(key, f"gives file names like {sample!r}; they must be letters, digits, '-', '_' "
                   "or '.', starting with a letter or digit")
    elif len(prefix.format(job=job, unit="")) + UNIT_ID_MAX > MAX_FILE_NAME:
        p.add(key, f"gives file names of up to {len(sample) - 13 + UNIT_ID_MAX} characters; "
                   f"at most {MAX_FILE_NAME}")


def _limits(sec: dict[str, Any], p: _Problems) -> LimitsSpec:
    d = LimitsSpec()
    budget = d.drive_budget
    if "drive_budget" in sec:
        try:
            budget = parse_size(sec["drive_budget"])
        except ValueError as exc:
            p.add("limits.drive_budget", str(exc))
    values = {}
    for key, bound in BOUNDS.items():
        value = sec.get(key, getattr(d, key))
        if not bound.holds(value):
            p.add(f"limits.{key}", f"must be between {bound.low} and {bound.high}, got {value}")
        values[key] = value
    poll = float(sec.get("poll_seconds", d.poll_seconds))
    if not 0 < poll <= MAX_POLL:
        p.add("limits.poll_seconds", f"must be > 0 and at most {MAX_POLL:g}, got {poll:g}")
    if budget <= 0:
        p.add("limits.drive_budget", "must be more than 0 bytes")
    grace = float(sec.get("listing_grace_minutes", d.listing_grace_minutes))
    if not 0 <= grace <= MAX_GRACE_MINUTES:
        p.add("limits.listing_grace_minutes",
              f"must be from 0 to {MAX_GRACE_MINUTES:g} minutes, got {grace:g}")
    eecu: dict[str, float | None] = {}
    for key in ("eecu_hours", "eecu_tier_hours"):
        value = sec.get(key)
        if value is not None and not 0 < float(value) <= MAX_EECU_HOURS:
            p.add(f"limits.{key}", f"must be more than 0 EECU-hours and at most "
                                   f"{MAX_EECU_HOURS:g}, got {value!r}")
        eecu[key] = float(value) if value is not None else None
    straggler = float(sec.get("straggler_factor", d.straggler_factor))
    if not (straggler == 0 or 1.5 <= straggler <= MAX_STRAGGLER):
        p.add("limits.straggler_factor", f"must be 0 (off) or from 1.5 to {MAX_STRAGGLER:g}, "
                                         f"got {straggler:g}")
    return LimitsSpec(values["max_tasks"], budget, values["max_attempts"], values["split_depth"],
                      poll, values["download_workers"], grace, eecu["eecu_hours"],
                      eecu["eecu_tier_hours"], bool(sec.get("pause_when_restricted", False)),
                      straggler, values["direct_requests"])


def _backend(sec: dict[str, Any], given: bool, p: _Problems) -> BackendSpec:
    kind = sec.get("kind", "emulator")
    if not given:
        # Still plannable (and a session can be opened): only running needs a backend.
        p.warn("[backend]", "is missing: the job can be planned but not run; add kind = "
                            "\"earthengine\" with project, or kind = \"emulator\" with url")
    elif kind == "earthengine":
        if "project" not in sec:
            p.add("backend.project", "is required when kind = \"earthengine\" (your Cloud project)")
    elif kind == "emulator":
        url = sec.get("url")
        if url is None:
            p.add("backend.url", "is required when kind = \"emulator\": start one with "
                                 "`eebatch emulator --port 8787` and set url = "
                                 "\"http://127.0.0.1:8787\"")
        elif not re.match(r"^http://(127\.0\.0\.1|localhost)(:\d+)?/?$", url):
            p.add("backend.url", f"{url!r} must be http://127.0.0.1:PORT (the emulator is local)")
    else:
        p.add("backend.kind", f"{kind!r} is not \"earthengine\" or \"emulator\"")
    return BackendSpec(kind, sec.get("project"), sec.get("url"))


def _batches(sec: dict[str, Any], raw: Any, time: TimeSpec | None, has_time: bool,
             recipe: RecipeSpec | None, p: _Problems) -> BatchSpec | None:
    """[batches]: by = "count" with size and count (or images), or by = "date" with step.
    Planning never asks EE how big the collection is: the job file says it."""
    if not isinstance(raw, dict) or "by" not in sec:
        return None  # no [batches], or its by is missing or of the wrong type: said already
    by = sec["by"]
    if by not in BY:
        p.add("batches.by", f"{by!r} is not \"count\" (so many images a batch) or \"date\" "
                            "(a step of days or months)")
        return None
    other = "date" if by == "count" else "count"
    for key in ("step",) if by == "count" else ("size", "count", "images"):
        if key in raw:
            p.add(f"batches.{key}", f"only applies with by = \"{other}\"")
    if by == "count":
        return _count_batches(sec, raw, recipe, p)
    return _date_batches(sec, raw, time, has_time, p)


def _count_batches(sec: dict[str, Any], raw: dict[str, Any], recipe: RecipeSpec | None,
                   p: _Problems) -> BatchSpec | None:
    if recipe is not None and not RECIPES[recipe.name].count_batches:
        cutters = ", ".join(n for n, r in RECIPES.items() if r.count_batches)
        p.add("batches.by", f"recipe {recipe.name!r} does not cut its collection by count "
                            f"(recipes that do: {cutters}); by = \"date\" works with every "
                            "recipe")
    size, count, images = sec.get("size"), sec.get("count"), sec.get("images")
    if "size" not in raw:
        p.add("batches.size", "is required with by = \"count\": how many images a batch holds")
    elif size is not None and not 1 <= size <= MAX_SIZE:
        p.add("batches.size", f"must be from 1 to {MAX_SIZE:,} images, got {size:,}")
        size = None
    if "count" in raw and "images" in raw:
        p.add("batches.images", "give count (how many batches) or images (how many images the "
                                "collection holds), not both")
        return None
    if "count" not in raw and "images" not in raw:
        p.add("batches.count", "is required with by = \"count\": how many batches (or give "
                               "images = the collection's size, and the count is worked out; "
                               "planning never asks Earth Engine)")
        return None
    if count is not None and not 1 <= count <= MAX_UNITS:
        p.add("batches.count", f"must be from 1 to {MAX_UNITS:,} batches, got {count:,}")
        return None
    if images is not None and not 1 <= images <= MAX_EE_INT:
        p.add("batches.images", f"must be from 1 to {MAX_EE_INT:,} images, got {images:,}")
        return None
    if size is None or (count is None and images is None):
        return None  # said already
    if images is not None:
        count = -(-images // size)
        if count > MAX_UNITS:
            p.add("batches.images", f"{images:,} images in batches of {size:,} make {count:,} "
                                    f"batches, more than {MAX_UNITS:,}; use larger batches")
            return None
    assert count is not None
    if count * size > MAX_EE_INT:
        p.add("batches.count", f"{count:,} batches of {size:,} images reach image "
                               f"{count * size:,}, past what EE's toList offsets can "
                               f"({MAX_EE_INT:,})")
        return None
    return BatchSpec("count", size=size, count=count, images=images)


def _date_batches(sec: dict[str, Any], raw: dict[str, Any], time: TimeSpec | None,
                  has_time: bool, p: _Problems) -> BatchSpec | None:
    if not has_time:
        p.add("batches.by", "\"date\" needs a [time] section: its dates are what the batches "
                            "cut")
    if "step" not in raw:
        p.add("batches.step", "is required with by = \"date\", e.g. \"1 month\" or "
                              "\"16 days\"")
        return None
    if "step" not in sec:
        return None  # of the wrong type: said already
    text = sec["step"]
    m = _STEP.match(text)
    if not m or int(m.group(1)) == 0:
        p.add("batches.step", f"{text!r} is not a step such as \"16 days\" or \"1 month\"")
        return None
    n, unit = int(m.group(1)), m.group(2).rstrip("s")
    step = Step(n * 12, "months") if unit == "year" else Step(n, unit + "s")
    if step.count > MAX_STEP[step.unit]:
        p.add("batches.step", f"{text!r} is longer than 1000 years")
        return None
    if time is None:
        return None
    from core.periods import periods

    if all(sum(1 for _ in date_cuts(q.start, q.end, step)) == 1 for q in periods(time)
           if q.start and q.end):
        span = f"time.step = {str(time.step)!r}" if time.step else "the [time] span"
        p.add("batches.step", f"{text!r} is not shorter than {span}: each period would be one "
                              "batch, the very units of a job without [batches]; give a "
                              "shorter step")
        return None
    return BatchSpec("date", step=step)


def _batch_prefix(batches: BatchSpec, prefix: str, job: str, p: _Problems) -> None:
    """A batch's unit id is longer by `_bK`: the file names must still fit."""
    if any(problem.key == "export.prefix" for problem in p.problems):
        return  # the prefix is wrong already
    extra = len(f"_b{(batches.count or MAX_UNITS) - 1}")
    longest = len(prefix.format(job=job, unit="")) + UNIT_ID_MAX + extra
    if longest > MAX_FILE_NAME:
        p.add("export.prefix", f"gives file names of up to {longest} characters with the "
                               f"batch in the unit id; at most {MAX_FILE_NAME}")
