"""Decoding earthengine-api expression graphs.

The emulator does not evaluate images. It reads what a batch model needs from the graph:
the export region (a bounding box of whatever geometry was given), CRS, scale or dimensions,
how many bands and of what type, and for tables a small feature count and the columns.

Heuristics (documented because they are guesses, not EE semantics):
* bands: `Image.select` → len(bandSelectors); `normalizedDifference` → 1; `addBands` → sum;
  `rename` → len(names); `Image.visualize` → 3 (uint8); `reduce.*`/mosaics keep the collection's
  bands; `ImageCollection.load`/`Image.load` of a known catalog id (Landsat C2 L2, Sentinel-2
  SR) → its band list, anything else → 1 band. Any other call passes its image argument through.
* dtype: Landsat/Sentinel-2 sources are uint16; `normalizedDifference`, `divide`,
  `expression`, `reduce.mean`, `toFloat` and similar are float32; explicit casts win; mixed
  types in `addBands` promote (numpy rules). Unknown sources are float32.
* tables: `Collection.loadTable` → 25 features; a constant `Collection` of Features → its
  features and their properties; `limit(n)` caps; `reduceRegions` adds the reducer's column.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class ExpressionError(ValueError):
    """The graph is malformed or lacks something the emulator needs (→ HTTP 400)."""


@dataclass(frozen=True)
class Call:
    name: str  # functionName, or "<function>" for a functionReference
    args: dict[str, Any]
    func: FuncDef | None = None


@dataclass(frozen=True)
class FuncDef:
    arg_names: tuple[str, ...]
    body: Any


@dataclass(frozen=True)
class ArgRef:
    name: str


# -- graph → tree -----------------------------------------------------------------------------


def resolve(graph: dict[str, Any]) -> Any:
    """{"result": key, "values": {...}} → a tree of Call/FuncDef/ArgRef and plain JSON values."""
    if not isinstance(graph, dict) or "result" not in graph or "values" not in graph:
        raise ExpressionError("expression must have 'result' and 'values'")
    values: dict[str, Any] = graph["values"]
    memo: dict[str, Any] = {}
    active: set[str] = set()

    def ref(key: str) -> Any:
        if key in memo:
            return memo[key]
        if key not in values:
            raise ExpressionError(f"valueReference to a missing value {key!r}")
        if key in active:
            raise ExpressionError(f"cyclic valueReference {key!r}")
        active.add(key)
        memo[key] = node(values[key])
        active.discard(key)
        return memo[key]

    def node(v: Any) -> Any:
        if not isinstance(v, dict) or len(v) != 1:
            raise ExpressionError(f"not a ValueNode: {str(v)[:80]}")
        ((kind, body),) = v.items()
        if kind == "constantValue":
            return body
        if kind == "integerValue":
            return int(body)
        if kind == "bytesValue":
            return {"bytes": body}
        if kind == "valueReference":
            return ref(body)
        if kind == "arrayValue":
            return [node(x) for x in body.get("values", [])]
        if kind == "dictionaryValue":
            return {k: node(x) for k, x in body.get("values", {}).items()}
        if kind == "argumentReference":
            return ArgRef(body)
        if kind == "functionDefinitionValue":
            return FuncDef(tuple(body.get("argumentNames", [])), ref(body["body"]))
        if kind == "functionInvocationValue":
            args = {k: node(x) for k, x in body.get("arguments", {}).items()}
            if "functionName" in body:
                return Call(body["functionName"], args)
            func = ref(body["functionReference"])
            if not isinstance(func, FuncDef):
                raise ExpressionError("functionReference does not name a function definition")
            return Call("<function>", args, func)
        raise ExpressionError(f"unknown ValueNode kind {kind!r}")

    return ref(graph["result"])


def is_constant(tree: Any) -> bool:
    if isinstance(tree, (Call, FuncDef, ArgRef)):
        return False
    if isinstance(tree, list):
        return all(is_constant(x) for x in tree)
    if isinstance(tree, dict):
        return all(is_constant(x) for x in tree.values())
    return True


def constant_value(graph: dict[str, Any]) -> Any:
    """value:compute for constant graphs only; anything with a function raises."""
    tree = resolve(graph)
    if not is_constant(tree):
        raise ExpressionError("value:compute supports only constant expressions in the emulator")
    return tree


# -- geometry ---------------------------------------------------------------------------------

BBox = tuple[float, float, float, float]  # xmin, ymin, xmax, ymax


@dataclass(frozen=True)
class Region:
    bbox: BBox
    crs: str = "EPSG:4326"  # the CRS of the coordinates; "pixel" = the export grid's pixels
    geojson: dict[str, Any] | None = None


def _coords_bbox(coords: Any) -> BBox | None:
    xs: list[float] = []
    ys: list[float] = []

    def walk(c: Any) -> None:
        if (
            isinstance(c, (list, tuple))
            and len(c) >= 4
            and len(c) % 2 == 0
            and all(isinstance(v, (int, float)) for v in c)
        ):
            # A flat list: Rectangle's [x0, y0, x1, y1] or [x, y, x, y, ...].
            xs.extend(float(v) for v in c[0::2])
            ys.extend(float(v) for v in c[1::2])
            return
        if isinstance(c, (list, tuple)):
            if (
                len(c) >= 2
                and all(isinstance(v, (int, float)) for v in c[:2])
                and not any(isinstance(v, (list, tuple)) for v in c)
            ):
                xs.append(float(c[0]))
                ys.append(float(c[1]))
            else:
                for x in c:
                    walk(x)

    walk(coords)
    if not xs:
        return None
    return min(xs), min(ys), max(xs), max(ys)


def _geojson_bbox(g: dict[str, Any]) -> BBox | None:
    t = g.get("type")
    if t == "FeatureCollection":
        boxes = [_geojson_bbox(f) for f in g.get("features", [])]
        return _union([b for b in boxes if b])
    if t == "Feature":
        return _geojson_bbox(g.get("geometry") or {})
    if t == "GeometryCollection":
        boxes = [_geojson_bbox(x) for x in g.get("geometries", [])]
        return _union([b for b in boxes if b])
    return _coords_bbox(g.get("coordinates"))


def _union(boxes: list[BBox]) -> BBox | None:
    if not boxes:
        return None
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _proj_crs(proj: Any) -> str | None:
    """CRS string of a Projection call or constant; None when it is computed (e.g.
    Image.projection) and so unknown here."""
    if isinstance(proj, str):
        return proj
    if isinstance(proj, Call) and proj.name == "Projection":
        crs = proj.args.get("crs")
        if isinstance(crs, str):
            return crs
    if isinstance(proj, dict) and isinstance(proj.get("crs"), str):
        return proj["crs"]
    return None


_GEOM_CTORS = {
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "LinearRing",
    "Polygon",
    "MultiPolygon",
    "Rectangle",
}


def geometry_region(g: Any) -> Region | None:
    """Bounding box of a geometry node; None when it is computed beyond what we can follow."""
    if isinstance(g, dict) and "type" in g:
        bbox = _geojson_bbox(g)
        crs = _proj_crs((g.get("crs") or {}).get("properties", {}).get("name")) or "EPSG:4326"
        return Region(bbox, crs, g) if bbox else None
    if not isinstance(g, Call):
        return None
    name = g.name.removeprefix("GeometryConstructors.")
    if g.name.startswith("GeometryConstructors.") and name in _GEOM_CTORS:
        bbox = _coords_bbox(g.args.get("coordinates"))
        if bbox is None:
            return None
        crs = "EPSG:4326"
        proj = g.args.get("crs", g.args.get("proj"))
        if proj is not None:
            # A computed projection (the client's Image.projection() for dimensions +
            # crsTransform) means pixel coordinates of the export grid.
            crs = _proj_crs(proj) or "pixel"
        if name == "Rectangle":  # [x0, y0, x1, y1] (flat or as two points) → a ring
            x0, y0, x1, y1 = bbox
            ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
            return Region(bbox, crs, {"type": "Polygon", "coordinates": [ring]})
        return Region(bbox, crs, {"type": name, "coordinates": g.args.get("coordinates")})
    if g.name == "GeometryConstructors.BBox":
        a = g.args
        bbox = (a.get("west"), a.get("south"), a.get("east"), a.get("north"))
        if all(isinstance(v, (int, float)) for v in bbox):
            return Region(tuple(float(v) for v in bbox))  # type: ignore[arg-type]
        return None
    if g.name in ("GeometryConstructors.MultiGeometry", "GeometryConstructors.GeometryCollection"):
        parts = [geometry_region(x) for x in g.args.get("geometries", []) or []]
        box = _union([p.bbox for p in parts if p])
        return Region(box) if box else None
    if g.name in ("Feature", "Element.geometry", "Feature.geometry"):
        return geometry_region(g.args.get("geometry") or g.args.get("feature"))
    if g.name in ("Geometry.bounds", "Geometry.simplify", "Geometry.convexHull"):
        return geometry_region(g.args.get("geometry"))
    if g.name == "Geometry.buffer":
        inner = geometry_region(g.args.get("geometry"))
        dist = g.args.get("distance")
        if inner and isinstance(dist, (int, float)) and inner.crs == "EPSG:4326":
            x0, y0, x1, y1 = inner.bbox
            dlat = dist / 110_574.0
            dlon = dist / (111_320.0 * max(math.cos(math.radians((y0 + y1) / 2)), 1e-6))
            return Region((x0 - dlon, y0 - dlat, x1 + dlon, y1 + dlat))
        return inner
    return None


# -- image analysis ---------------------------------------------------------------------------


def _names(text: str) -> list[str]:
    return text.split()


_ST = _names("ST_ATRAN ST_CDIST ST_DRAD ST_EMIS ST_EMSD ST_QA ST_TRAD ST_URAD QA_PIXEL QA_RADSAT")
_L89 = [f"SR_B{i}" for i in range(1, 8)] + ["SR_QA_AEROSOL", "ST_B10", *_ST]
_L457 = [f"SR_B{i}" for i in (1, 2, 3, 4, 5, 7)] + [
    "SR_ATMOS_OPACITY",
    "SR_CLOUD_QA",
    "ST_B6",
    *_ST,
]
_S2 = _names(
    "B1 B2 B3 B4 B5 B6 B7 B8 B8A B9 B11 B12 AOT WVP SCL TCI_R TCI_G TCI_B MSK_CLDPRB MSK_SNWPRB "
    "QA10 QA20 QA60"
)
# id prefix → (bands, dtype, native scale in metres)
CATALOG: dict[str, tuple[list[str], str, float]] = {
    "LANDSAT/LC08/C02/T1_L2": (_L89, "uint16", 30.0),
    "LANDSAT/LC09/C02/T1_L2": (_L89, "uint16", 30.0),
    "LANDSAT/LE07/C02/T1_L2": (_L457, "uint16", 30.0),
    "LANDSAT/LT05/C02/T1_L2": (_L457, "uint16", 30.0),
    "COPERNICUS/S2_SR_HARMONIZED": (_S2, "uint16", 10.0),
    "COPERNICUS/S2_SR": (_S2, "uint16", 10.0),
}
DEFAULT_SCALE = 1000.0  # metres, for sources the catalog table does not know


def catalog_entry(asset_id: str) -> tuple[list[str], str, float] | None:
    aid = asset_id.removeprefix("projects/earthengine-public/assets/")
    for prefix, entry in CATALOG.items():
        if aid == prefix or aid.startswith(prefix + "/"):
            return entry
    return None


@dataclass
class ImageInfo:
    bands: list[str]
    dtype: str
    native_scale: float = DEFAULT_SCALE
    count: int = 1  # images, when this describes a collection


_CASTS = {
    "Image.toByte": "uint8",
    "Image.toUint8": "uint8",
    "Image.toInt8": "int8",
    "Image.toShort": "int16",
    "Image.toInt16": "int16",
    "Image.toUint16": "uint16",
    "Image.toInt": "int32",
    "Image.toInt32": "int32",
    "Image.toUint32": "uint32",
    "Image.toLong": "int64",
    "Image.toInt64": "int64",
    "Image.toFloat": "float32",
    "Image.toDouble": "float64",
}
_FLOAT_OPS = {
    "Image.normalizedDifference",
    "Image.divide",
    "Image.expression",
    "Image.sqrt",
    "Image.log",
    "Image.log10",
    "Image.exp",
    "Image.pow",
    "reduce.mean",
    "Image.hypot",
    "Image.atan2",
    "Image.float",
}
_IMAGE_ARGS = (
    "input",
    "image",
    "image1",
    "dstImg",
    "collection",
    "source",
    "value",
    "object",
    "list",
    "collection1",
    "images",
)


def _promote(a: str, b: str) -> str:
    return str(np.promote_types(a, b))


def _selector_count(selectors: Any, source: list[str]) -> list[str]:
    if not isinstance(selectors, list):
        selectors = [selectors]
    out: list[str] = []
    for s in selectors:
        if isinstance(s, int) and 0 <= s < len(source):
            out.append(source[s])
        elif isinstance(s, str):
            matched = [b for b in source if re.fullmatch(s, b)] if source else []
            out.extend(matched or [s])
        else:
            out.append(str(s))
    return out


class _Analyzer:
    def __init__(self) -> None:
        self.memo: dict[int, ImageInfo] = {}

    def info(self, node: Any, env: dict[str, ImageInfo] | None = None) -> ImageInfo:
        env = env or {}
        key = id(node)
        if not env and key in self.memo:
            return self.memo[key]
        result = self._info(node, env)
        if not env:
            self.memo[key] = result
        return result

    def _info(self, node: Any, env: dict[str, ImageInfo]) -> ImageInfo:
        if isinstance(node, ArgRef):
            return env.get(node.name, ImageInfo(["B0"], "float32"))
        if isinstance(node, (int, float)) and not isinstance(node, bool):
            return ImageInfo(["constant"], "int32" if isinstance(node, int) else "float32")
        if isinstance(node, list):
            return ImageInfo([f"constant_{i}" for i in range(len(node))] or ["constant"], "float32")
        if not isinstance(node, Call):
            return ImageInfo(["B0"], "float32")
        a = node.args
        n = node.name
        if n in ("ImageCollection.load", "Image.load"):
            entry = catalog_entry(str(a.get("id", "")))
            if entry:
                bands, dtype, scale = entry
                return ImageInfo(list(bands), dtype, scale, 20 if n.startswith("ImageC") else 1)
            return ImageInfo(["B0"], "float32", DEFAULT_SCALE, 10 if n.startswith("ImageC") else 1)
        if n == "Image.select":
            src = self.info(a.get("input"), env)
            names = a.get("newNames")
            bands = _selector_count(a.get("bandSelectors", []), src.bands)
            if isinstance(names, list) and len(names) == len(bands):
                bands = [str(x) for x in names]
            return ImageInfo(bands, src.dtype, src.native_scale)
        if n == "Image.normalizedDifference":
            src = self.info(a.get("input"), env)
            return ImageInfo(["nd"], "float32", src.native_scale)
        if n == "Image.addBands":
            dst = self.info(a.get("dstImg"), env)
            src = self.info(a.get("srcImg"), env)
            names = a.get("names")
            added = _selector_count(names, src.bands) if isinstance(names, list) else src.bands
            return ImageInfo(
                dst.bands + added,
                _promote(dst.dtype, src.dtype),
                min(dst.native_scale, src.native_scale),
            )
        if n == "Image.rename":
            src = self.info(a.get("input"), env)
            names = a.get("names")
            bands = [str(x) for x in names] if isinstance(names, list) else src.bands
            return ImageInfo(bands, src.dtype, src.native_scale)
        if n == "Image.visualize":
            src = self.info(a.get("image"), env)
            return ImageInfo(["vis-red", "vis-green", "vis-blue"], "uint8", src.native_scale)
        if n == "Image.constant":
            v = a.get("value")
            vals = v if isinstance(v, list) else [v]
            dtype = "float32" if any(isinstance(x, float) for x in vals) else "int32"
            names = [f"constant_{i}" for i in range(len(vals))] if len(vals) > 1 else ["constant"]
            return ImageInfo(names, dtype)
        if n == "Collection.map":
            coll = self.info(a.get("collection"), env)
            fn = a.get("baseAlgorithm")
            if isinstance(fn, FuncDef) and fn.arg_names:
                body = self.info(fn.body, {**env, fn.arg_names[0]: coll})
                return ImageInfo(body.bands, body.dtype, body.native_scale, coll.count)
            return coll
        if n == "Collection.limit":
            coll = self.info(a.get("collection"), env)
            lim = a.get("limit")
            count = min(coll.count, lim) if isinstance(lim, int) else coll.count
            return ImageInfo(coll.bands, coll.dtype, coll.native_scale, count)
        if n == "ImageCollection.fromImages":
            imgs = a.get("images")
            if isinstance(imgs, list) and imgs:
                first = self.info(imgs[0], env)
                return ImageInfo(first.bands, first.dtype, first.native_scale, len(imgs))
            if isinstance(imgs, (Call, ArgRef)):  # a computed list, e.g. Collection.toList
                return self.info(imgs, env)
            return ImageInfo(["B0"], "float32", DEFAULT_SCALE, 0)
        if n in _CASTS:
            src = self.info(a.get("value") or a.get("input"), env)
            return ImageInfo(src.bands, _CASTS[n], src.native_scale)
        if n == "Image.cast":
            src = self.info(a.get("image"), env)
            types = a.get("bandTypes")
            if isinstance(types, dict) and types:
                return ImageInfo(src.bands, "float32", src.native_scale)
            return src
        if n.startswith("reduce.") or n in (
            "ImageCollection.mosaic",
            "ImageCollection.qualityMosaic",
        ):
            coll = self.info(a.get("collection"), env)
            dtype = "float32" if n in _FLOAT_OPS else coll.dtype
            return ImageInfo(coll.bands, dtype, coll.native_scale)
        if n == "Image.classify":
            name = a.get("outputName")
            src = self.info(a.get("image"), env)
            return ImageInfo([str(name) if name else "classification"], "int32", src.native_scale)
        if n == "Image.pixelLonLat":
            return ImageInfo(["longitude", "latitude"], "float64")
        if n == "ImageCollection.reduce":
            coll = self.info(a.get("collection"), env)
            outs = reducer_outputs(a.get("reducer"))
            names = [f"{b}_{o}" for b in coll.bands for o in outs]
            return ImageInfo(names, "float32", coll.native_scale)
        if n == "<function>" and node.func is not None:
            inner_env = dict(env)
            for i, arg_name in enumerate(node.func.arg_names):
                val = list(a.values())[i] if i < len(a) else None
                inner_env[arg_name] = self.info(val, env)
            return self.info(node.func.body, inner_env)
        # Pass-through: the first image-like argument decides (clip, updateMask, filter, ...).
        for arg in _IMAGE_ARGS:
            if arg in a and isinstance(a[arg], (Call, ArgRef)):
                src = self.info(a[arg], env)
                dtype = "float32" if n in _FLOAT_OPS else src.dtype
                if n == "Image.multiply" and _has_float(a.get("image2")):
                    dtype = "float32"
                return ImageInfo(src.bands, dtype, src.native_scale, src.count)
        return ImageInfo(["B0"], "float32")


def _has_float(node: Any) -> bool:
    if isinstance(node, float):
        return True
    if isinstance(node, Call):
        return any(_has_float(v) for v in node.args.values())
    if isinstance(node, list):
        return any(_has_float(v) for v in node)
    return False


@dataclass
class ImageSpec:
    """What an image (or video) export's graph says about the output grid and pixels."""

    region: Region | None
    crs: str | None
    crs_transform: list[float] | None
    scale: float | None
    width: int | None = None
    height: int | None = None
    max_dimension: int | None = None
    bands: list[str] = field(default_factory=lambda: ["B0"])
    dtype: str = "float32"
    native_scale: float = DEFAULT_SCALE
    frames: int = 1  # video
    core: Any = None  # the image expression under the export wrappers (a resolved tree)


_WRAPPERS = {
    "Image.clipToBoundsAndScale",
    "Image.clip",
    "Image.setDefaultProjection",
    "Image.reproject",
}


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _peel(node: Any, spec: ImageSpec) -> Any:
    """Strip the export wrappers prepare_for_export adds (outermost first) into `spec`."""
    while isinstance(node, Call) and node.name in _WRAPPERS:
        a = node.args
        if node.name == "Image.clipToBoundsAndScale":
            if spec.region is None and a.get("geometry") is not None:
                spec.region = _require_region(a["geometry"])
            spec.scale = spec.scale if spec.scale is not None else _num(a.get("scale"))
            for key, attr in (
                ("width", "width"),
                ("height", "height"),
                ("maxDimension", "max_dimension"),
            ):
                v = _num(a.get(key))
                if v is not None and getattr(spec, attr) is None:
                    setattr(spec, attr, int(v))
            node = a.get("input")
        elif node.name == "Image.clip":
            if spec.region is None and a.get("geometry") is not None:
                spec.region = _require_region(a["geometry"])
            node = a.get("input")
        elif node.name == "Image.setDefaultProjection":
            if spec.crs is None:
                spec.crs = _proj_crs(a.get("crs"))
            node = a.get("image")
        else:  # Image.reproject
            if spec.crs is None:
                spec.crs = _proj_crs(a.get("crs"))
            t = a.get("crsTransform")
            if spec.crs_transform is None and isinstance(t, list) and len(t) == 6:
                spec.crs_transform = [float(x) for x in t]
            if spec.scale is None:
                spec.scale = _num(a.get("scale"))
            node = a.get("image")
    return node


def _require_region(geom: Any) -> Region:
    r = geometry_region(geom)
    if r is None:
        what = geom.name if isinstance(geom, Call) else type(geom).__name__
        raise ExpressionError(
            f"The emulator cannot determine the export region from a computed geometry ({what}); "
            "pass a constant geometry (e.g. ee.Geometry.Rectangle) as region."
        )
    return r


def analyze_image(graph: dict[str, Any]) -> ImageSpec:
    tree = resolve(graph)
    spec = ImageSpec(None, None, None, None)
    core = _peel(tree, spec)
    info = _Analyzer().info(core)
    spec.bands, spec.dtype, spec.native_scale = info.bands, info.dtype, info.native_scale
    spec.core = core
    return spec


def analyze_video(graph: dict[str, Any], max_frames: int | None = None) -> ImageSpec:
    """Video exports carry the wrappers inside Collection.map(baseAlgorithm=...)."""
    tree = resolve(graph)
    spec = ImageSpec(None, None, None, None)
    if (
        isinstance(tree, Call)
        and tree.name == "Collection.map"
        and isinstance(tree.args.get("baseAlgorithm"), FuncDef)
    ):
        _peel(tree.args["baseAlgorithm"].body, spec)
    info = _Analyzer().info(tree)
    spec.bands, spec.dtype, spec.native_scale = info.bands, info.dtype, info.native_scale
    spec.frames = max(1, min(info.count, max_frames) if max_frames else info.count)
    return spec


# -- tables -----------------------------------------------------------------------------------


@dataclass
class TableSpec:
    count: int
    columns: list[str]  # property names (without system:index / .geo)
    rows: list[dict[str, Any]] | None = None  # known constant properties, when constructed
    geometries: list[dict[str, Any] | None] | None = None
    region: Region | None = None  # a bbox seen in the graph, to place made-up geometries
    index_width: int = 0  # 20 for loaded tables ("00000000000000000000"), 0 = "0", "1", ...
    ids: list[str] | None = None  # computed tables: each feature's system:index
    computed: bool = False  # rows computed from the world (no geometry stays no geometry)


_REDUCER_OUTPUTS: dict[str, list[str]] = {
    "Reducer.mean": ["mean"],
    "Reducer.median": ["median"],
    "Reducer.sum": ["sum"],
    "Reducer.count": ["count"],
    "Reducer.min": ["min"],
    "Reducer.max": ["max"],
    "Reducer.minMax": ["min", "max"],
    "Reducer.stdDev": ["stdDev"],
    "Reducer.first": ["first"],
    "Reducer.mode": ["mode"],
    "Reducer.variance": ["variance"],
}


def _percentile_name(p: Any) -> str:
    return f"p{float(p):g}" if isinstance(p, (int, float)) else f"p{p}"


def reducer_outputs(reducer: Any) -> list[str]:
    """A reducer node's output names, as EE names them (mean → ["mean"], percentile([10, 90])
    → ["p10", "p90"], a.combine(b, outputPrefix) → a's then prefix + b's)."""
    if not isinstance(reducer, Call):
        return ["value"]
    a = reducer.args
    if reducer.name == "Reducer.percentile":
        names = a.get("outputNames")
        pcts = a.get("percentiles") or []
        if isinstance(names, list) and names:
            return [str(x) for x in names]
        return [_percentile_name(p) for p in (pcts if isinstance(pcts, list) else [pcts])]
    if reducer.name == "Reducer.combine":
        prefix = a.get("outputPrefix") or ""
        return reducer_outputs(a.get("reducer1")) + [
            f"{prefix}{o}" for o in reducer_outputs(a.get("reducer2"))
        ]
    if reducer.name == "Reducer.setOutputs":
        outs = a.get("outputs")
        if isinstance(outs, list) and outs:
            return [str(x) for x in outs]
        return reducer_outputs(a.get("reducer"))
    if reducer.name == "Reducer.forEach":
        return reducer_outputs(a.get("reducer"))
    return list(_REDUCER_OUTPUTS.get(reducer.name, ["value"]))


def region_output_names(bands: list[str], outputs: list[str], per_feature: bool) -> list[str]:
    """EE's names for a region reduction's results: a single-output reducer gives the band
    names, several outputs give "<band>_<output>"; reduceRegions (`per_feature`) over a
    one-band image gives the reducer's own output names."""
    if per_feature and len(bands) == 1:
        return list(outputs)
    if len(outputs) == 1:
        return list(bands)
    return [f"{b}_{o}" for b in bands for o in outputs]


def _find_region(node: Any, seen: set[int] | None = None) -> Region | None:
    """Any constant geometry in the graph (e.g. a filterBounds region)."""
    seen = seen if seen is not None else set()
    if id(node) in seen:
        return None
    seen.add(id(node))
    if isinstance(node, Call):
        if node.name.startswith("GeometryConstructors."):
            return geometry_region(node)
        for v in node.args.values():
            r = _find_region(v, seen)
            if r:
                return r
    elif isinstance(node, list):
        for v in node:
            r = _find_region(v, seen)
            if r:
                return r
    return None


def _table(node: Any, an: _Analyzer) -> TableSpec:
    if not isinstance(node, Call):
        return TableSpec(10, [])
    a = node.args
    n = node.name
    if n == "Collection.loadTable":
        return TableSpec(25, [], index_width=20)
    if n == "Collection":
        feats = a.get("features")
        if isinstance(feats, list):
            rows: list[dict[str, Any]] = []
            geoms: list[dict[str, Any] | None] = []
            for f in feats:
                props: dict[str, Any] = {}
                geom = None
                if isinstance(f, Call) and f.name == "Feature":
                    md = f.args.get("metadata")
                    if isinstance(md, dict) and is_constant(md):
                        props = md
                    g = geometry_region(f.args.get("geometry"))
                    geom = g.geojson if g else None
                rows.append(props)
                geoms.append(geom)
            cols = sorted({k for r in rows for k in r})
            return TableSpec(len(rows), cols, rows, geoms)
    if n == "Collection.limit":
        inner = _table(a.get("collection"), an)
        lim = a.get("limit")
        if isinstance(lim, int) and lim < inner.count:
            inner.count = lim
            if inner.rows is not None:
                inner.rows = inner.rows[:lim]
                inner.geometries = (inner.geometries or [])[:lim]
        return inner
    if n in ("Image.reduceRegions",):
        inner = _table(a.get("collection"), an)
        outs = reducer_outputs(a.get("reducer"))
        bands = an.info(a.get("image")).bands
        new = region_output_names(bands, outs, per_feature=True)
        inner.columns = sorted(set(inner.columns) | set(new))
        inner.rows = None  # values are computed: made up per row
        return inner
    if n == "Image.sampleRegions":
        inner = _table(a.get("collection"), an)
        bands = an.info(a.get("image")).bands
        props = a.get("properties")
        keep = [str(p) for p in props] if isinstance(props, list) else inner.columns
        return TableSpec(inner.count, sorted(set(bands) | set(keep)))
    if n in ("Image.sample", "Image.stratifiedSample"):
        bands = an.info(a.get("image")).bands
        num = a.get("numPixels") or a.get("numPoints")
        return TableSpec(min(int(num), 1000) if isinstance(num, int) else 50, list(bands))
    if n == "Collection.merge":
        one = _table(a.get("collection1"), an)
        two = _table(a.get("collection2"), an)
        return TableSpec(one.count + two.count, sorted(set(one.columns) | set(two.columns)))
    for arg in ("collection", "input", "features"):
        if isinstance(a.get(arg), Call):
            return _table(a[arg], an)
    return TableSpec(10, [])


def analyze_table(graph: dict[str, Any]) -> TableSpec:
    tree = resolve(graph)
    spec = _table(tree, _Analyzer())
    spec.region = _find_region(tree)
    return spec
