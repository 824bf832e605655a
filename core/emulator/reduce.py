"""Reducers, region statistics and samples, on the grid an export would use.

A reduction over a geometry lays out the grid an export of that geometry's bounding box at the
same scale/CRS (or crsTransform) would get (outputs.image_grid: the lattice anchored at the CRS
origin), and reduces the pixels whose centre lies inside the geometry, unweighted (a point: the
pixel containing it; a line: pixels whose centre is within half a pixel of it). Values are the
image's typed pixels (the analyzer's pixel type, as an export writes them), so a statistic equals
the same statistic computed from the exported GeoTIFF. Without a scale, the image's native scale
is used; without a crs, EPSG:4326. Polygons are planar in the grid's CRS (EE's default geodesic
edges are not modelled).

Samples (sample, sampleRegions) are features of those pixels' values; with `geometries`, a
sampled point keeps its own geometry and a pixel of a polygon gets its centre (EE's choice for
points is not verified here). sampleRegions ids are "<feature id>_<n>", sample's "0", "1", ...

Reducers: mean, median, min, max, sum, count, stdDev and variance (population, n), minMax,
first, mode (ties: the smallest value), percentile (numpy's linear interpolation; EE
approximates large inputs with histograms), combine (sharedInputs; outputPrefix) and setOutputs.
Output names follow EE: reduceRegion gives the band names for a single-output reducer, and
"<band>_<output>" otherwise; reduceRegions over a one-band image gives the reducer's output
names ("mean").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.emulator.compute import (
    Coll,
    EvalError,
    Evaluator,
    Feat,
    Geom,
    Img,
    Proj,
    ReducerSpec,
    Unsupported,
    _coll,
    _num,
    cast_values,
    python_value,
    registry,
)
from core.emulator.expression import Call, ImageSpec, Region, region_output_names
from core.emulator.outputs import Grid, image_grid
from core.emulator.world import Pixels

HANDLERS, handles = registry()
DEFAULT_MAX_PIXELS = 10_000_000  # Image.reduceRegion's default maxPixels
MAX_SAMPLE_PIXELS = 5_000_000  # pixels a sample() may look at (EE would time out)


# -- reducers ----------------------------------------------------------------------------------

_SIMPLE = {
    "Reducer.mean": "mean",
    "Reducer.median": "median",
    "Reducer.min": "min",
    "Reducer.max": "max",
    "Reducer.sum": "sum",
    "Reducer.count": "count",
    "Reducer.stdDev": "stdDev",
    "Reducer.variance": "variance",
    "Reducer.first": "first",
    "Reducer.mode": "mode",
}


@handles(*_SIMPLE)
def _h_simple(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    kind = _SIMPLE[node.name]
    return ReducerSpec([(kind, kind, None)])


@handles("Reducer.minMax")
def _h_min_max(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    return ReducerSpec([("min", "min", None), ("max", "max", None)])


@handles("Reducer.percentile")
def _h_percentile(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    pcts = a.get("percentiles")
    pcts = pcts if isinstance(pcts, list) else [pcts]
    names = a.get("outputNames")
    if isinstance(names, list) and len(names) == len(pcts):
        labels = [str(n) for n in names]
    else:
        labels = [f"p{float(p):g}" for p in pcts]
    return ReducerSpec([("percentile", n, float(p)) for n, p in zip(labels, pcts, strict=True)])


@handles("Reducer.combine")
def _h_combine(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    one, two = a.get("reducer1"), a.get("reducer2")
    if not isinstance(one, ReducerSpec) or not isinstance(two, ReducerSpec):
        raise Unsupported("Reducer.combine of these reducers")
    prefix = str(a.get("outputPrefix") or "")
    return ReducerSpec(one.parts + [(k, prefix + n, p) for k, n, p in two.parts])


@handles("Reducer.setOutputs")
def _h_set_outputs(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    red = a.get("reducer")
    outs = a.get("outputs")
    if not isinstance(red, ReducerSpec) or not isinstance(outs, list):
        raise Unsupported("Reducer.setOutputs")
    return ReducerSpec([(k, str(n), p) for (k, _, p), n in zip(red.parts, outs, strict=False)])


def reduce_values(spec: ReducerSpec, values: np.ndarray) -> list[Any]:
    """Each output of the reducer over `values` (None where there is nothing to reduce)."""
    v = np.asarray(values, dtype=np.float64)
    out: list[Any] = []
    for kind, _, param in spec.parts:
        if kind == "count":
            out.append(int(v.size))
        elif kind == "sum":
            out.append(float(v.sum()))
        elif v.size == 0:
            out.append(None)
        elif kind == "mean":
            out.append(float(v.mean()))
        elif kind == "median":
            out.append(float(np.median(v)))
        elif kind == "min":
            out.append(float(v.min()))
        elif kind == "max":
            out.append(float(v.max()))
        elif kind == "stdDev":
            out.append(float(v.std()))
        elif kind == "variance":
            out.append(float(v.var()))
        elif kind == "first":
            out.append(float(v[0]))
        elif kind == "mode":
            vals, counts = np.unique(v, return_counts=True)
            out.append(float(vals[int(np.argmax(counts))]))
        elif kind == "percentile":
            out.append(float(np.percentile(v, param)))
        else:  # pragma: no cover - every kind above is listed in the handlers
            raise Unsupported(f"reducer {kind}")
    return [python_value(x) for x in out]


# -- grids and the pixels of a geometry ----------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """The projection a reduction or sample works in."""

    crs: str
    scale: float | None
    transform: list[float] | None

    def grid(self, geometry: dict[str, Any]) -> Grid:
        from shapely.geometry import shape

        bounds = shape(geometry).bounds
        spec = ImageSpec(
            Region(bounds, "EPSG:4326", geometry), self.crs, self.transform, self.scale
        )
        return image_grid(spec)


def where(img: Img, a: dict[str, Any], scale_key: str = "scale") -> Where:
    crs = a.get("crs")
    proj = a.get("projection")
    transform = a.get("crsTransform")
    scale = _num(a.get(scale_key))
    if isinstance(crs, Proj):
        transform = transform or crs.transform
        crs = crs.crs
    if isinstance(proj, Proj):
        crs = crs or proj.crs
        transform = transform or proj.transform
        scale = scale if scale is not None else proj.scale
    if not (isinstance(transform, list) and len(transform) == 6):
        transform = None
    if scale is None and transform is None:
        scale = img.info.native_scale
    return Where(
        str(crs) if crs else "EPSG:4326",
        scale,
        [float(x) for x in transform] if transform else None,
    )


def _geometry(value: Any) -> dict[str, Any] | None:
    if isinstance(value, Geom):
        return value.geojson
    if isinstance(value, Feat):
        return value.geometry
    if isinstance(value, dict) and "type" in value:
        return value
    return None


def _in_grid_crs(geometry: dict[str, Any], grid: Grid) -> Any:
    import shapely
    from shapely.geometry import shape

    geom = shape(geometry)
    if grid.geographic:
        return geom
    from pyproj import Transformer

    tr = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    return shapely.transform(geom, lambda x, y: tr.transform(x, y), interleaved=False)


def _is_points(geometry: dict[str, Any]) -> bool:
    return geometry.get("type") in ("Point", "MultiPoint")


def _point_pixels(geometry: dict[str, Any], grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    coords = geometry["coordinates"]
    pts = np.asarray([coords] if geometry["type"] == "Point" else coords, dtype=np.float64)
    if pts.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows, cols = grid.lattice.index_of(pts[:, 0], pts[:, 1])
    keys = np.unique(np.stack([rows, cols], axis=1), axis=0)
    return keys[:, 0], keys[:, 1]


def _strip_mask(geom: Any, grid: Grid, strip: Pixels, line: bool) -> np.ndarray:
    import shapely

    lat = grid.lattice
    x = lat.ox + (strip.cols.astype(np.float64) + 0.5) * lat.dx
    y = lat.oy - (strip.rows.astype(np.float64) + 0.5) * lat.dy
    xx, yy = np.meshgrid(x, y)
    if line:
        return shapely.dwithin(geom, shapely.points(xx, yy), lat.dx / 2)
    return shapely.contains_xy(geom, xx, yy)


def region_pixels(
    geometry: dict[str, Any], grid: Grid, ev: Evaluator
) -> tuple[np.ndarray, np.ndarray]:
    """Global (rows, cols) of the grid's pixels in the geometry (see the module doc)."""
    if _is_points(geometry):
        return _point_pixels(geometry, grid)
    geom = _in_grid_crs(geometry, grid)
    line = geometry.get("type") in ("LineString", "MultiLineString", "LinearRing")
    px = Pixels.grid_window(ev.world, grid.lattice, grid.r0, grid.c0, grid.height, grid.width)
    rows, cols = [], []
    for strip in px.strips():
        mask = _strip_mask(geom, grid, strip, line)
        r, c = np.nonzero(mask)
        rows.append(strip.rows[r])
        cols.append(strip.cols[c])
    return np.concatenate(rows), np.concatenate(cols)


def pixel_values(
    img: Img, ev: Evaluator, grid: Grid, rows: np.ndarray, cols: np.ndarray
) -> list[np.ndarray]:
    """The image's typed pixel values (as float64) at the global pixels, band by band."""
    if len(rows) == 0:
        return [np.zeros(0) for _ in img.bands]
    out: list[list[np.ndarray]] = [[] for _ in img.bands]
    step = 200_000
    for i in range(0, len(rows), step):
        px = Pixels.points(ev.world, grid.lattice, rows[i : i + step], cols[i : i + step])
        for b, v in enumerate(img.render(px)):
            out[b].append(cast_values(v, img.dtype).astype(np.float64))
    return [np.concatenate(parts) for parts in out]


def region_values(
    img: Img, ev: Evaluator, geometry: dict[str, Any], grid: Grid
) -> list[np.ndarray]:
    """Typed values of the pixels in the geometry: polygons through the export's window
    path (strips of the grid, masked), points as single pixels. Same values either way."""
    if _is_points(geometry):
        rows, cols = _point_pixels(geometry, grid)
        return pixel_values(img, ev, grid, rows, cols)
    geom = _in_grid_crs(geometry, grid)
    line = geometry.get("type") in ("LineString", "MultiLineString", "LinearRing")
    px = Pixels.grid_window(ev.world, grid.lattice, grid.r0, grid.c0, grid.height, grid.width)
    out: list[list[np.ndarray]] = [[] for _ in img.bands]
    for strip in px.strips():
        mask = _strip_mask(geom, grid, strip, line)
        if not mask.any():
            continue
        for b, v in enumerate(img.render(strip)):
            out[b].append(cast_values(v[mask], img.dtype).astype(np.float64))
    return [np.concatenate(parts) if parts else np.zeros(0) for parts in out]


def _centre_points(grid: Grid, rows: np.ndarray, cols: np.ndarray) -> list[dict[str, Any]]:
    lon, lat = grid.lattice.centres(rows, cols)
    return [
        {"type": "Point", "coordinates": [float(x), float(y)]}
        for x, y in zip(lon, lat, strict=True)
    ]


# -- handlers ----------------------------------------------------------------------------------


@handles("Image.reduceRegion")
def _h_reduce_region(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    img = ev.as_image(a.get("image"))
    reducer = a.get("reducer")
    if not isinstance(reducer, ReducerSpec):
        raise Unsupported("this reducer")
    geometry = _geometry(a.get("geometry"))
    if geometry is None:
        raise EvalError(
            "Image.reduceRegion: Provide 'geometry' parameter when aggregating over an "
            "unbounded image."
        )
    max_pixels = int(_num(a.get("maxPixels"), DEFAULT_MAX_PIXELS) or DEFAULT_MAX_PIXELS)
    wh = where(img, a)
    grid = wh.grid(geometry)
    while a.get("bestEffort") and grid.pixels > max_pixels and wh.transform is None:
        wh = Where(wh.crs, (wh.scale or 1.0) * 2, None)
        grid = wh.grid(geometry)
    if grid.pixels > max_pixels and not _is_points(geometry):
        found = grid.pixels
        if grid.pixels <= 10 * max_pixels:
            found = len(region_pixels(geometry, grid, ev)[0])
        if found > max_pixels:
            raise EvalError(
                f"Image.reduceRegion: Too many pixels in the region. Found {found}, but "
                f"maxPixels allows only {max_pixels}."
            )
    values = region_values(img, ev, geometry, grid)
    names = region_output_names(img.bands, reducer.outputs, per_feature=False)
    results = [r for v in values for r in reduce_values(reducer, v)]
    return dict(zip(names, results, strict=True))


@handles("Image.reduceRegions")
def _h_reduce_regions(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    img = ev.as_image(a.get("image"))
    reducer = a.get("reducer")
    if not isinstance(reducer, ReducerSpec):
        raise Unsupported("this reducer")
    coll = _coll(a.get("collection"))
    wh = where(img, a)
    names = region_output_names(img.bands, reducer.outputs, per_feature=True)
    out = []
    for f in coll.items:
        if not isinstance(f, Feat) or not f.geometry:
            raise EvalError("Image.reduceRegions: every feature needs a geometry.")
        values = region_values(img, ev, f.geometry, wh.grid(f.geometry))
        results = [r for v in values for r in reduce_values(reducer, v)]
        out.append(Feat({**f.props, **dict(zip(names, results, strict=True))}, f.geometry, f.id))
    return Coll(out, "feature")


def _typed(v: float, dtype: str) -> Any:
    return int(v) if np.issubdtype(np.dtype(dtype), np.integer) else python_value(np.float64(v))


@handles("Image.sampleRegions")
def _h_sample_regions(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    img = ev.as_image(a.get("image"))
    coll = _coll(a.get("collection"))
    keep = a.get("properties")
    wh = where(img, a)
    geometries = bool(a.get("geometries"))
    out = []
    for f in coll.items:
        if not isinstance(f, Feat) or not f.geometry:
            continue
        grid = wh.grid(f.geometry)
        rows, cols = region_pixels(f.geometry, grid, ev)
        values = pixel_values(img, ev, grid, rows, cols)
        props = {k: v for k, v in f.props.items() if keep is None or k in keep}
        if not geometries:
            points: list[dict[str, Any] | None] = [None] * len(rows)
        elif f.geometry.get("type") == "Point":
            points = [f.geometry]  # a point keeps its own place
        else:
            points = list(_centre_points(grid, rows, cols))
        for j in range(len(rows)):
            bands = {b: _typed(values[i][j], img.dtype) for i, b in enumerate(img.bands)}
            out.append(Feat({**props, **bands}, points[j], f"{f.id}_{j}"))
    return Coll(out, "feature")


@handles("Image.sample")
def _h_sample(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    img = ev.as_image(a.get("image"))
    region = _geometry(a.get("region"))
    if region is None:
        raise EvalError("Image.sample: the emulator needs a region to sample.")
    wh = where(img, a)
    grid = wh.grid(region)
    if grid.pixels > MAX_SAMPLE_PIXELS:
        raise EvalError(
            f"Image.sample: the region holds {grid.pixels} pixels at this scale; the emulator "
            f"samples at most {MAX_SAMPLE_PIXELS}. Use a coarser scale."
        )
    rows, cols = region_pixels(region, grid, ev)
    n = len(rows)
    seed = int(_num(a.get("seed"), 0) or 0)
    want = n
    if a.get("numPixels") is not None:
        want = min(n, int(a["numPixels"]))
    elif a.get("factor") is not None:
        want = min(n, math.floor(float(a["factor"]) * n))
    if want < n:
        pick = np.sort(np.random.default_rng(seed).choice(n, size=want, replace=False))
        rows, cols = rows[pick], cols[pick]
    values = pixel_values(img, ev, grid, rows, cols)
    geometries = bool(a.get("geometries"))
    points = _centre_points(grid, rows, cols) if geometries else [None] * len(rows)
    out = []
    for j in range(len(rows)):
        props = {b: _typed(values[i][j], img.dtype) for i, b in enumerate(img.bands)}
        out.append(Feat(props, points[j], str(j)))
    return Coll(out, "feature")
