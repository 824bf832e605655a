"""Direct pixels: EE's interactive route (computePixels, and getDownloadURL's thumbnails).

`projects.image.computePixels` answers the image's pixels on the request's grid (dimensions,
affineTransform, crsCode) as the raw bytes of a GeoTIFF; `thumbnails.create` (what
ee.data.getDownloadId sends) keeps a request whose `:getPixels` answers a GeoTIFF or a zip of
them on the grid the expression's own region/scale/crs give, as an export's. Both read the
synthetic world exactly as exports do (outputs.render_window), so a request on an export's grid
gets the export's pixels, bit for bit.

A grid on an export's lattice gets the export's pixels: when the request's origin lies a whole
number of pixels from the CRS origin (as every grid an export with `scale` gets), the world is
read on the CRS-origin lattice, as that export's; any other origin is a lattice of its own (as
an export with crsTransform and dimensions).

Limits, as EE gives them (texts from users' reports, field.md): computePixels at most 32,768
pixels a side and 48 MB (50,331,648 bytes) of uncompressed pixels; getDownloadURL 10,000 pixels
and 32 MB; 1,024 bands. The work model (DirectModel): at most `direct_concurrency` requests in
flight per project (one more: 429 "Too many concurrent requests."), each paced on the simulated
clock for latency + work / rate, failing "User memory limit exceeded." early or "Computation
timed out." at the interactive limit (both 400, as EE answers them), and charged EECU for its
computing time, visible in GET /_emulator/state under ee.direct.
"""

from __future__ import annotations

import io
import math
import threading
import zipfile
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.emulator import outputs
from core.emulator.batch import EECU_PER_SECOND, MEMORY_MSG, TIMEOUT_MSG
from core.emulator.compute import Unsupported
from core.emulator.config import EmulatorConfig
from core.emulator.expression import ExpressionError, ImageSpec, analyze_image
from core.emulator.outputs import Grid, Render

MAX_REQUEST_BYTES = 48 * 1024 * 1024  # computePixels: 50,331,648 bytes
MAX_GRID_SIDE = 32_768
DOWNLOAD_MAX_BYTES = 32 * 1024 * 1024  # getDownloadURL: 33,554,432 bytes
DOWNLOAD_MAX_SIDE = 10_000
MAX_BANDS = 1024
CONCURRENCY_MSG = "Too many concurrent requests."
THUMBNAILS_KEPT = 10_000  # download ids remembered (EE's expire after hours)
# ComputePixelsRequest's fields (proto JSON takes snake_case too); anything else is refused as
# Google's JSON parser refuses it.
COMPUTE_FIELDS = {"expression", "fileFormat", "grid", "bandIds", "visualizationOptions",
                  "workloadTag"}
THUMBNAIL_FIELDS = {"expression", "fileFormat", "bandIds", "filenamePrefix", "grid",
                    "visualizationOptions", "workloadTag", "name"}
GRID_FIELDS = {"dimensions", "affineTransform", "crsCode", "crsWkt"}
DIMENSION_FIELDS = {"width", "height"}
AFFINE_FIELDS = {"scaleX", "shearX", "translateX", "shearY", "scaleY", "translateY"}
# ImageFileFormat's values; the emulator writes the GeoTIFF ones.
FILE_FORMATS = {"IMAGE_FILE_FORMAT_UNSPECIFIED", "JPEG", "PNG", "AUTO_JPEG_PNG", "NPY",
                "GEO_TIFF", "TF_RECORD_IMAGE", "ZIPPED_GEO_TIFF", "ZIPPED_GEO_TIFF_PER_BAND"}
COMPUTE_FORMATS = ("GEO_TIFF",)
DOWNLOAD_FORMATS = ("GEO_TIFF", "ZIPPED_GEO_TIFF", "ZIPPED_GEO_TIFF_PER_BAND")


class PixelsError(Exception):
    """A request EE refuses or fails: the HTTP status and EE's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class PixelJob:
    """One direct request, decoded: what to compute, on which grid, in which file."""

    spec: ImageSpec
    grid: Grid
    bands: tuple[str, ...]  # output bands, in order
    indices: tuple[int, ...]  # their positions among the image's bands
    dtype: str
    file_format: str
    workload_tag: str = ""
    name: str = "download"  # file names inside a zip

    @property
    def nbytes(self) -> int:
        return outputs.image_bytes(self.grid, len(self.bands), self.dtype)


# -- decoding ---------------------------------------------------------------------------------


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _fields(obj: Any, allowed: set[str], where: str) -> dict[str, Any]:
    """A JSON message's fields, snake_case keys read as camelCase; an unknown name is refused
    with the text of Google's JSON parser."""
    if not isinstance(obj, dict):
        at = f" at '{where}'" if where else ""
        raise PixelsError(400, f"Invalid JSON payload received. Expected an object{at}.")
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = _camel(str(key))
        if name not in allowed:
            at = f" at '{where}'" if where else ""
            raise PixelsError(
                400, f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.'
            )
        out[name] = value
    return out


def _int32(value: Any, where: str) -> int:
    """An int32 as proto JSON takes one: a number without a fraction, or its string."""
    whole = (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and value.strip().lstrip("-").isdigit())
    if not whole:
        raise PixelsError(400, f"Invalid value at '{where}' (TYPE_INT32), {value!r}")
    return int(value)


def _double(value: Any, where: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PixelsError(400, f"Invalid value at '{where}' (TYPE_DOUBLE), {value!r}")
    return float(value)


def parse_grid(raw: Any) -> Grid:
    """A PixelGrid (dimensions, affineTransform, crsCode) → the emulator's Grid, on the lattice
    an export of the same pixels uses (module doc)."""
    grid = _fields(raw, GRID_FIELDS, "grid")
    if "crsWkt" in grid:
        raise PixelsError(400, "The emulator supports grid.crsCode (EPSG codes), not crsWkt.")
    missing = [k for k in ("dimensions", "affineTransform", "crsCode") if k not in grid]
    if missing:
        raise PixelsError(
            400, f"Invalid PixelGrid: grid.{missing[0]} is required (an image computed by the "
            "emulator has no native grid)."
        )
    dims = _fields(grid["dimensions"], DIMENSION_FIELDS, "grid.dimensions")
    width = _int32(dims.get("width"), "grid.dimensions.width")
    height = _int32(dims.get("height"), "grid.dimensions.height")
    if width <= 0 or height <= 0:
        raise PixelsError(400, f"Pixel grid dimensions ({width}x{height}) must be positive.")
    t = _fields(grid["affineTransform"], AFFINE_FIELDS, "grid.affineTransform")
    v = {k: _double(t.get(k, 0.0), f"grid.affineTransform.{k}") for k in AFFINE_FIELDS}
    if v["shearX"] or v["shearY"]:
        raise PixelsError(400, "The emulator supports north-up grids only (shearX = shearY = 0).")
    if v["scaleX"] <= 0 or v["scaleY"] >= 0:
        raise PixelsError(
            400, "Invalid PixelGrid: affineTransform.scaleX must be positive and scaleY negative "
            "(north up)."
        )
    crs_code = grid["crsCode"]
    if not isinstance(crs_code, str) or not crs_code:
        raise PixelsError(400, f"Invalid value at 'grid.crs_code' (TYPE_STRING), {crs_code!r}")
    try:
        crs = outputs.resolve_crs(crs_code)
    except Exception:
        raise PixelsError(400, f"Invalid CRS: '{crs_code}'.") from None
    epsg = crs.to_epsg()
    if epsg is None:
        raise PixelsError(400, f"The emulator supports EPSG CRSs only, not {crs_code}.")
    dx, dy, tx, ty = v["scaleX"], -v["scaleY"], v["translateX"], v["translateY"]
    c, r = tx / dx, -ty / dy
    if abs(c - round(c)) < 1e-6 and abs(r - round(r)) < 1e-6:
        ox = oy = 0.0  # the CRS-origin lattice, as an export with `scale`
        c0, r0 = round(c), round(r)
    else:
        ox, oy, c0, r0 = tx, ty, 0, 0
    return Grid(f"EPSG:{epsg}", epsg, crs.is_geographic, tx, ty, dx, dy, width, height,
                ox, oy, c0, r0)


def _file_format(value: Any, allowed: tuple[str, ...]) -> str:
    fmt = str(value or "").upper()
    if fmt not in FILE_FORMATS:
        raise PixelsError(
            400, "Invalid value at 'file_format' (type.googleapis.com/google.earthengine.v1."
            f'ImageFileFormat), "{value}"'
        )
    if fmt not in allowed:
        raise PixelsError(
            400, f"fileFormat {fmt} is not supported by the emulator here "
            f"(supported: {', '.join(allowed)})."
        )
    return fmt


def _bands(spec: ImageSpec, band_ids: Any) -> tuple[tuple[str, ...], tuple[int, ...]]:
    if band_ids in (None, []):
        return tuple(spec.bands), tuple(range(len(spec.bands)))
    if not isinstance(band_ids, list) or not all(isinstance(b, str) for b in band_ids):
        raise PixelsError(400, f"Invalid value at 'band_ids' (TYPE_STRING), {band_ids!r}")
    indices = []
    for band in band_ids:
        if band not in spec.bands:
            raise PixelsError(
                400, f"Image.select: Band pattern '{band}' did not match any bands. "
                f"Available bands: [{', '.join(spec.bands)}]"
            )
        indices.append(spec.bands.index(band))
    return tuple(band_ids), tuple(indices)


def _analyze(expression: Any) -> ImageSpec:
    if not isinstance(expression, dict):
        raise PixelsError(400, "Invalid request: expression is required.")
    try:
        return analyze_image(expression)
    except (ExpressionError, ValueError, KeyError, TypeError) as exc:
        raise PixelsError(400, str(exc).strip("'\"")) from None


def check_size(grid: Grid, bands: int, dtype: str, max_side: int, max_bytes: int) -> None:
    """EE's per-request limits: pixels a side, bands, then uncompressed bytes."""
    if grid.width > max_side or grid.height > max_side:
        raise PixelsError(
            400, f"Pixel grid dimensions ({grid.width}x{grid.height}) must be less than or "
            f"equal to {max_side}."
        )
    if bands > MAX_BANDS:
        raise PixelsError(
            400, f"Number of bands ({bands}) must be less than or equal to {MAX_BANDS}."
        )
    nbytes = outputs.image_bytes(grid, bands, dtype)
    if nbytes > max_bytes:
        raise PixelsError(
            400, f"Total request size ({nbytes} bytes) must be less than or equal to "
            f"{max_bytes} bytes."
        )


def _tag(value: Any) -> str:
    return "" if value in (None, "") else str(value)


def parse_compute_pixels(body: Any) -> PixelJob:
    """A ComputePixelsRequest → the job; PixelsError (400) where EE refuses it."""
    req = _fields(body, COMPUTE_FIELDS, "")
    if req.get("visualizationOptions"):
        raise PixelsError(400, "The emulator does not support visualizationOptions.")
    fmt = _file_format(req.get("fileFormat"), COMPUTE_FORMATS)
    spec = _analyze(req.get("expression"))
    if "grid" in req:
        grid = parse_grid(req["grid"])
    elif spec.region is not None:
        grid = _expression_grid(spec)  # a clipped image: its region on its projection
    else:
        raise PixelsError(
            400, "Unable to compute pixels of an unbounded image: give grid.dimensions, "
            "grid.affineTransform and grid.crsCode."
        )
    bands, indices = _bands(spec, req.get("bandIds"))
    check_size(grid, len(bands), spec.dtype, MAX_GRID_SIDE, MAX_REQUEST_BYTES)
    return PixelJob(spec, grid, bands, indices, spec.dtype, fmt, _tag(req.get("workloadTag")))


def parse_thumbnail(body: Any) -> PixelJob:
    """What getDownloadId sends to thumbnails.create → the job its :getPixels computes later;
    the grid is the expression's (region, scale, crs), as an export's."""
    req = _fields(body, THUMBNAIL_FIELDS, "")
    if req.get("visualizationOptions"):
        raise PixelsError(400, "The emulator does not support visualizationOptions.")
    fmt = _file_format(req.get("fileFormat"), DOWNLOAD_FORMATS)
    spec = _analyze(req.get("expression"))
    if "grid" in req:
        grid = parse_grid(req["grid"])
    elif spec.region is None:
        raise PixelsError(400, "Unable to download an unbounded image: give a region.")
    else:
        grid = _expression_grid(spec)
    bands, indices = _bands(spec, req.get("bandIds"))
    check_size(grid, len(bands), spec.dtype, DOWNLOAD_MAX_SIDE, DOWNLOAD_MAX_BYTES)
    name = str(req.get("filenamePrefix") or req.get("name") or "download")
    return PixelJob(spec, grid, bands, indices, spec.dtype, fmt,
                    _tag(req.get("workloadTag")), name)


def _expression_grid(spec: ImageSpec) -> Grid:
    try:
        return outputs.image_grid(spec)
    except ValueError as exc:
        raise PixelsError(400, str(exc)) from None


# -- the pixels -------------------------------------------------------------------------------


def band_render(evaluator: Any, job: PixelJob) -> Render:
    """Pixels → the job's bands, computed by its image's expression (the world's bands of
    those names where the emulator does not compute the expression, as exports do)."""
    try:
        img = evaluator.image(job.spec.core)
    except Unsupported:
        return outputs.named_render(list(job.bands))
    return lambda px: [img.band(px, i) for i in job.indices]


def _geotiff(grid: Grid, data: np.ndarray) -> bytes:
    """A GeoTIFF as the emulator's exports write it (tiled, band-planar, georeferenced)."""
    import tifffile

    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tw:
        tw.write(
            data if data.shape[0] > 1 else data[0],
            tile=(outputs.TILE, outputs.TILE),
            photometric="minisblack",
            planarconfig="separate" if data.shape[0] > 1 else None,
            metadata=None,
            software=False,
            extratags=outputs.geotiff_tags(grid),
        )
    return buf.getvalue()


def encode(job: PixelJob, render: Render, seed: int) -> tuple[bytes, str]:
    """The job's file: (bytes, content type). The pixels are the world's, as an export's."""
    grid, dtype = job.grid, np.dtype(job.dtype)
    data = outputs.render_window(grid, len(job.bands), dtype, render,
                                 (0, 0, grid.height, grid.width), seed)
    if job.file_format == "GEO_TIFF":
        return _geotiff(grid, data), "image/tiff"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if job.file_format == "ZIPPED_GEO_TIFF":
            zf.writestr(f"{job.name}.tif", _geotiff(grid, data))
        else:  # ZIPPED_GEO_TIFF_PER_BAND
            for b, band in enumerate(job.bands):
                zf.writestr(f"{job.name}.{band}.tif", _geotiff(grid, data[b : b + 1]))
    return buf.getvalue(), "application/zip"


# -- the work model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How one request runs, in simulated seconds from its arrival."""

    seconds: float  # until the answer (or the failure)
    eecu: float  # EECU-seconds charged
    failure: str | None  # EE's message, or None


class DirectModel:
    """EE's interactive route as a project meets it: the concurrency cap, the time each request
    takes on the simulated clock, its failures and its EECU; the counts for the admin state."""

    def __init__(self, config: EmulatorConfig, clock: Any) -> None:
        self.config = config
        self.clock = clock
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.in_flight: Counter[str] = Counter()  # per project
        self.peak = 0  # the most in flight at once in one project
        self.requests = 0  # admitted (past the 400s and the 429s)
        self.succeeded = 0
        self.failed: Counter[str] = Counter()  # by EE's message
        self.rejected: Counter[str] = Counter()  # refused at arrival, by status
        self.eecu = 0.0
        self.eecu_by_tag: Counter[str] = Counter()
        self.pixels = 0  # pixel-bands answered
        self.bytes = 0
        # getDownloadId's requests, by thumbnail id, until their getPixels (newest kept).
        self.thumbnails: OrderedDict[str, PixelJob] = OrderedDict()

    def stop(self) -> None:
        self._stop.set()

    def memory_limit(self) -> int:
        limit = self.config.direct_memory_limit_pixels
        return limit if limit is not None else self.config.memory_limit_pixels // 16

    def plan(self, job: PixelJob) -> Plan:
        """Latency + work / rate, work = model pixels x content x bands; over the memory limit
        it fails a quarter into its run (EE gives up early), over the time limit at it."""
        cfg = self.config
        work_pixels = outputs.model_pixels(job.grid) * outputs.content_factor(job.grid, cfg)
        compute = work_pixels * len(job.bands) / cfg.direct_pixel_rate
        latency = cfg.direct_latency_seconds
        limit = cfg.direct_timeout_seconds
        if work_pixels > self.memory_limit():
            spent = min(compute * 0.25, max(limit - latency, 0.0))
            return Plan(latency + spent, spent * EECU_PER_SECOND, MEMORY_MSG)
        if latency + compute > limit:
            spent = max(limit - latency, 0.0)
            return Plan(limit, spent * EECU_PER_SECOND, TIMEOUT_MSG)
        return Plan(latency + compute, compute * EECU_PER_SECOND, None)

    @contextmanager
    def slot(self, project: str) -> Iterator[None]:
        """One of the project's concurrent requests, for as long as it runs; 429 beyond."""
        with self.lock:
            if self.in_flight[project] >= self.config.direct_concurrency:
                self.rejected["429"] += 1
                raise PixelsError(429, CONCURRENCY_MSG)
            self.in_flight[project] += 1
            self.requests += 1
            self.peak = max(self.peak, self.in_flight[project])
        try:
            yield
        finally:
            with self.lock:
                self.in_flight[project] -= 1

    def refused(self, status: int) -> None:
        with self.lock:
            self.rejected[str(status)] += 1

    def run(self, project: str, job: PixelJob, compute: Callable[[], tuple[bytes, str]]
            ) -> tuple[bytes, str]:
        """Serve one request: take a slot (429 if none), compute the file, answer when the
        simulated clock says it is done; PixelsError with EE's message when it fails."""
        with self.slot(project):
            start = self.clock.now()
            plan = self.plan(job)
            if plan.failure is not None:
                self._wait_until(start + plan.seconds)
                self._account(job, plan, None)
                raise PixelsError(400, plan.failure)
            try:
                data = compute()
            except ExpressionError as exc:  # EE fails the computation with its own text
                self._account(job, plan, None, str(exc))
                raise PixelsError(400, str(exc)) from None
            self._wait_until(start + plan.seconds)
            self._account(job, plan, data[0])
            return data

    def _account(self, job: PixelJob, plan: Plan, data: bytes | None,
                 error: str | None = None) -> None:
        with self.lock:
            self.eecu += plan.eecu
            self.eecu_by_tag[job.workload_tag] += plan.eecu
            if data is None:
                self.failed[error or plan.failure or "error"] += 1
            else:
                self.succeeded += 1
                self.pixels += job.grid.pixels * len(job.bands)
                self.bytes += len(data)

    def _wait_until(self, t: float) -> None:
        """Sleep until the simulated clock reaches t (a stopped emulator wakes everyone)."""
        wall = getattr(self.clock, "wall_seconds", None)
        while not self._stop.is_set():
            left = t - self.clock.now()
            if left <= 0:
                return
            step = wall(left) if wall is not None else 0.0
            # A clock that only moves when told (ManualClock: 0) is polled, not spun on.
            self._stop.wait(min(max(step, 0.002), 0.25) if step > 0 else 0.02)

    def remember(self, thumb_id: str, job: PixelJob) -> None:
        with self.lock:
            self.thumbnails[thumb_id] = job
            while len(self.thumbnails) > THUMBNAILS_KEPT:
                self.thumbnails.popitem(last=False)

    def thumbnail(self, thumb_id: str) -> PixelJob | None:
        with self.lock:
            return self.thumbnails.get(thumb_id)

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": self.requests,
                "succeeded": self.succeeded,
                "failed": dict(self.failed),
                "rejected": dict(self.rejected),
                "in_flight": sum(self.in_flight.values()),
                "peak_concurrency": self.peak,
                "concurrency_limit": self.config.direct_concurrency,
                "eecu_seconds": round(self.eecu, 3),
                "eecu_by_tag": {k: round(v, 3) for k, v in self.eecu_by_tag.items()},
                "pixel_bands": self.pixels,
                "bytes": self.bytes,
            }
