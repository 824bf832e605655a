"""One synthetic world that every output of the emulator reads: exported GeoTIFFs, reduceRegion
statistics, sampled points and the features a classifier is trained on and applied to.

The world is a few smooth fields over longitude/latitude, each a seeded sum of plane sinusoids
(wavelengths from 5 degrees down to about 0.02 degree, ~2 km):

* `veg` (0..1): vegetation cover; `vegsea`: how much it swings with the season (more towards the
  poles, opposite in the southern hemisphere);
* `water` (0..1): open water, a steep sigmoid of its own sum, so lakes have shores;
* `texture` (-1..1): fine detail; `relief` (0..1): terrain, for elevation-like bands.

A band's value mixes these: a reflectance band (Landsat SR_B1..SR_B7, Sentinel-2 B1..B12) is
water, soil and vegetation spectra weighted by `water` and the seasonal vegetation, scaled to the
collection's digital numbers (Landsat Collection 2 L2: (reflectance + 0.2) / 2.75e-5, about
7,300..30,000; Sentinel-2 SR: reflectance x 10,000). Spectral indices by name (NDVI, nd, NDWI,
MNDWI, NBR, NDBI, EVI, SAVI) are computed from the same reflectances and lie in [-1, 1]; a
class-like band (class, classification, landcover, label) holds the integers 0 water, 1 bare,
2 sparse, 3 dense vegetation; elevation-like bands are metres; QA_PIXEL and SCL say clear land
or water; any other name is a seeded smooth mixture in [0, 1].

Time enters through one term: the mean of a yearly sinusoid (peak mid-July in the north) over the
image's date span, so a composite of a batch of images uses its images' span; no span = 0.

On a pixel grid (`Pixels`), the fields are computed exactly at anchor pixels every K-th global
row and column of the grid's lattice (K a power of two so anchors are at most ~500 m apart; K=1,
every pixel exact, from 500 m pixels up) and bilinearly interpolated between. The anchors depend
only on the lattice (CRS, origin, pixel size), so a pixel's value depends only on the lattice
and the pixel's global row and column: shards of an export, a reduction and a sampled point on
the same lattice see bit-identical values. Projected grids reach longitude/latitude through pyproj
at the anchors only, which keeps an export of millions of pixels cheap.
"""

from __future__ import annotations

import itertools
import math
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import numpy as np

METRES_PER_DEGREE = 111_319.49
ANCHOR_METRES = 500.0  # anchors at most this far apart on a grid
MAX_K = 32
# Per-pixel arithmetic (interpolation, mixing) runs in float32: exactly rounded, so a pixel's
# value is the same whichever array it is computed in; transcendental functions run only at
# anchors, in float64.
DTYPE = np.float32
DAY_MS = 86_400_000.0
YEAR_DAYS = 365.2425
# Day of year whose sinusoid phase is 0: the seasonal peak is a quarter-year later (mid-July).
SEASON_ZERO_DOY = 105.0

FIELDS = ("veg", "vegsea", "water", "texture", "relief", "lon", "lat")

# Reflectance (0..1) of water, bare soil and green vegetation per spectral role.
_SPECTRA: dict[str, tuple[float, float, float]] = {
    "coastal": (0.09, 0.09, 0.03),
    "blue": (0.08, 0.10, 0.03),
    "green": (0.07, 0.14, 0.08),
    "red": (0.05, 0.18, 0.04),
    "rededge1": (0.04, 0.20, 0.12),
    "rededge2": (0.03, 0.22, 0.30),
    "rededge3": (0.025, 0.24, 0.38),
    "nir": (0.02, 0.25, 0.42),
    "nir2": (0.02, 0.26, 0.43),
    "vapour": (0.01, 0.10, 0.15),
    "cirrus": (0.003, 0.005, 0.005),
    "swir1": (0.01, 0.32, 0.20),
    "swir2": (0.005, 0.26, 0.10),
}
_ROLE_INDEX = {r: i for i, r in enumerate(_SPECTRA)}
_L89 = dict(
    zip(
        [f"SR_B{i}" for i in range(1, 8)],
        ["coastal", "blue", "green", "red", "nir", "swir1", "swir2"],
        strict=True,
    )
)
_L457 = dict(
    zip(
        ["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B7"],
        ["blue", "green", "red", "nir", "swir1", "swir2"],
        strict=True,
    )
)
_S2 = {
    "B1": "coastal",
    "B2": "blue",
    "B3": "green",
    "B4": "red",
    "B5": "rededge1",
    "B6": "rededge2",
    "B7": "rededge3",
    "B8": "nir",
    "B8A": "nir2",
    "B9": "vapour",
    "B10": "cirrus",
    "B11": "swir1",
    "B12": "swir2",
}
# Source kinds: how a collection names its bands and scales reflectance.
LANDSAT89, LANDSAT457, SENTINEL2 = "landsat89", "landsat457", "sentinel2"
SOURCES = {
    "LANDSAT/LC08/C02/T1_L2": LANDSAT89,
    "LANDSAT/LC09/C02/T1_L2": LANDSAT89,
    "LANDSAT/LE07/C02/T1_L2": LANDSAT457,
    "LANDSAT/LT05/C02/T1_L2": LANDSAT457,
    "COPERNICUS/S2_SR_HARMONIZED": SENTINEL2,
    "COPERNICUS/S2_SR": SENTINEL2,
}
_INDICES: dict[str, tuple[str, str]] = {
    "nd": ("nir", "red"),
    "ndvi": ("nir", "red"),
    "ndwi": ("green", "nir"),
    "mndwi": ("green", "swir1"),
    "nbr": ("nir", "swir2"),
    "ndbi": ("swir1", "nir"),
    "ndmi": ("nir", "swir1"),
}
_CLASS_NAMES = {"class", "classification", "landcover", "land_cover", "label", "lc", "cover"}
_ELEVATION_NAMES = {"elevation", "dem", "height", "altitude", "elev"}

Span = tuple[float, float]  # milliseconds since the epoch, start <= end


def source_kind(collection_id: str | None) -> str | None:
    """The kind of a catalog collection (or image) id, or None."""
    if not collection_id:
        return None
    cid = collection_id.removeprefix("projects/earthengine-public/assets/")
    for prefix, kind in SOURCES.items():
        if cid == prefix or cid.startswith(prefix + "/"):
            return kind
    return None


def date_ms(text: str | float | int) -> float:
    """'2023-06-01' (or an ISO time, or milliseconds) → milliseconds since the epoch, UTC."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    s = str(text).strip().replace("Z", "+00:00")
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp() * 1000.0


def season(span: Span | None) -> float:
    """Mean of the yearly sinusoid over `span` (0 when there is no date), in [-1, 1]."""
    if span is None:
        return 0.0
    t0, t1 = (t / DAY_MS for t in span)
    a0 = 2 * math.pi * (t0 - SEASON_ZERO_DOY) / YEAR_DAYS
    a1 = 2 * math.pi * (t1 - SEASON_ZERO_DOY) / YEAR_DAYS
    if a1 - a0 < 1e-9:
        return math.sin(a0)
    return (math.cos(a0) - math.cos(a1)) / (a1 - a0)


# -- the exact fields -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Waves:
    kx: np.ndarray  # cycles per degree of longitude
    ky: np.ndarray
    phase: np.ndarray
    amp: np.ndarray

    def __call__(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        out = np.zeros(np.shape(lon), dtype=np.float64)
        for kx, ky, ph, amp in zip(self.kx, self.ky, self.phase, self.amp, strict=True):
            out += amp * np.sin(2 * math.pi * (kx * lon + ky * lat) + ph)
        return out / math.sqrt(float(np.sum(self.amp**2)) / 2)  # about unit variance


def _waves(seed: int, name: str, wavelengths: list[float], amps: list[float]) -> _Waves:
    rng = np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(name.encode())])
    theta = rng.uniform(0, 2 * math.pi, len(wavelengths))
    k = 1.0 / np.asarray(wavelengths)
    return _Waves(
        k * np.cos(theta),
        k * np.sin(theta),
        rng.uniform(0, 2 * math.pi, len(wavelengths)),
        np.asarray(amps, dtype=np.float64),
    )


class World:
    """The world of one seed. `fields(lon, lat)` is exact; `bands(...)` mixes fields into
    band values; `value(...)` is both at arbitrary places."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._veg = _waves(seed, "veg", [5.0, 1.3, 0.35, 0.12, 0.05], [1.0, 0.8, 0.7, 0.6, 0.45])
        self._water = _waves(seed, "water", [3.0, 0.8, 0.2, 0.07], [1.0, 0.7, 0.6, 0.5])
        self._texture = _waves(seed, "texture", [0.045, 0.021], [1.0, 0.7])
        self._relief = _waves(seed, "relief", [4.0, 1.1, 0.3, 0.08], [1.0, 0.6, 0.4, 0.2])

    def field(self, name: str, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """One field, exactly, at the given places (degrees, WGS 84)."""
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        if name == "lon":
            return lon.copy()
        if name == "lat":
            return lat.copy()
        if name == "veg":
            return 0.5 + 0.5 * np.tanh(1.2 * self._veg(lon, lat))
        if name == "vegsea":
            return 0.35 * self.field("veg", lon, lat) * np.tanh(lat / 3.0)
        if name == "water":
            return 1.0 / (1.0 + np.exp(-8.0 * (self._water(lon, lat) - 1.1)))
        if name == "texture":
            return np.clip(self._texture(lon, lat) / 1.5, -1.0, 1.0)
        if name == "relief":
            return 0.5 + 0.5 * np.tanh(0.8 * self._relief(lon, lat))
        raise KeyError(name)

    def value(
        self,
        band: str,
        lon: Any,
        lat: Any,
        span: Span | None = None,
        source: str | None = None,
    ) -> np.ndarray:
        """The band's value at the places (exact fields, no grid)."""
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        cache: dict[str, np.ndarray] = {}

        def get(name: str) -> np.ndarray:
            if name not in cache:
                cache[name] = self.field(name, lon, lat)
            return cache[name]

        return band_value(band, get, span, source, self.seed)


@lru_cache(maxsize=8)
def world(seed: int) -> World:
    return World(seed)


def value(
    band: str,
    lon: Any,
    lat: Any,
    span: Span | None = None,
    seed: int = 0,
    source: str | None = None,
) -> np.ndarray:
    """The value of `band` at (lon, lat) over the date span, in the world of `seed`
    (vectorised; exact fields, as at an anchor pixel)."""
    return world(seed).value(band, lon, lat, span, source)


# -- fields to bands --------------------------------------------------------------------------

FieldGetter = Callable[[str], np.ndarray]


def _veg_now(get: FieldGetter, s: float) -> np.ndarray:
    if s == 0.0:
        return get("veg")
    return np.clip(get("veg") + get("vegsea") * s, 0.0, 1.0)


def reflectance(role: str, get: FieldGetter, s: float) -> np.ndarray:
    """Surface reflectance (0..~0.5) of a spectral role."""
    w_r, s_r, v_r = _SPECTRA[role]
    veg = _veg_now(get, s)
    water = get("water")
    land = s_r + (v_r - s_r) * veg
    jitter = 0.012 * (1.0 + 0.1 * _ROLE_INDEX[role])
    return np.clip(land + (w_r - land) * water + jitter * get("texture"), 0.001, 1.0)


def _nd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (a - b) / (a + b)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _role(band: str, source: str | None) -> str | None:
    if source == LANDSAT457:
        return _L457.get(band)
    if source == SENTINEL2:
        return _S2.get(band)
    if source == LANDSAT89:
        return _L89.get(band)
    return _L89.get(band) or _S2.get(band)


def _dn(refl: np.ndarray, band: str, source: str | None) -> np.ndarray:
    if source == SENTINEL2 or (source is None and band in _S2):
        return np.clip(refl, 0.0, 6.5) * 10_000.0
    return (np.clip(refl, -0.2, 1.6) + 0.2) / 2.75e-5


def _crc(name: str) -> int:
    return zlib.crc32(name.encode())


def band_value(
    band: str, get: FieldGetter, span: Span | None, source: str | None, seed: int = 0
) -> np.ndarray:
    """Mix the fields (`get(name)` → array) into the value of `band`."""
    s = season(span)
    role = _role(band, source)
    if role is not None:
        return _dn(reflectance(role, get, s), band, source)
    low = band.lower()
    if low in _INDICES:
        a, b = _INDICES[low]
        return _nd(reflectance(a, get, s), reflectance(b, get, s))
    if low == "evi":
        nir, red, blue = (reflectance(r, get, s) for r in ("nir", "red", "blue"))
        with np.errstate(divide="ignore", invalid="ignore"):
            evi = 2.5 * (nir - red) / (nir + 6 * red - 7.5 * blue + 1)
        return np.clip(np.nan_to_num(evi), -1.0, 1.0)
    if low == "savi":
        nir, red = reflectance("nir", get, s), reflectance("red", get, s)
        return 1.5 * (nir - red) / (nir + red + 0.5)
    if band in ("ST_B10", "ST_B6"):
        veg, water = _veg_now(get, s), get("water")
        kelvin = 292.0 + 14.0 * (1 - veg) * (1 - water) - 6.0 * water + 9.0 * s
        return (kelvin - 149.0) / 0.00341802
    if band == "QA_PIXEL":
        return np.where(get("water") > 0.5, 21952.0, 21824.0)
    if band == "SCL":
        veg, water = _veg_now(get, s), get("water")
        return np.where(water > 0.5, 6.0, np.where(veg > 0.4, 4.0, 5.0))
    if low in _CLASS_NAMES:
        veg, water = _veg_now(get, s), get("water")
        cls = np.where(veg > 0.65, 3.0, np.where(veg > 0.35, 2.0, 1.0))
        return np.where(water > 0.5, 0.0, cls)
    if low in _ELEVATION_NAMES:
        return (1.0 - get("water")) * (20.0 + 2800.0 * get("relief") ** 2)
    if band in ("longitude", "latitude"):
        return get("lon" if band == "longitude" else "lat").copy()
    # Anything else: a smooth mixture of the fields chosen by the name.
    h = _crc(f"{seed}:{band}")
    a, b, c = ((h >> k) % 97 / 96.0 - 0.5 for k in (0, 8, 16))
    mix = a * (get("veg") - 0.5) + b * (get("relief") - 0.5) + c * get("texture") * 0.3
    return 0.5 + 0.5 * np.tanh(2.0 * mix + 0.3 * s * a)


# -- pixel grids ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lattice:
    """A grid's lattice: pixel (row r, col c) has its centre at
    (ox + (c + 0.5) dx, oy - (r + 0.5) dy) in `crs`; r and c are global indices."""

    crs: str
    ox: float
    oy: float
    dx: float
    dy: float
    geographic: bool

    @property
    def k(self) -> int:
        """Anchor spacing in pixels: the largest power of two with anchors <= ANCHOR_METRES
        apart (1..MAX_K)."""
        metres = self.dx * METRES_PER_DEGREE if self.geographic else self.dx
        if metres <= 0 or not math.isfinite(metres):
            return 1
        k = 1
        while k * 2 <= MAX_K and k * 2 * metres <= ANCHOR_METRES:
            k *= 2
        return k

    def centres(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Longitude/latitude of the centres of pixels (rows[i], cols[i]), exactly."""
        x = self.ox + (np.asarray(cols, dtype=np.float64) + 0.5) * self.dx
        y = self.oy - (np.asarray(rows, dtype=np.float64) + 0.5) * self.dy
        if self.geographic:
            return x, y
        return _to_lonlat(self.crs)(x, y)

    def index_of(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global (rows, cols) of the pixels containing the places."""
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        if self.geographic:
            x, y = lon, lat
        else:
            x, y = _from_lonlat(self.crs)(lon, lat)
        cols = np.floor((x - self.ox) / self.dx).astype(np.int64)
        rows = np.floor((self.oy - y) / self.dy).astype(np.int64)
        return rows, cols


_TRANSFORMERS = threading.local()  # pyproj transformers are not shared between threads


def _transformer(src: str, dst: str) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    cache = getattr(_TRANSFORMERS, "cache", None)
    if cache is None:
        cache = _TRANSFORMERS.cache = {}
    if (src, dst) not in cache:
        from pyproj import Transformer

        cache[(src, dst)] = Transformer.from_crs(src, dst, always_xy=True).transform
    return cache[(src, dst)]


def _to_lonlat(crs: str) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    return _transformer(crs, "EPSG:4326")


def _from_lonlat(crs: str) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    return _transformer("EPSG:4326", crs)


@dataclass
class Pixels:
    """Pixel centres of a lattice where the world is evaluated: a window of rows x cols
    (`shape` (h, w)) or a list of pixels (`shape` (n,)).

    `band(...)` of a continuous band is the band's exact value at the surrounding anchor pixels,
    interpolated bilinearly; a discrete band (classes, QA) is computed from interpolated fields
    so it stays integral. Interpolation runs in float32 (exactly rounded, so a pixel's value is
    the same in any window, strip or list of points holding it); anchors in float64."""

    world: World
    lattice: Lattice
    rows: np.ndarray  # window: its h global rows; points: n global rows
    cols: np.ndarray  # window: its w global cols; points: n global cols
    window: bool
    # A strip of a window: the window's first and last global rows (anchors are shared).
    parent_rows: tuple[int, int] | None = None
    _cache: dict[Any, np.ndarray] = field(default_factory=dict, repr=False)
    _anchors: dict[Any, Any] = field(default_factory=dict, repr=False)
    # Values computed from these pixels by others (compute.Img caches its bands here).
    memo: dict[Any, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def grid_window(
        cls, world: World, lattice: Lattice, row0: int, col0: int, h: int, w: int
    ) -> Pixels:
        rows = np.arange(row0, row0 + h, dtype=np.int64)
        cols = np.arange(col0, col0 + w, dtype=np.int64)
        return cls(world, lattice, rows, cols, True)

    @classmethod
    def points(cls, world: World, lattice: Lattice, rows: Any, cols: Any) -> Pixels:
        return cls(
            world,
            lattice,
            np.asarray(rows, dtype=np.int64).ravel(),
            np.asarray(cols, dtype=np.int64).ravel(),
            False,
        )

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), len(self.cols)) if self.window else (len(self.rows),)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def strips(self, target: int = 262_144) -> list[Pixels]:
        """The window as row strips of about `target` pixels (whole runs between anchor rows),
        each sharing this window's anchors."""
        if not self.window or len(self.rows) == 0:
            return [self]
        k = self.lattice.k
        step = max(k, (target // max(len(self.cols), 1)) // k * k)
        first, last = self.parent_rows or (int(self.rows[0]), int(self.rows[-1]))
        # Cut at anchor rows, so no run between two anchor rows is split.
        cuts = [0]
        r0 = int(self.rows[0])
        nxt = (r0 // k) * k + step
        while nxt - r0 < len(self.rows):
            cuts.append(nxt - r0)
            nxt += step
        cuts.append(len(self.rows))
        return [
            Pixels(
                self.world,
                self.lattice,
                self.rows[a:b],
                self.cols,
                True,
                (first, last),
                {},
                self._anchors,
            )
            for a, b in itertools.pairwise(cuts)
            if b > a
        ]

    # -- anchors ----------------------------------------------------------------------------

    def _anchor_places(self) -> tuple[np.ndarray, np.ndarray]:
        """Longitude/latitude of the anchors: for a window the (rows x cols) block around it
        (shared by its strips), for points the four anchors around each point (4n)."""
        if "ll" not in self._anchors:
            k = self.lattice.k
            if self.window:
                first, last = self.parent_rows or (int(self.rows[0]), int(self.rows[-1]))
                ar = np.arange(first // k, last // k + 2, dtype=np.int64) * k
                ac = (
                    np.arange(int(self.cols[0]) // k, int(self.cols[-1]) // k + 2, dtype=np.int64)
                    * k
                )
                rr, cc = np.repeat(ar, len(ac)), np.tile(ac, len(ar))
                self._anchors["shape"] = (len(ar), len(ac))
                self._anchors["origin"] = (first // k, int(self.cols[0]) // k)
            else:
                r0 = (self.rows // k) * k
                c0 = (self.cols // k) * k
                rr = np.concatenate([r0, r0, r0 + k, r0 + k])
                cc = np.concatenate([c0, c0 + k, c0, c0 + k])
            self._anchors["ll"] = self.lattice.centres(rr, cc)
        return self._anchors["ll"]

    def _anchor_values(self, key: Any, fn: Callable[[FieldGetter], np.ndarray]) -> np.ndarray:
        """fn(field getter at the anchors) → float32 anchor values, cached by `key`."""
        if ("v", key) not in self._anchors:
            lon, lat = self._anchor_places()

            def get(name: str) -> np.ndarray:
                if ("f", name) not in self._anchors:
                    self._anchors[("f", name)] = self.world.field(name, lon, lat)
                return self._anchors[("f", name)]

            values = np.asarray(fn(get), dtype=np.float64)
            if self.window:
                values = values.reshape(self._anchors["shape"])
            self._anchors[("v", key)] = values.astype(DTYPE)
        return self._anchors[("v", key)]

    def _interp(self, key: Any, fn: Callable[[FieldGetter], np.ndarray]) -> np.ndarray:
        if key in self._cache:
            return self._cache[key]
        anchors = self._anchor_values(key, fn)
        k = self.lattice.k
        if self.window:
            ar0, ac0 = self._anchors["origin"]
            if "cols" not in self._anchors:
                fc = ((self.cols % k) / k).astype(DTYPE)
                self._anchors["cols"] = (1 - fc, fc, self.cols // k - ac0)
            gc, fc, ic = self._anchors["cols"]
            ir = self.rows // k - ar0
            lo, hi = int(ir[0]), int(ir[-1])
            part = anchors[lo : hi + 2]
            t = gc * part[:, ic] + fc * part[:, ic + 1]  # along the columns first
            fr = ((self.rows % k) / k).astype(DTYPE)[:, None]
            out = np.empty(self.shape, dtype=DTYPE)
            start = 0
            for j in range(hi - lo + 1):  # each run of rows between two anchor rows
                stop = start + int(np.count_nonzero(ir == lo + j))
                f = fr[start:stop]
                out[start:stop] = (1 - f) * t[j] + f * t[j + 1]
                start = stop
        else:
            n = len(self.rows)
            a00, a01, a10, a11 = (anchors[i * n : (i + 1) * n] for i in range(4))
            fc = ((self.cols % k) / k).astype(DTYPE)
            fr = ((self.rows % k) / k).astype(DTYPE)
            t0 = (1 - fc) * a00 + fc * a01
            t1 = (1 - fc) * a10 + fc * a11
            out = (1 - fr) * t0 + fr * t1
        self._cache[key] = out
        return out

    def field(self, name: str) -> np.ndarray:
        """A world field at these pixels (bilinear between anchors, exact at anchors)."""
        return self._interp(("field", name), lambda get: get(name))

    def band(self, name: str, span: Span | None = None, source: str | None = None) -> np.ndarray:
        """The band's value at these pixels (float32)."""
        if is_discrete(name):
            key = ("discrete", name, span, source)
            if key not in self._cache:
                self._cache[key] = band_value(name, self.field, span, source, self.world.seed)
            return self._cache[key]
        seed = self.world.seed
        return self._interp(
            ("band", name, span, source),
            lambda get: band_value(name, get, span, source, seed),
        )


def is_discrete(band: str) -> bool:
    """Bands of integral codes (classes, QA): computed from fields, never interpolated."""
    return band in ("QA_PIXEL", "SCL") or band.lower() in _CLASS_NAMES
