"""Real export outputs: the pixel grid of an image export, GeoTIFFs, and table files.

Grid (as EE lays it out): pixels sit on a lattice anchored at the CRS origin. A geographic CRS
gets square pixels of `scale / 111319.49` degrees (EE's degree-per-metre figure at the equator);
a projected CRS gets `scale` units. `crsTransform` fixes size and origin instead; `width`/
`height`/`maxDimension` fit the region's box exactly.

GeoTIFFs are uncompressed, tiled 256×256, band-planar (shape (bands, H, W), or (H, W) for one
band), with ModelPixelScale/ModelTiepoint/GeoKeyDirectory tags. Pixel values are the synthetic
world's (world.py) at each pixel of the grid's lattice, computed by the image's expression
(compute.py), so shards of one export agree where they meet and a reduction or a sample on the
same lattice sees the same values. Data type: float32 for computed bands (normalizedDifference
etc.), uint16 for Landsat/Sentinel-2 reflectance bands (expression.py decides); integers are
rounded and clamped to their type.

An image whose uncompressed size exceeds `file_split_bytes` is written as shards
`prefix-RRRRRRRRRR-CCCCCCCCCC.tif` (10-digit pixel row/col offsets) with square shards whose side
is a multiple of 256; `fileDimensions` (geoTiffOptions.tileDimensions) sets the shard size
instead, whenever the image is larger than it.

Tables: CSV (`system:index`, the properties in alphabetical order, `.geo`; with `selectors`,
exactly those columns, as EE does; a feature without geometry gets EE's empty MultiPoint),
GeoJSON, KML, KMZ, and SHP as separate .shp/.shx/.dbf/.prj/.cpg files written by pyogrio (EE
writes a shapefile's parts as separate Drive files; not verified against a live service).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pyproj import CRS, Transformer

from core.emulator.expression import ImageSpec, Region, TableSpec
from core.emulator.world import Lattice, Pixels, world

if TYPE_CHECKING:
    from core.emulator.config import EmulatorConfig

METRES_PER_DEGREE = 111_319.49  # EE's metres per degree for degree-based scales
METRES_PER_DEGREE_LAT = 110_574.0
TILE = 256
MAX_SIDE = 131_072  # EE's largest fileDimensions
CRS_ALIASES = {"SR-ORG:6627": "EPSG:3857"}  # the video default; pyproj does not know SR-ORG
# What EE writes in a CSV's .geo for a feature without geometry (sample() without geometries).
NULL_GEOMETRY = {"type": "MultiPoint", "coordinates": []}


@dataclass(frozen=True)
class Grid:
    crs: str  # "EPSG:n"
    epsg: int
    geographic: bool
    x0: float  # top-left corner
    y0: float
    dx: float  # pixel width, > 0
    dy: float  # pixel height, > 0 (rows go south)
    width: int
    height: int
    # The lattice the grid sits on: pixel (0, 0) is global pixel (r0, c0) of the lattice whose
    # global pixel (0, 0) has its top-left corner at (ox, oy). World values depend on the
    # lattice and the global pixel only, so grids on one lattice agree where they overlap.
    ox: float = 0.0
    oy: float = 0.0
    c0: int = 0
    r0: int = 0

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def lattice(self) -> Lattice:
        return Lattice(self.crs, self.ox, self.oy, self.dx, self.dy, self.geographic)


def resolve_crs(crs: str) -> CRS:
    return CRS.from_user_input(CRS_ALIASES.get(crs, crs))


def _to_crs(region: Region, crs: CRS) -> tuple[float, float, float, float]:
    src = resolve_crs(region.crs)
    if src == crs:
        return region.bbox
    tr = Transformer.from_crs(src, crs, always_xy=True)
    x0, y0, x1, y1 = tr.transform_bounds(*region.bbox, densify_pts=21)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ValueError(f"region {region.bbox} cannot be expressed in {crs.to_string()}")
    return x0, y0, x1, y1


def image_grid(spec: ImageSpec) -> Grid:
    """The output pixel grid of an image export. Raises ValueError when it has no region."""
    crs_name = spec.crs or "EPSG:4326"
    crs = resolve_crs(crs_name)
    epsg = crs.to_epsg()
    if epsg is None:
        raise ValueError(f"the emulator can only write GeoTIFFs in EPSG CRSs, not {crs_name}")
    geographic = crs.is_geographic
    t = spec.crs_transform
    if spec.region is None:
        raise ValueError("Unable to export unbounded image.")
    if spec.region.crs == "pixel":
        # dimensions + crsTransform without region: the rectangle [0, 0, w, h] in pixels.
        if t is None:
            raise ValueError("a pixel-space region needs crsTransform")
        px0, py0, px1, py1 = spec.region.bbox
        w, h = max(round(px1 - px0), 1), max(round(py1 - py0), 1)
        return Grid(
            f"EPSG:{epsg}",
            epsg,
            geographic,
            t[2] + px0 * t[0],
            t[5] + py0 * t[4],
            abs(t[0]),
            abs(t[4]),
            w,
            h,
            t[2],
            t[5],
            round(px0),
            round(py0),
        )
    x0, y0, x1, y1 = _to_crs(spec.region, crs)
    if spec.width or spec.height or spec.max_dimension:
        w_ext, h_ext = max(x1 - x0, 1e-12), max(y1 - y0, 1e-12)
        if spec.width and spec.height:
            w, h = spec.width, spec.height
        else:
            m = spec.max_dimension or spec.width or spec.height or 1
            w, h = (
                (m, max(1, round(m * h_ext / w_ext)))
                if w_ext >= h_ext
                else (max(1, round(m * w_ext / h_ext)), m)
            )
        return Grid(
            f"EPSG:{epsg}", epsg, geographic, x0, y1, w_ext / w, h_ext / h, w, h, x0, y1, 0, 0
        )
    if spec.scale is not None or t is None:
        scale = spec.scale if spec.scale is not None else spec.native_scale
        if scale <= 0:
            raise ValueError("scale must be positive")
        step = scale / METRES_PER_DEGREE if geographic else scale
        dx = dy = step
        ox = oy = 0.0
    else:
        dx, dy, ox, oy = abs(t[0]), abs(t[4]), t[2], t[5]
    # Snap outward onto the lattice (tiny epsilon: a box already on it stays put).
    eps = 1e-9
    c0 = math.floor((x0 - ox) / dx + eps)
    c1 = math.ceil((x1 - ox) / dx - eps)
    r0 = math.floor((oy - y1) / dy + eps)
    r1 = math.ceil((oy - y0) / dy - eps)
    w, h = max(c1 - c0, 1), max(r1 - r0, 1)
    return Grid(
        f"EPSG:{epsg}", epsg, geographic, ox + c0 * dx, oy - r0 * dy, dx, dy, w, h, ox, oy, c0, r0
    )


def model_pixels(grid: Grid) -> int:
    """Pixels the batch model charges for (run time, memory, time-out). For a geographic grid
    this is the ground area it covers at the export scale (degrees → metres at the grid's
    latitude, as eebatch's planner estimates), not the raw W×H, which grows towards the poles;
    for a projected grid it is W×H."""
    if not grid.geographic:
        return grid.pixels
    lat = math.radians(grid.y0 - grid.height * grid.dy / 2)
    shrink = max(math.cos(lat), 0.0) * METRES_PER_DEGREE_LAT / METRES_PER_DEGREE
    return max(math.ceil(grid.pixels * shrink), 1)


def content_factor(grid: Grid, config: EmulatorConfig) -> float:
    """How many times its pixel count's worth of work and bytes an image export holds, in
    [1, config.size_spread] (config.py): log-uniform, from a hash of the seed and the cell of
    `size_cell` degrees that the grid's centre lies in (the same tile gives the same factor
    in any order, from any client; its split quarters share the cell). Exactly 1.0 when the
    knob is off (write_geotiff then keeps its 256 x 256 tiles)."""
    spread = config.size_spread
    if spread <= 1.0:
        return 1.0
    x = grid.x0 + grid.width * grid.dx / 2
    y = grid.y0 - grid.height * grid.dy / 2
    if not grid.geographic:
        x, y = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x, y)
    cell = config.size_cell
    key = f"{config.seed}:{math.floor(x / cell)}:{math.floor(y / cell)}".encode()
    u = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
    return float(spread**u)


# -- GeoTIFF ----------------------------------------------------------------------------------


def geotiff_tags(
    grid: Grid, col0: int = 0, row0: int = 0, nodata: float | None = None
) -> list[tuple[int, str, int, Any, bool]]:
    """tifffile extratags georeferencing a window of `grid` starting at (row0, col0)."""
    x = grid.x0 + col0 * grid.dx
    y = grid.y0 - row0 * grid.dy
    if grid.geographic:
        keys = [(1024, 0, 1, 2), (1025, 0, 1, 1), (2048, 0, 1, grid.epsg), (2054, 0, 1, 9102)]
    else:
        keys = [(1024, 0, 1, 1), (1025, 0, 1, 1), (3072, 0, 1, grid.epsg), (3076, 0, 1, 9001)]
    directory = [1, 1, 0, len(keys)] + [v for k in keys for v in k]
    tags: list[tuple[int, str, int, Any, bool]] = [
        (33550, "d", 3, (grid.dx, grid.dy, 0.0), True),
        (33922, "d", 6, (0.0, 0.0, 0.0, x, y, 0.0), True),
        (34735, "H", len(directory), tuple(directory), True),
    ]
    if nodata is not None:
        text = repr(float(nodata)).removesuffix(".0")
        tags.append((42113, "s", len(text) + 1, text, True))
    return tags


Render = Callable[[Pixels], list[np.ndarray]]
MEMMAP_BYTES = 64 * 1024 * 1024  # larger windows are assembled in a file, not in memory


def cast_pixels(values: np.ndarray, dtype: np.dtype | str) -> np.ndarray:
    """Values → pixels of `dtype`: integers rounded and clamped to the type's range (NaN: 0)."""
    dt = np.dtype(dtype)
    v = np.asarray(values)
    if np.issubdtype(dt, np.floating):
        return v.astype(dt, copy=False)
    # float32 holds every integer of the small types exactly; wider types need float64.
    work = np.float32 if dt.itemsize <= 2 and v.dtype == np.float32 else np.float64
    out = np.rint(v.astype(work, copy=False))
    info = np.iinfo(dt)
    np.clip(out, info.min, info.max, out=out)
    nan = np.isnan(out)
    if nan.any():
        out[nan] = 0
    return out.astype(dt)


def named_render(names: list[str]) -> Render:
    """The world's bands of these names (for callers with no image expression)."""

    def render(px: Pixels) -> list[np.ndarray]:
        return [px.band(name) for name in names]

    return render


def render_window(
    grid: Grid,
    bands: int,
    dtype: np.dtype,
    render: Render,
    window: tuple[int, int, int, int],
    seed: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The typed pixels (bands, h, w) of `window` = (row0, col0, h, w) of the grid in the world
    of `seed`: the render's values at each pixel, computed in row strips."""
    row0, col0, h, w = window
    if out is None:
        out = np.empty((bands, h, w), dtype=dtype)
    px = Pixels.grid_window(world(seed), grid.lattice, grid.r0 + row0, grid.c0 + col0, h, w)
    r = 0
    for strip in px.strips():
        values = render(strip)
        n = strip.shape[0]
        for b in range(bands):
            out[b, r : r + n] = cast_pixels(values[b], dtype)
        r += n
    return out


def write_geotiff(
    path: Path,
    grid: Grid,
    bands: int,
    dtype: str,
    render: Render | int,
    window: tuple[int, int, int, int] | None = None,
    nodata: float | None = None,
    seed: int = 0,
    pad: float = 1.0,
) -> int:
    """Write `window` = (row0, col0, height, width) of the grid, its pixels from `render`
    (`Pixels` → one array per band) in the world of `seed` (an int `render` is that seed, with
    the world's bands B0, B1, ...); returns the file size. A `pad` other than 1 (a content
    factor: config.size_spread is on) writes the image in strips, not 256 x 256 tiles, so its
    size follows its pixels (a split quarter weighs a quarter), and extends the file with
    zero bytes to `pad` times that size: readers never look past the TIFF's own offsets, so
    the image is unchanged."""
    import tifffile

    if isinstance(render, int):
        seed, render = render, named_render([f"B{b}" for b in range(bands)])
    row0, col0, h, w = window or (0, 0, grid.height, grid.width)
    dt = np.dtype(dtype)
    nbytes = h * w * bands * dt.itemsize
    big = nbytes > 3_900_000_000
    scratch = path.with_name(path.name + ".pixels.npy")
    if nbytes > MEMMAP_BYTES:
        data = np.lib.format.open_memmap(scratch, mode="w+", dtype=dt, shape=(bands, h, w))
    else:
        data = np.empty((bands, h, w), dtype=dt)
    try:
        render_window(grid, bands, dt, render, (row0, col0, h, w), seed, out=data)
        with tifffile.TiffWriter(path, bigtiff=big) as tw:
            tw.write(
                data if bands > 1 else data[0],
                tile=(TILE, TILE) if pad == 1.0 else None,
                photometric="minisblack",
                planarconfig="separate" if bands > 1 else None,
                metadata=None,
                software=False,
                extratags=geotiff_tags(grid, col0, row0, nodata),
            )
    finally:
        del data
        scratch.unlink(missing_ok=True)
    size = path.stat().st_size
    if pad > 1.0:
        size = round(size * pad)  # sparse: the zeros take no disk until read
        with open(path, "r+b") as fh:
            fh.truncate(size)
    return size


def image_bytes(grid: Grid, bands: int, dtype: str) -> int:
    return grid.pixels * bands * np.dtype(dtype).itemsize


def shard_plan(
    grid: Grid,
    bands: int,
    dtype: str,
    split_bytes: int,
    file_dims: tuple[int, int] | None = None,
) -> list[tuple[int, int, int, int]]:
    """Windows (row0, col0, h, w); one window means a single unsplit file."""
    if file_dims:
        sw, sh = file_dims
    elif image_bytes(grid, bands, dtype) > split_bytes:
        per_px = bands * np.dtype(dtype).itemsize
        side = int(math.sqrt(max(split_bytes, 1) / per_px)) // TILE * TILE
        sw = sh = min(max(side, TILE), MAX_SIDE)
    else:
        return [(0, 0, grid.height, grid.width)]
    if sw >= grid.width and sh >= grid.height:
        return [(0, 0, grid.height, grid.width)]
    return [
        (r, c, min(sh, grid.height - r), min(sw, grid.width - c))
        for r in range(0, grid.height, sh)
        for c in range(0, grid.width, sw)
    ]


def shard_name(prefix: str, row0: int, col0: int) -> str:
    return f"{prefix}-{row0:010d}-{col0:010d}.tif"


# -- tables -----------------------------------------------------------------------------------


def _made_up_geometry(i: int, region: Region | None) -> dict[str, Any]:
    """A small square inside the region's box (or near 0,0) for computed features."""
    if region is not None and region.crs == "EPSG:4326":
        w, s, e, n = region.bbox
    else:
        w, s, e, n = 0.0, 0.0, 1.0, 1.0
    k = 5
    cw, ch = (e - w) / k or 0.01, (n - s) / k or 0.01
    x, y = w + (i % k) * cw, s + ((i // k) % k) * ch
    ring = [[x, y], [x + cw, y], [x + cw, y + ch], [x, y + ch], [x, y]]
    return {"type": "Polygon", "coordinates": [[[round(a, 8), round(b, 8)] for a, b in ring]]}


def table_rows(spec: TableSpec, seed: int) -> tuple[list[str], list[dict[str, Any]]]:
    """(property columns, rows with system:index, properties and a GeoJSON geometry)."""
    rows: list[dict[str, Any]] = []
    for i in range(spec.count):
        if spec.rows is not None and i < len(spec.rows):
            props = dict(spec.rows[i])
        else:
            # Computed values: deterministic numbers per (seed, row, column).
            props = {
                c: round(((i * 37 + j * 101 + seed * 7) % 1000) / 10.0, 1)
                for j, c in enumerate(spec.columns)
            }
        geom = None
        if spec.geometries is not None and i < len(spec.geometries):
            geom = spec.geometries[i]
        if geom is None and not spec.computed:
            geom = _made_up_geometry(i, spec.region)
        if spec.ids is not None and i < len(spec.ids):
            idx = spec.ids[i]
        else:
            idx = f"{i:0{spec.index_width}d}" if spec.index_width else str(i)
        rows.append({"system:index": idx, "props": props, "geometry": geom})
    return list(spec.columns), rows


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def write_csv(path: Path, spec: TableSpec, selectors: list[str] | None, seed: int) -> None:
    cols, rows = table_rows(spec, seed)
    header = list(selectors) if selectors else ["system:index", *cols, ".geo"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(header)
        for row in rows:
            values = {
                **row["props"],
                "system:index": row["system:index"],
                ".geo": json.dumps(row["geometry"] or NULL_GEOMETRY, separators=(",", ":")),
            }
            out.writerow([_cell(values.get(c)) for c in header])


def _features(spec: TableSpec, selectors: list[str] | None, seed: int) -> list[dict[str, Any]]:
    cols, rows = table_rows(spec, seed)
    keep = [c for c in (selectors or cols) if c not in (".geo", "system:index")]
    return [
        {
            "type": "Feature",
            "id": row["system:index"],
            "geometry": row["geometry"],
            "properties": {c: row["props"].get(c) for c in keep},
        }
        for row in rows
    ]


def write_geojson(path: Path, spec: TableSpec, selectors: list[str] | None, seed: int) -> None:
    fc = {"type": "FeatureCollection", "features": _features(spec, selectors, seed)}
    path.write_text(json.dumps(fc), encoding="utf-8")


def _kml(spec: TableSpec, selectors: list[str] | None, seed: int) -> str:
    from xml.sax.saxutils import escape

    out = io.StringIO()
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    out.write('<kml xmlns="http://www.opengis.net/kml/2.2"><Document>\n')
    for f in _features(spec, selectors, seed):
        data = "".join(
            f'<Data name="{escape(str(k))}"><value>{escape(_cell(v))}</value></Data>'
            for k, v in f["properties"].items()
        )
        coords = []
        g = f["geometry"] or {"type": None}
        ring = g["coordinates"][0] if g["type"] == "Polygon" else None
        if ring:
            coords = [f"{x},{y}" for x, y, *_ in ring]
            geom = (
                "<Polygon><outerBoundaryIs><LinearRing><coordinates>"
                + " ".join(coords)
                + "</coordinates></LinearRing></outerBoundaryIs></Polygon>"
            )
        else:
            geom = ""
        out.write(
            f"<Placemark><name>{escape(f['id'])}</name>"
            f"<ExtendedData>{data}</ExtendedData>{geom}</Placemark>\n"
        )
    out.write("</Document></kml>\n")
    return out.getvalue()


def write_kml(path: Path, spec: TableSpec, selectors: list[str] | None, seed: int) -> None:
    path.write_text(_kml(spec, selectors, seed), encoding="utf-8")


def write_kmz(path: Path, spec: TableSpec, selectors: list[str] | None, seed: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("doc.kml", _kml(spec, selectors, seed))


def write_shp(
    directory: Path, stem: str, spec: TableSpec, selectors: list[str] | None, seed: int
) -> list[Path]:
    """A shapefile as its separate parts; returns the files written."""
    from pyogrio.raw import write
    from shapely.geometry import shape

    feats = _features(spec, selectors, seed)
    names = [c for c in (selectors or spec.columns) if c not in (".geo", "system:index")]
    geoms = np.array(
        [shape(f["geometry"]).wkb if f["geometry"] else None for f in feats], dtype=object
    )
    fields = [np.array([_cell(f["properties"].get(c)) for f in feats], dtype=object) for c in names]
    # dBASE field names are at most 10 characters.
    short = [n[:10] for n in names]
    path = directory / f"{stem}.shp"
    first = next((f["geometry"] for f in feats if f["geometry"]), None)
    gtype = {"Polygon": "Polygon", "Point": "Point", "LineString": "LineString"}.get(
        first["type"] if first else "Point", "Polygon"
    )
    write(
        str(path),
        geometry=geoms,
        field_data=fields,
        fields=short,
        driver="ESRI Shapefile",
        geometry_type=gtype,
        crs="EPSG:4326",
        encoding="UTF-8",
    )
    return sorted(p for p in directory.iterdir() if p.stem == stem)


TABLE_MIME = {
    "CSV": ("csv", "text/csv"),
    "GEO_JSON": ("geojson", "application/vnd.geo+json"),
    "KML": ("kml", "application/vnd.google-earth.kml+xml"),
    "KMZ": ("kmz", "application/vnd.google-earth.kmz"),
    "SHP": ("shp", "application/octet-stream"),
}
SHP_MIME = {
    ".shp": "application/octet-stream",
    ".shx": "application/octet-stream",
    ".dbf": "application/dbf",
    ".prj": "text/plain",
    ".cpg": "text/plain",
}


def write_video_placeholder(path: Path, frames: int, grid: Grid) -> None:
    """Not a playable video: an ISO-BMFF `ftyp` box and a `free` box sized like a small MP4
    (the emulator does not encode video)."""
    approx = max(1024, min(frames * grid.pixels * 3 // 40, 8 * 1024 * 1024))
    ftyp = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    free_len = approx - len(ftyp)
    with open(path, "wb") as fh:
        fh.write(ftyp)
        fh.write(free_len.to_bytes(4, "big") + b"free")
        fh.write(b"\x00" * (free_len - 8))
