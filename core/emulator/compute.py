"""The emulator's evaluator: expression graphs → values from the synthetic world (world.py).

Images are lazy: an `Img` renders its bands on any `Pixels` (a grid window or a list of pixels),
so an export, a reduction, a sampled point and a classifier all read the same values. Band names
and pixel types come from expression.py's analyzer (it decides); this module only computes.

What is modelled (anything else: `Unsupported`, or for image operators a pass-through of their
image input, as the analyzer does):

* collections: `ImageCollection.load` of a catalog id is a dated series of acquisitions (Landsat
  8 every 16 days from 2013-04-11, Landsat 9 from 2021-10-31, Landsat 7 1999-05-28..2024-01-19,
  Landsat 5 1984-03-16..2012-05-05, Sentinel-2 SR every 5 days from 2017-03-28; all to
  2025-12-31), each of 4 Landsat scenes or 8 Sentinel-2 tiles, 24 s apart (any other id: one
  image a month in 2020). Every image covers the whole world and carries system:index,
  system:time_start and a seeded CLOUD_COVER (= CLOUDY_PIXEL_PERCENTAGE); filter (dates,
  property comparisons, and/or/not, calendarRange; filterBounds keeps every image), limit (and
  sort), size, first, toList(count, offset), fromImages, merge (ids "1_…"/"2_…"), map;
* composites (median, mean, min, max, mosaic, first, mode, qualityMosaic) of a collection are its
  first image's expression evaluated over the date span of all its images (sum: n times that,
  count: n);
* pixel operators: select, rename, addBands, normalizedDifference, arithmetic and comparisons
  with images or constants, casts, clip/updateMask/unmask/reproject (no masks: values are kept),
  bitwise ops, visualize, pixelLonLat, constant, classify;
* features: inline collections and GeoJSON, table assets (exported by the emulator; a public id
  the emulator does not hold gets 25 made-up features as before), Feature, set/get, merge,
  filter, limit, map, aggregate_*;
* reductions and samples (reduce.py), classifiers (classifier.py);
* numbers, strings, lists, dictionaries and dates enough for getInfo() of the above.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from core.emulator.expression import (
    DEFAULT_SCALE,
    ArgRef,
    Call,
    ExpressionError,
    FuncDef,
    ImageInfo,
    _Analyzer,
    _selector_count,
    catalog_entry,
    geometry_region,
    resolve,
)
from core.emulator.outputs import cast_pixels
from core.emulator.world import Pixels, Span, World, date_ms, source_kind, world

DAY_MS = 86_400_000.0


class Unsupported(ExpressionError):
    """The graph uses something the emulator does not compute."""


class EvalError(ExpressionError):
    """EE would fail this computation too (an empty composite, a missing table, too many
    pixels); the message is EE's where it is known."""


# -- values ------------------------------------------------------------------------------------

# (pixels, span, band index) → that band's values; None: the operator has no such band.
BandFn = Callable[[Pixels, "Span | None", int], "np.ndarray | None"]


@dataclass(eq=False)
class Img:
    """A lazy image: `band(pixels, i, span)` → band i's values there (`span` overrides the dates
    of the images it is made of, which is how a composite reads its members). Bands are
    computed only when asked for, once per Pixels."""

    info: ImageInfo  # band names, pixel type, native scale (the analyzer's)
    band_fn: BandFn
    props: dict[str, Any] = field(default_factory=dict)
    span: Span | None = None  # the dates it covers (a composite: all of its images')

    @property
    def bands(self) -> list[str]:
        return self.info.bands

    @property
    def dtype(self) -> str:
        return self.info.dtype

    def band(self, px: Pixels, i: int, span: Span | None = None) -> np.ndarray:
        key = ("img", id(self), i, span)
        cached = px.memo.get(key)
        if cached is None:
            cached = self.band_fn(px, span, i)
            if cached is None:  # keep the analyzer's band list, whatever the operator gave
                cached = px.band(self.bands[i], span)
            px.memo[key] = cached
        return cached

    def named(self, px: Pixels, name: str, span: Span | None = None) -> np.ndarray:
        """The band of that name; a name the image lacks: the world's band of that name."""
        if name in self.bands:
            return self.band(px, self.bands.index(name), span)
        return px.band(name, span)

    def render(self, px: Pixels, span: Span | None = None) -> list[np.ndarray]:
        return [self.band(px, i, span) for i in range(len(self.bands))]


def passthrough(src: Img) -> BandFn:
    def band(px: Pixels, span: Span | None, i: int) -> np.ndarray | None:
        return src.band(px, i, span) if i < len(src.bands) else None

    return band


@dataclass
class Feat:
    props: dict[str, Any]
    geometry: dict[str, Any] | None
    id: str = "0"


@dataclass
class Coll:
    items: list[Any]  # Img or Feat
    kind: str  # "image" | "feature"
    info: ImageInfo | None = None  # the bands of an image collection (also when empty)


@dataclass(frozen=True)
class Date:
    ms: float


@dataclass(frozen=True)
class Geom:
    geojson: dict[str, Any]


@dataclass(frozen=True)
class Proj:
    crs: str | None
    transform: list[float] | None = None
    scale: float | None = None


@dataclass
class Closure:
    func: FuncDef
    env: dict[str, Any]


@dataclass
class Filt:
    test: Callable[[Any], bool]


@dataclass
class ReducerSpec:
    """A reducer: each part is (kind, output name, parameter)."""

    parts: list[tuple[str, str, Any]]

    @property
    def outputs(self) -> list[str]:
        return [name for _, name, _ in self.parts]


# -- collections of the catalog ------------------------------------------------------------------

_END = "2025-12-31"
# id → (first date, days between acquisitions, last date, system:index prefix)
SERIES: dict[str, tuple[str, int, str, str]] = {
    "LANDSAT/LC08/C02/T1_L2": ("2013-04-11", 16, _END, "LC08"),
    "LANDSAT/LC09/C02/T1_L2": ("2021-10-31", 16, _END, "LC09"),
    "LANDSAT/LE07/C02/T1_L2": ("1999-05-28", 16, "2024-01-19", "LE07"),
    "LANDSAT/LT05/C02/T1_L2": ("1984-03-16", 16, "2012-05-05", "LT05"),
    "COPERNICUS/S2_SR_HARMONIZED": ("2017-03-28", 5, _END, "S2"),
    "COPERNICUS/S2_SR": ("2017-03-28", 5, _END, "S2"),
}
# Scenes of one acquisition over any place (the path/rows or MGRS tiles a tile's bounds meet):
# (Landsat WRS-2 path/row | Sentinel-2 tile) names, one image each.
_LANDSAT_SCENES = ("044033", "044034", "045033", "045034")
_S2_SCENES = ("T10SEG", "T10SEH", "T10SFG", "T10SFH", "T10SGG", "T10SGH", "T11SKB", "T11SKC")
SCENE_SECONDS = 24  # between the scenes of one acquisition


def _base_id(asset_id: str) -> str:
    return asset_id.removeprefix("projects/earthengine-public/assets/")


def _series(collection_id: str) -> list[tuple[float, str]]:
    """(time, system:index) of each image of a collection, in date order."""
    entry = SERIES.get(_base_id(collection_id))
    if entry is None:  # an id the emulator does not know: one image a month of 2020
        return [(date_ms(f"2020-{m:02d}-01"), f"IMG_2020{m:02d}01") for m in range(1, 13)]
    first, step, last, prefix = entry
    t0, t1 = date_ms(first), date_ms(last)
    out = []
    for i in range(int((t1 - t0) // (step * DAY_MS)) + 1):
        t = t0 + i * step * DAY_MS
        day = _ymd(t)
        if prefix == "S2":
            for j, tile in enumerate(_S2_SCENES):
                out.append((t + j * SCENE_SECONDS * 1000, f"{day}T000000_{day}T000000_{tile}"))
        else:
            for j, scene in enumerate(_LANDSAT_SCENES):
                out.append((t + j * SCENE_SECONDS * 1000, f"{prefix}_{scene}_{day}"))
    return out


def _ymd(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%d")


def _cloud(seed: int, index: str, first: bool) -> float:
    """Seeded cloud cover (%): skewed towards clear scenes (100 u^2, median 25); the first scene
    of each acquisition is 0-20 %, so a month of a catalog collection always keeps an image
    below the usual thresholds (EE's own catalog over a tile holds many scenes a month)."""
    u = (zlib.crc32(f"{seed}:{index}".encode()) % 10_000) / 10_000.0
    return round(20.0 * u if first else 100.0 * u * u, 2)


# -- the evaluator -----------------------------------------------------------------------------

TableLookup = Callable[[str], "list[Feat] | None"]

_COMPOSITES = {
    "reduce.median",
    "reduce.mean",
    "reduce.min",
    "reduce.max",
    "reduce.mode",
    "reduce.first",
    "reduce.sum",
    "reduce.count",
    "reduce.product",
    "ImageCollection.mosaic",
    "ImageCollection.qualityMosaic",
    "ImageCollection.reduce",
}
_BINARY = {
    "Image.add": np.add,
    "Image.subtract": np.subtract,
    "Image.multiply": np.multiply,
    "Image.max": np.maximum,
    "Image.min": np.minimum,
    "Image.gt": np.greater,
    "Image.gte": np.greater_equal,
    "Image.lt": np.less,
    "Image.lte": np.less_equal,
    "Image.eq": np.equal,
    "Image.neq": np.not_equal,
    "Image.And": np.logical_and,
    "Image.Or": np.logical_or,
    "Image.and": np.logical_and,
    "Image.or": np.logical_or,
}
_INT_BINARY = {
    "Image.bitwiseAnd": np.bitwise_and,
    "Image.bitwise_and": np.bitwise_and,
    "Image.bitwiseOr": np.bitwise_or,
    "Image.bitwise_or": np.bitwise_or,
    "Image.rightShift": np.right_shift,
    "Image.leftShift": np.left_shift,
}
_UNARY = {
    "Image.abs": np.abs,
    "Image.sqrt": np.sqrt,
    "Image.log": np.log,
    "Image.log10": np.log10,
    "Image.exp": np.exp,
    "Image.floor": np.floor,
    "Image.ceil": np.ceil,
    "Image.round": np.rint,
    "Image.not": np.logical_not,
    "Image.Not": np.logical_not,
}
_PASS = {
    "Image.clip",
    "Image.clipToBoundsAndScale",
    "Image.setDefaultProjection",
    "Image.reproject",
    "Image.updateMask",
    "Image.unmask",
    "Image.mask",
    "Image.set",
    "Image.copyProperties",
    "Image.resample",
    "Element.set",
    "Element.setMulti",
    "Element.copyProperties",
    "Image.selfMask",
    "Image.toFloat",
    "Image.float",
    "Image.double",
    "Image.toDouble",
    "Image.cast",
    "Image.focal_mean",
    "Image.focal_median",
    "Image.convolve",
}


class Evaluator:
    def __init__(
        self,
        seed: int = 0,
        tables: TableLookup | None = None,
        handlers: dict[str, Handler] | None = None,
    ) -> None:
        self.seed = seed
        self.handlers = handlers if handlers is not None else HANDLERS
        self.world: World = world(seed)
        self.tables = tables
        self.an = _Analyzer()
        self.memo: dict[int, Any] = {}

    # -- entry points ---------------------------------------------------------------------------

    def graph(self, graph: dict[str, Any]) -> Any:
        return self.eval(resolve(graph))

    def eval(self, node: Any, env: dict[str, Any] | None = None) -> Any:
        env = env or {}
        if isinstance(node, ArgRef):
            if node.name not in env:
                raise ExpressionError(f"unbound argument {node.name!r}")
            return env[node.name]
        if isinstance(node, FuncDef):
            return Closure(node, env)
        if isinstance(node, list):
            return [self.eval(x, env) for x in node]
        if isinstance(node, dict):
            if "type" in node and ("coordinates" in node or "geometries" in node):
                return Geom(node)
            return {k: self.eval(v, env) for k, v in node.items()}
        if not isinstance(node, Call):
            return node
        key = id(node)
        if not env and key in self.memo:
            return self.memo[key]
        result = self._call(node, env)
        if not env:
            self.memo[key] = result
        return result

    def image(self, node: Any, env: dict[str, Any] | None = None) -> Img:
        value = self.eval(node, env)
        return self.as_image(value, node, env or {})

    # -- helpers --------------------------------------------------------------------------------

    def _info(self, node: Any, env: dict[str, Any]) -> ImageInfo:
        infos = {}
        for k, v in env.items():
            if isinstance(v, Img) or (isinstance(v, Coll) and v.info is not None):
                infos[k] = v.info
        return self.an.info(node, infos)

    def as_image(self, value: Any, node: Any = None, env: dict[str, Any] | None = None) -> Img:
        if isinstance(value, Img):
            return value
        if isinstance(value, Coll) and value.kind == "image":
            return self._composite(value, "ImageCollection.mosaic", node, env or {})
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return self._constant([value])
        if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
            return self._constant(value)
        raise ExpressionError(f"expected an image, got {type(value).__name__}")

    def _constant(self, values: list[float]) -> Img:
        names = ["constant"] if len(values) == 1 else [f"constant_{i}" for i in range(len(values))]
        dtype = "float32" if any(isinstance(v, float) for v in values) else "int32"

        def band(px: Pixels, span: Span | None, i: int) -> np.ndarray | None:
            return np.full(px.shape, values[i], dtype=np.float64) if i < len(values) else None

        return Img(ImageInfo(names, dtype), band)

    def _new_image(
        self,
        node: Call,
        env: dict[str, Any],
        band: BandFn,
        props: dict[str, Any] | None = None,
        span: Span | None = None,
    ) -> Img:
        return Img(self._info(node, env), band, props or {}, span)

    # -- dispatch -------------------------------------------------------------------------------

    def _call(self, node: Call, env: dict[str, Any]) -> Any:
        name = node.name
        if name == "<function>":
            assert node.func is not None
            inner = dict(env)
            for arg_name in node.func.arg_names:
                inner[arg_name] = self.eval(node.args.get(arg_name), env)
            return self.eval(node.func.body, inner)
        a = {k: self.eval(v, env) for k, v in node.args.items()}
        handler = self.handlers.get(name)
        if handler is not None:
            return handler(self, node, env, a)
        if name.startswith("GeometryConstructors.") or name in ("Geometry.bounds",):
            region = geometry_region(node)
            if region is None:
                raise Unsupported(f"The emulator cannot compute the geometry {name}.")
            geojson = region.geojson or _bbox_polygon(region.bbox)
            if region.crs == "pixel":
                raise Unsupported("a geometry in the pixel coordinates of an export grid")
            return Geom(_to_degrees(geojson, region.crs))
        if name in _COMPOSITES:
            return self._composite(_coll(a.get("collection")), name, node, env)
        if name in _BINARY or name in _INT_BINARY or name == "Image.divide" or name == "Image.pow":
            return self._binary(node, env, a)
        if name in _UNARY:
            return self._unary(node, env, a, _UNARY[name])
        if name.startswith(("Image.", "ImageCollection.")) or name in _PASS:
            # Casts, clips, masks, reprojections (values kept), and image operators the
            # emulator does not model: their image input, unchanged.
            src = self._first_image(a)
            if src is not None:
                return self._new_image(node, env, passthrough(src), dict(src.props), src.span)
        raise Unsupported(f"The emulator cannot compute {name}.")

    def _first_image(self, a: dict[str, Any]) -> Img | None:
        for k in ("input", "image", "image1", "dstImg", "value", "object", "source"):
            v = a.get(k)
            if isinstance(v, Img):
                return v
        return None

    # -- images ---------------------------------------------------------------------------------

    def _catalog_image(
        self, asset_id: str, info: ImageInfo, t: float | None, index: str, first: bool = True
    ) -> Img:
        kind = source_kind(asset_id)
        span = (t, t) if t is not None else None
        bands = list(info.bands)

        def band(px: Pixels, over: Span | None, i: int) -> np.ndarray | None:
            if i >= len(bands):
                return None
            return px.band(bands[i], over if over is not None else span, kind)

        props: dict[str, Any] = {"system:index": index}
        if t is not None:
            props["system:time_start"] = int(t)
            props["system:time_end"] = int(t)
            props["CLOUD_COVER"] = _cloud(self.seed, index, first)
            props["CLOUDY_PIXEL_PERCENTAGE"] = props["CLOUD_COVER"]
        return Img(info, band, props, span)

    def load_collection(self, asset_id: str) -> Coll:
        entry = catalog_entry(asset_id)
        if entry:
            info = ImageInfo(list(entry[0]), entry[1], entry[2])
        else:
            info = ImageInfo(["B0"], "float32", DEFAULT_SCALE)
        series = _series(asset_id)
        items = [
            self._catalog_image(
                asset_id,
                info,
                t,
                index,
                first=i == 0 or t - series[i - 1][0] > SCENE_SECONDS * 1000,
            )
            for i, (t, index) in enumerate(series)
        ]
        return Coll(items, "image", info)

    def _composite(self, coll: Coll, name: str, node: Any, env: dict[str, Any]) -> Img:
        items = [i for i in coll.items if isinstance(i, Img)]
        spans = [i.span for i in items if i.span is not None]
        span = (min(s[0] for s in spans), max(s[1] for s in spans)) if spans else None
        n = len(items)
        info = (
            self._info(node, env)
            if isinstance(node, Call)
            else (coll.info or ImageInfo(["B0"], "float32"))
        )

        def band(px: Pixels, over: Span | None, i: int) -> np.ndarray | None:
            if not items:
                raise EvalError(
                    "The image collection is empty: its composite has no bands to compute."
                )
            if name == "reduce.count":
                return np.full(px.shape, float(n))
            first = items[0]
            if name == "ImageCollection.reduce":  # one output per band and reducer output
                i //= max(len(info.bands) // max(len(first.bands), 1), 1)
            if i >= len(first.bands):
                return None
            value = first.band(px, i, over if over is not None else span)
            return value * n if name == "reduce.sum" else value

        return Img(info, band, {}, span)

    def _binary(self, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Img:
        left = self.as_image(a.get("image1"))
        right = self.as_image(a.get("image2"))
        name = node.name
        nl, nr = len(left.bands), len(right.bands)

        def band(px: Pixels, span: Span | None, i: int) -> np.ndarray | None:
            li, ri = (0 if nl == 1 else i), (0 if nr == 1 else i)
            if li >= nl or ri >= nr:
                return None
            x, y = left.band(px, li, span), right.band(px, ri, span)
            with np.errstate(all="ignore"):
                if name == "Image.divide":
                    r = np.where(y == 0, 0.0, x / np.where(y == 0, 1.0, y))
                elif name == "Image.pow":
                    r = np.power(np.asarray(x, np.float64), y)
                elif name in _INT_BINARY:
                    xi = np.rint(x).astype(np.int64)
                    r = _INT_BINARY[name](xi, np.rint(y).astype(np.int64))
                else:
                    r = _BINARY[name](x, y)
            return np.asarray(r, dtype=np.float64) if r.dtype == bool or r.dtype.kind == "i" else r

        return self._new_image(node, env, band, dict(left.props), left.span)

    def _unary(self, node: Call, env: dict[str, Any], a: dict[str, Any], fn: Any) -> Img:
        src = self.as_image(a.get("value") or a.get("input") or a.get("image"))

        def band(px: Pixels, span: Span | None, i: int) -> np.ndarray | None:
            if i >= len(src.bands):
                return None
            with np.errstate(all="ignore"):
                return np.asarray(fn(src.band(px, i, span)), dtype=np.float64)

        return self._new_image(node, env, band, dict(src.props), src.span)


# -- handlers ------------------------------------------------------------------------------------

Handler = Callable[[Evaluator, Call, dict[str, Any], dict[str, Any]], Any]


def registry() -> tuple[dict[str, Handler], Callable[..., Callable[[Handler], Handler]]]:
    """A module's table of handlers and its decorator `@handles("Name", ...)`."""
    table: dict[str, Handler] = {}

    def handles(*names: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            for n in names:
                table[n] = fn
            return fn

        return deco

    return table, handles


HANDLERS, handles = registry()


def _to_degrees(geojson: dict[str, Any], crs: str) -> dict[str, Any]:
    """A geometry given in another CRS (e.g. a tile rectangle in the grid's projection) in
    longitude/latitude, its edges densified so they keep their shape."""
    if crs in ("EPSG:4326", "WGS84"):
        return geojson
    import shapely
    from pyproj import Transformer
    from shapely.geometry import mapping, shape

    geom = shape(geojson)
    x0, y0, x1, y1 = geom.bounds
    if geom.geom_type not in ("Point", "MultiPoint"):
        geom = shapely.segmentize(geom, max(x1 - x0, y1 - y0, 1e-9) / 32)
    tr = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    out = shapely.transform(geom, lambda x, y: tr.transform(x, y), interleaved=False)
    return dict(mapping(out))


def _bbox_polygon(b: tuple[float, float, float, float]) -> dict[str, Any]:
    x0, y0, x1, y1 = b
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def _coll(value: Any) -> Coll:
    if isinstance(value, Coll):
        return value
    if isinstance(value, list):
        kind = "image" if value and all(isinstance(v, Img) for v in value) else "feature"
        if kind == "image":
            return Coll(list(value), "image", value[0].info)
        return Coll([_as_feature(v, i) for i, v in enumerate(value)], "feature")
    if isinstance(value, Img):
        return Coll([value], "image", value.info)
    if isinstance(value, (Feat, Geom)):
        return Coll([_as_feature(value, 0)], "feature")
    raise ExpressionError(f"expected a collection, got {type(value).__name__}")


def _as_feature(value: Any, i: int) -> Feat:
    if isinstance(value, Feat):
        return value
    if isinstance(value, Geom):
        return Feat({}, value.geojson, str(i))
    if isinstance(value, dict) and value.get("type") == "Feature":
        return Feat(
            dict(value.get("properties") or {}), value.get("geometry"), str(value.get("id", i))
        )
    raise ExpressionError(f"expected a feature, got {type(value).__name__}")


def _num(v: Any, default: float | None = None) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    return default


@handles("ImageCollection.load")
def _h_ic_load(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    return ev.load_collection(str(a.get("id", "")))


@handles("Image.load")
def _h_image_load(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    asset_id = str(a.get("id", ""))
    info = ev._info(node, env)
    m = re.search(r"(\d{8})(?:T\d{6})?[^/]*$", asset_id)
    t = None
    if m:
        try:
            t = date_ms(datetime.strptime(m.group(1), "%Y%m%d").strftime("%Y-%m-%d"))
        except ValueError:
            t = None
    return ev._catalog_image(asset_id, info, t, asset_id.rsplit("/", 1)[-1])


@handles("Image.constant")
def _h_constant(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    v = a.get("value")
    values = v if isinstance(v, list) else [v]
    if not all(isinstance(x, (int, float)) for x in values):
        raise Unsupported("The emulator computes only numeric constant images.")
    return Img(ev._info(node, env), ev._constant(values).band_fn)


@handles("Image.select")
def _h_select(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    src = ev.as_image(a.get("input"))
    picked = _selector_count(a.get("bandSelectors", []), src.bands)

    def band(px: Pixels, span: Span | None, i: int) -> np.ndarray | None:
        return src.named(px, picked[i], span) if i < len(picked) else None

    return ev._new_image(node, env, band, dict(src.props), src.span)


@handles("Image.rename")
def _h_rename(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    src = ev.as_image(a.get("input"))
    return ev._new_image(node, env, passthrough(src), dict(src.props), src.span)


@handles("Image.addBands")
def _h_add_bands(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    dst = ev.as_image(a.get("dstImg"))
    src = ev.as_image(a.get("srcImg"))
    names = a.get("names")
    keep = _selector_count(names, src.bands) if isinstance(names, list) else src.bands
    nd = len(dst.bands)

    def band(px: Pixels, span: Span | None, i: int) -> np.ndarray | None:
        if i < nd:
            return dst.band(px, i, span)
        return src.named(px, keep[i - nd], span) if i - nd < len(keep) else None

    return ev._new_image(node, env, band, dict(dst.props), dst.span)


@handles("Image.normalizedDifference")
def _h_nd(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    src = ev.as_image(a.get("input"))
    names = a.get("bandNames")
    pair = [str(x) for x in names] if isinstance(names, list) and len(names) == 2 else src.bands[:2]

    def band(px: Pixels, span: Span | None, i: int) -> np.ndarray | None:
        if i > 0:
            return None
        x, y = (src.named(px, b, span) for b in pair)
        with np.errstate(all="ignore"):
            nd = (x - y) / (x + y)
        return np.nan_to_num(nd, nan=0.0, posinf=0.0, neginf=0.0)

    return ev._new_image(node, env, band, dict(src.props), src.span)


@handles("Image.visualize")
def _h_visualize(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    src = ev.as_image(a.get("image"))
    bands = a.get("bands")
    picked = _selector_count(bands, src.bands) if isinstance(bands, list) else src.bands[:3]
    lo, hi = a.get("min"), a.get("max")

    def band(px: Pixels, span: Span | None, i: int) -> np.ndarray | None:
        if i > 2 or not picked:
            return None
        v = src.named(px, (picked * 3)[i], span)
        mn = lo[i] if isinstance(lo, list) else (lo if lo is not None else 0.0)
        mx = hi[i] if isinstance(hi, list) else (hi if hi is not None else 1.0)
        scale = (float(mx) - float(mn)) or 1.0
        return np.clip((v - float(mn)) / scale, 0.0, 1.0) * 255.0

    return ev._new_image(node, env, band, dict(src.props), src.span)


@handles("Image.pixelLonLat")
def _h_lonlat(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    def band(px: Pixels, span: Span | None, i: int) -> np.ndarray | None:
        return px.field(("lon", "lat")[i]).astype(np.float64) if i < 2 else None

    return ev._new_image(node, env, band)


@handles("Image.date")
def _h_image_date(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    img = ev.as_image(a.get("image"))
    t = img.props.get("system:time_start")
    return Date(float(t)) if t is not None else None


@handles("Image.bandNames")
def _h_band_names(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    return list(ev.as_image(a.get("image")).bands)


# -- collections -------------------------------------------------------------------------------


def _prop(item: Any, key: str) -> Any:
    props = item.props if isinstance(item, (Img, Feat)) else {}
    if key == "system:index":
        return item.id if isinstance(item, Feat) else props.get("system:index")
    return props.get(key)


def _with_id(item: Any, new_id: str) -> Any:
    if isinstance(item, Feat):
        return replace(item, id=new_id)
    if isinstance(item, Img):
        return replace(item, props={**item.props, "system:index": new_id})
    return item


def _item_id(item: Any, i: int) -> str:
    if isinstance(item, Feat):
        return item.id
    if isinstance(item, Img):
        return str(item.props.get("system:index", i))
    return str(i)


@handles("Collection.filter")
def _h_filter(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    coll = _coll(a.get("collection"))
    flt = a.get("filter")
    if not isinstance(flt, Filt):
        return coll
    return Coll([i for i in coll.items if flt.test(i)], coll.kind, coll.info)


@handles("Collection.limit")
def _h_limit(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    coll = _coll(a.get("collection"))
    items = list(coll.items)
    key = a.get("key")
    if isinstance(key, str):
        desc = a.get("ascending") is False
        present = [i for i in items if _prop(i, key) is not None]
        absent = [i for i in items if _prop(i, key) is None]
        items = sorted(present, key=lambda i: _sort_key(_prop(i, key)), reverse=desc) + absent
    lim = a.get("limit")
    if isinstance(lim, (int, float)) and not isinstance(lim, bool):
        items = items[: max(int(lim), 0)]
    return Coll(items, coll.kind, coll.info)


def _sort_key(v: Any) -> tuple[int, Any]:
    return (0, v) if isinstance(v, (int, float)) else (1, str(v))


@handles("Collection.size", "List.size", "List.length")
def _h_size(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    v = a.get("collection", a.get("list"))
    return len(v) if isinstance(v, list) else len(_coll(v).items)


@handles("Collection.first")
def _h_first(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    coll = _coll(a.get("collection"))
    return coll.items[0] if coll.items else None


@handles("Collection.toList")
def _h_to_list(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    coll = _coll(a.get("collection"))
    count = int(_num(a.get("count"), len(coll.items)) or 0)
    offset = int(_num(a.get("offset"), 0) or 0)
    return list(coll.items[offset : offset + count])


@handles("ImageCollection.fromImages")
def _h_from_images(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    imgs = a.get("images")
    items = [ev.as_image(i) for i in (imgs if isinstance(imgs, list) else [imgs]) if i is not None]
    info = items[0].info if items else ev._info(node, env)
    return Coll(items, "image", info)


@handles("Collection.merge", "ImageCollection.merge")
def _h_merge(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    one = _coll(a.get("collection1"))
    two = _coll(a.get("collection2"))
    items = [_with_id(x, f"1_{_item_id(x, i)}") for i, x in enumerate(one.items)]
    items += [_with_id(x, f"2_{_item_id(x, i)}") for i, x in enumerate(two.items)]
    return Coll(items, one.kind if one.items or not two.items else two.kind, one.info or two.info)


@handles("Collection.map")
def _h_map(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    coll = _coll(a.get("collection"))
    fn = a.get("baseAlgorithm")
    if not isinstance(fn, Closure):
        raise Unsupported("Collection.map needs a function.")
    out = []
    for i, item in enumerate(coll.items):
        v = call_closure(ev, fn, [item])
        if v is None and a.get("dropNulls"):
            continue
        if isinstance(v, Img) and isinstance(item, Img):
            v = replace(v, props={**item.props, **v.props})
        elif isinstance(v, Feat) and not v.id:
            v = replace(v, id=_item_id(item, i))
        out.append(v)
    kind = "image" if out and all(isinstance(v, Img) for v in out) else coll.kind
    info = out[0].info if out and isinstance(out[0], Img) else coll.info
    return Coll(out, kind, info)


def call_closure(ev: Evaluator, fn: Closure, args: list[Any]) -> Any:
    env = dict(fn.env)
    for name, value in zip(fn.func.arg_names, args, strict=False):
        env[name] = value
    return ev.eval(fn.func.body, env)


@handles("Collection")
def _h_collection(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    feats = a.get("features")
    if isinstance(feats, Coll):
        return feats
    items = feats if isinstance(feats, list) else []
    out: list[Any] = []
    for i, f in enumerate(items):
        if isinstance(f, Coll):  # a collection of collections (flatten() joins them)
            out.append(f)
            continue
        feat = _as_feature(f, i)
        out.append(replace(feat, id=str(i)) if feat.id in ("", "0") else feat)
    return Coll(out, "feature")


@handles("Collection.flatten")
def _h_flatten(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    """The elements of a collection of collections; ids "<outer index>_<inner id>"."""
    outer = _coll(a.get("collection"))
    items: list[Any] = []
    kind = "feature"
    for i, inner in enumerate(outer.items):
        if not isinstance(inner, Coll):
            raise EvalError("Collection.flatten: the collection must hold collections.")
        kind = inner.kind
        items += [_with_id(x, f"{i}_{_item_id(x, j)}") for j, x in enumerate(inner.items)]
    return Coll(items, kind)


@handles("Collection.loadTable")
def _h_load_table(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    table_id = str(a.get("tableId", ""))
    name = _asset_name(table_id)
    rows = ev.tables(name) if ev.tables else None
    if rows is not None:
        return Coll(list(rows), "feature")
    if not name.startswith("projects/earthengine-public/"):
        raise EvalError(f"Collection.loadTable: Collection asset '{table_id}' not found.")
    return Coll(made_up_features(table_id, ev.seed), "feature")


def _asset_name(asset_id: str) -> str:
    if asset_id.startswith("projects/") and "/assets/" in asset_id:
        return asset_id
    first = asset_id.split("/", 1)[0]
    if first in ("users", "projects"):
        return f"projects/earthengine-legacy/assets/{asset_id}"
    return f"projects/earthengine-public/assets/{asset_id}"


def made_up_features(table_id: str, seed: int, n: int = 25) -> list[Feat]:
    """A public table the emulator does not hold: n small squares on a 5x5 lattice of
    0.2 degree near (0, 0), with a name and a seeded value."""
    out = []
    for i in range(n):
        x, y = (i % 5) * 0.2, (i // 5) * 0.2
        ring = [[x, y], [x + 0.2, y], [x + 0.2, y + 0.2], [x, y + 0.2], [x, y]]
        value = (zlib.crc32(f"{seed}:{table_id}:{i}".encode()) % 1000) / 10.0
        out.append(
            Feat(
                {"name": f"feature_{i}", "value": value},
                {"type": "Polygon", "coordinates": [ring]},
                f"{i:020d}",
            )
        )
    return out


@handles("Collection.geometry")
def _h_coll_geometry(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    import shapely
    from shapely.geometry import mapping, shape

    feats = [f for f in _coll(a.get("collection")).items if isinstance(f, Feat) and f.geometry]
    if not feats:
        return Geom({"type": "GeometryCollection", "geometries": []})
    return Geom(dict(mapping(shapely.union_all([shape(f.geometry) for f in feats]))))


@handles("Feature")
def _h_feature(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    g = a.get("geometry")
    md = a.get("metadata")
    geometry = g.geojson if isinstance(g, Geom) else (g.geometry if isinstance(g, Feat) else None)
    props = dict(md) if isinstance(md, dict) else {}
    return Feat(props, geometry, "")


@handles("Element.set", "Element.setMulti", "Feature.set")
def _h_set(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    obj = a.get("object")
    new = dict(a.get("properties") or {}) if "properties" in a else {a.get("key"): a.get("value")}
    if isinstance(obj, Feat):
        return replace(obj, props={**obj.props, **new})
    if isinstance(obj, Img):
        return replace(obj, props={**obj.props, **new})
    raise Unsupported("Element.set on this kind of object")


@handles("Element.get")
def _h_get(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    return _prop(a.get("object"), str(a.get("property")))


@handles("Element.copyProperties")
def _h_copy_props(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    dst, src = a.get("destination"), a.get("source")
    props = dict(getattr(src, "props", {}) or {})
    keep = a.get("properties")
    if isinstance(keep, list):
        props = {k: v for k, v in props.items() if k in keep}
    for k in a.get("exclude") or []:
        props.pop(k, None)
    if isinstance(dst, (Feat, Img)):
        return replace(dst, props={**dst.props, **props})
    return dst


@handles("Feature.select")
def _h_feature_select(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    f = a.get("input")
    if not isinstance(f, Feat):
        raise Unsupported("Feature.select on this kind of object")
    sel = a.get("propertySelectors") or []
    names = [k for k in f.props if any(re.fullmatch(str(s), k) for s in sel)]
    new = a.get("newProperties")
    renamed = [str(x) for x in new] if isinstance(new, list) and len(new) == len(names) else names
    props = {n2: f.props[n1] for n1, n2 in zip(names, renamed, strict=True)}
    keep_geom = a.get("retainGeometry", True) is not False
    return replace(f, props=props, geometry=f.geometry if keep_geom else None)


@handles("Feature.geometry", "Element.geometry")
def _h_feature_geometry(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    f = a.get("feature", a.get("element"))
    return Geom(f.geometry) if isinstance(f, Feat) and f.geometry else None


@handles(
    *(
        f"AggregateFeatureCollection.{n}"
        for n in ("array", "sum", "mean", "min", "max", "count", "first")
    )
)
def _h_aggregate(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    coll = _coll(a.get("collection"))
    key = str(a.get("property"))
    values = [_prop(i, key) for i in coll.items]
    values = [v for v in values if v is not None]
    kind = node.name.rsplit(".", 1)[1]
    if kind == "array":
        return values
    if kind == "count":
        return len(values)
    if kind == "first":
        return values[0] if values else None
    if not values:
        return None
    nums = [float(v) for v in values]
    return {"sum": sum(nums), "mean": sum(nums) / len(nums), "min": min(nums), "max": max(nums)}[
        kind
    ]


# -- filters -----------------------------------------------------------------------------------


def _compare(op: str) -> Callable[[Any, Any], bool]:
    def cmp(x: Any, y: Any) -> bool:
        if x is None or y is None:
            return op == "notEquals" and (x is None) != (y is None)
        if isinstance(x, Date):
            x = x.ms
        if isinstance(y, Date):
            y = y.ms
        try:
            return {
                "equals": x == y,
                "notEquals": x != y,
                "lessThan": x < y,
                "lessThanOrEquals": x <= y,
                "greaterThan": x > y,
                "greaterThanOrEquals": x >= y,
            }[op]
        except TypeError:
            return False

    return cmp


_CMP_ALIASES = {
    "eq": "equals",
    "neq": "notEquals",
    "lt": "lessThan",
    "lte": "lessThanOrEquals",
    "gt": "greaterThan",
    "gte": "greaterThanOrEquals",
}


@handles(
    *(
        f"Filter.{n}"
        for n in (
            "equals",
            "notEquals",
            "lessThan",
            "lessThanOrEquals",
            "greaterThan",
            "greaterThanOrEquals",
            "eq",
            "neq",
            "lt",
            "lte",
            "gt",
            "gte",
        )
    )
)
def _h_cmp_filter(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    op = node.name.split(".", 1)[1]
    cmp = _compare(_CMP_ALIASES.get(op, op))
    if "leftField" in a:
        field_, value = str(a["leftField"]), a.get("rightValue")
        return Filt(lambda i: cmp(_prop(i, field_), value))
    field_, value = str(a.get("rightField")), a.get("leftValue")
    return Filt(lambda i: cmp(value, _prop(i, field_)))


@handles("Filter.dateRangeContains")
def _h_date_filter(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    rng = a.get("leftValue")
    field_ = str(a.get("rightField", "system:time_start"))
    if not (isinstance(rng, tuple) and len(rng) == 2):
        return Filt(lambda i: True)
    t0, t1 = rng

    def test(item: Any) -> bool:
        t = _prop(item, field_)
        return t is not None and t0 <= float(t) < t1

    return Filt(test)


@handles("Filter.intersects")
def _h_intersects(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    other = a.get("rightValue", a.get("leftValue"))
    geom = other.geojson if isinstance(other, Geom) else getattr(other, "geometry", None)
    if geom is None:
        return Filt(lambda i: True)
    from shapely.geometry import shape

    target = shape(geom)

    def test(item: Any) -> bool:
        if isinstance(item, Img):
            return True  # the world's images cover everything
        if isinstance(item, Feat) and item.geometry:
            return bool(shape(item.geometry).intersects(target))
        return False

    return Filt(test)


@handles("Filter.and", "Filter.or")
def _h_and_or(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    parts = [f for f in (a.get("filters") or []) if isinstance(f, Filt)]
    if node.name == "Filter.and":
        return Filt(lambda i: all(f.test(i) for f in parts))
    return Filt(lambda i: any(f.test(i) for f in parts))


@handles("Filter.not")
def _h_not(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    inner = a.get("filter")
    return Filt(lambda i: not inner.test(i)) if isinstance(inner, Filt) else Filt(lambda i: True)


@handles("Filter.listContains", "Filter.inList")
def _h_in_list(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    if isinstance(a.get("leftValue"), list):
        values, field_ = a["leftValue"], str(a.get("rightField"))
    else:
        values, field_ = a.get("rightValue") or [], str(a.get("leftField"))
    return Filt(lambda i: _prop(i, field_) in values)


@handles("Filter.calendarRange")
def _h_calendar(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    start = int(_num(a.get("start"), 0) or 0)
    end = int(_num(a.get("end"), start) or start)
    unit = str(a.get("field") or "day_of_year")

    def test(item: Any) -> bool:
        t = _prop(item, "system:time_start")
        if t is None:
            return False
        d = datetime.fromtimestamp(float(t) / 1000, UTC)
        v = {
            "year": d.year,
            "month": d.month,
            "day_of_month": d.day,
            "day_of_year": d.timetuple().tm_yday,
            "week": d.isocalendar()[1],
            "hour": d.hour,
        }.get(unit, d.timetuple().tm_yday)
        return start <= v <= end if start <= end else (v >= start or v <= end)

    return Filt(test)


# -- plain values ------------------------------------------------------------------------------


def _ms(v: Any) -> float:
    if isinstance(v, Date):
        return v.ms
    return date_ms(v)


@handles("Date")
def _h_date(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    return Date(_ms(a.get("value")))


@handles("DateRange")
def _h_date_range(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    start = _ms(a.get("start"))
    end = _ms(a["end"]) if a.get("end") is not None else start + 1
    return (start, end)


@handles("Date.advance")
def _h_advance(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    t = datetime.fromtimestamp(_ms(a.get("date")) / 1000, UTC)
    delta = float(_num(a.get("delta"), 0) or 0)
    unit = str(a.get("unit") or "day").rstrip("s")
    if unit in ("year", "month"):
        months = round(delta * (12 if unit == "year" else 1))
        y, m = divmod(t.month - 1 + months, 12)
        day = min(t.day, 28)
        t = t.replace(year=t.year + y, month=m + 1, day=day if t.day > 28 else t.day)
    else:
        seconds = {"week": 604800, "day": 86400, "hour": 3600, "minute": 60, "second": 1}.get(
            unit, 86400
        )
        t = t + timedelta(seconds=delta * seconds)
    return Date(t.timestamp() * 1000)


@handles("Date.fromYMD")
def _h_ymd(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    d = datetime(int(a["year"]), int(a["month"]), int(a["day"]), tzinfo=UTC)
    return Date(d.timestamp() * 1000)


@handles("Date.millis")
def _h_millis(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    return _ms(a.get("date"))


_NUMBER_OPS: dict[str, Callable[[float, float], float]] = {
    "add": lambda x, y: x + y,
    "subtract": lambda x, y: x - y,
    "multiply": lambda x, y: x * y,
    "divide": lambda x, y: x / y if y else 0,
    "max": max,
    "min": min,
    "pow": math.pow,
}


@handles(*(f"Number.{n}" for n in _NUMBER_OPS))
def _h_number(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    x, y = a.get("left"), a.get("right")
    if not isinstance(x, (int, float)) or not isinstance(y, (int, float)):
        raise EvalError(f"{node.name}: both arguments must be numbers.")
    out = _NUMBER_OPS[node.name.split(".", 1)[1]](x, y)
    if isinstance(x, int) and isinstance(y, int) and node.name != "Number.divide":
        return int(out)
    return out


@handles("Dictionary")
def _h_dict(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    v = a.get("input")
    return dict(v) if isinstance(v, dict) else {}


@handles("Dictionary.get")
def _h_dict_get(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    d = a.get("dictionary") or {}
    key = a.get("key")
    if key not in d and "defaultValue" not in a:
        raise EvalError(f"Dictionary.get: Dictionary does not contain key: {key}.")
    return d.get(key, a.get("defaultValue"))


@handles("Dictionary.set")
def _h_dict_set(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    return {**(a.get("dictionary") or {}), a.get("key"): a.get("value")}


@handles("Dictionary.combine")
def _h_dict_combine(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    first, second = dict(a.get("first") or {}), dict(a.get("second") or {})
    if a.get("overwrite") is False:
        return {**second, **first}
    return {**first, **second}


@handles("Dictionary.keys")
def _h_dict_keys(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    return sorted((a.get("dictionary") or {}).keys())


@handles("Dictionary.values")
def _h_dict_values(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    d = a.get("dictionary") or {}
    keys = a.get("keys") or sorted(d)
    return [d.get(k) for k in keys]


@handles("List.get")
def _h_list_get(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    lst = a.get("list") or []
    i = int(_num(a.get("index"), 0) or 0)
    if not -len(lst) <= i < len(lst):
        raise EvalError(f"List.get: List index must be between 0 and {len(lst) - 1}.")
    return lst[i]


@handles("List.slice")
def _h_list_slice(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    lst = a.get("list") or []
    start = int(_num(a.get("start"), 0) or 0)
    end = a.get("end")
    return lst[start : int(end) if isinstance(end, (int, float)) else None]


@handles("List.cat")
def _h_list_cat(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    return list(a.get("list") or []) + list(a.get("other") or [])


@handles("List.sequence")
def _h_sequence(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    start = _num(a.get("start"), 0) or 0.0
    end, step, count = a.get("end"), a.get("step"), a.get("count")
    if isinstance(count, (int, float)):
        step = step if isinstance(step, (int, float)) else 1
        values = [start + i * step for i in range(int(count))]
    else:
        step = step if isinstance(step, (int, float)) else 1
        values = []
        v = start
        while (step > 0 and v <= float(end)) or (step < 0 and v >= float(end)):
            values.append(v)
            v += step
    ints = all(isinstance(x, int) for x in (a.get("start"), step) if x is not None)
    return [int(v) for v in values] if ints else values


@handles("List.map")
def _h_list_map(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    fn = a.get("baseAlgorithm")
    if not isinstance(fn, Closure):
        raise Unsupported("List.map needs a function.")
    out = [call_closure(ev, fn, [v]) for v in (a.get("list") or [])]
    return [v for v in out if v is not None] if a.get("dropNulls") else out


@handles("String.cat")
def _h_cat(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    return f"{a.get('string1', '')}{a.get('string2', '')}"


@handles("Projection")
def _h_projection(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    t = a.get("transform")
    return Proj(
        str(a.get("crs")) if a.get("crs") else None,
        [float(x) for x in t] if isinstance(t, list) and len(t) == 6 else None,
    )


@handles("Projection.atScale")
def _h_at_scale(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    proj = a.get("projection")
    crs = proj.crs if isinstance(proj, Proj) else None
    return Proj(crs, None, _num(a.get("meters")))


# -- pixel types -------------------------------------------------------------------------------


def cast_values(values: np.ndarray, dtype: str) -> np.ndarray:
    """Float values → the pixels of `dtype`, as a typed export writes them."""
    return cast_pixels(values, dtype)


def python_value(v: Any) -> Any:
    """A numpy scalar → a plain int/float for JSON."""
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        f = float(v)
        return f if math.isfinite(f) else None
    return v
