"""A period's mosaic from its verified GeoTIFFs: a GDAL VRT over every file (tiles, split
parts, EE's shards), a quicklook PNG of it, and on request a Cloud-Optimized GeoTIFF.

The VRT is written here as XML (rasterio has no BuildVRT): one source per file, placed by its
georeferencing on the pixel lattice of the first file, its path relative to the VRT (the folder
can move), the band names as descriptions, nodata when the files have one. Tiles of an aligned
grid (`grid.align`) sit edge to edge on one lattice, so the mosaic has no seam, gap or overlap.

Everything is written to a temporary name beside its target and renamed, and is a function of
the files alone: assembling twice gives byte-identical VRT and PNG. The VRT is written last and
carries a digest of its sources (their paths and MD5s), so a product whose VRT holds the digest
of the files now verified is complete and current (`up_to_date`).
"""

from __future__ import annotations

import glob
import math
import os
import re
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np

from core.outputs.bands import read_band_names
from core.paths import relative
from core.processes import pid_alive

DIGEST_KEY = "EEBATCH_SOURCES"  # dataset metadata item of the VRT (and the COG made from it)
QUICKLOOK_LONG = (256, 1024)  # the quicklook's long side: the mosaic's, within these bounds
STRETCH = (2.0, 98.0)  # per-band percentiles mapped to black and white
# A colour ramp for one band (viridis' anchors): low values dark blue, high ones yellow.
RAMP = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)],
                dtype=np.float64)
OFF_LATTICE = 1e-3  # pixels: a source further off the first file's lattice is "not aligned"
GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16",
              "uint32": "UInt32", "int32": "Int32", "uint64": "UInt64", "int64": "Int64",
              "float32": "Float32", "float64": "Float64"}


class Cancelled(Exception):
    """The worker is stopping: the product is left as it was (its next start redoes it)."""


@dataclass(frozen=True)
class MosaicPaths:
    """Where a period's mosaic lands: beside its files, in the period's folder."""

    vrt: Path
    quicklook: Path
    cog: Path

    @classmethod
    def beside(cls, folder: Path, stem: str) -> MosaicPaths:
        return cls(folder / f"{stem}.vrt", folder / f"{stem}.png", folder / f"{stem}.tif")


@dataclass(frozen=True)
class Header:
    """What the VRT needs of one source file."""

    path: Path
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None
    transform: tuple[float, float, float, float, float, float]  # GDAL order: x0, a, b, y0, d, e
    crs_wkt: str
    block: tuple[int, int]  # width, height


@dataclass
class Mosaic:
    """What one assembly made."""

    paths: MosaicPaths
    width: int = 0
    height: int = 0
    sources: int = 0
    left_out: list[str] = field(default_factory=list)  # "file: why", for the log
    aligned: bool = True
    quicklook_size: tuple[int, int] = (0, 0)
    cog: bool = False


def read_header(path: Path) -> Header:
    import rasterio

    with rasterio.open(path) as src:
        t = src.transform
        return Header(path, src.width, src.height, src.count, src.dtypes[0], src.nodata,
                      (t.c, t.a, t.b, t.f, t.d, t.e), src.crs.to_wkt() if src.crs else "",
                      tuple(src.block_shapes[0][::-1]))  # type: ignore[arg-type]


def _fits(first: Header, other: Header) -> str | None:
    """Why `other` cannot join a mosaic whose first file is `first` (None: it can)."""
    if other.crs_wkt != first.crs_wkt:
        return "another CRS"
    if other.count != first.count or other.dtype != first.dtype:
        return f"{other.count} {other.dtype} bands, not {first.count} {first.dtype}"
    if other.transform[2] or other.transform[4]:
        return "a rotated grid"
    if not (math.isclose(other.transform[1], first.transform[1], rel_tol=1e-9) and
            math.isclose(other.transform[5], first.transform[5], rel_tol=1e-9)):
        return "another pixel size"
    return None


@dataclass(frozen=True)
class Layout:
    """The mosaic's grid and where each source goes in it (pixel offsets)."""

    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    offsets: list[tuple[int, int]]
    aligned: bool  # every source on the first one's pixel lattice


def layout(headers: Sequence[Header]) -> Layout:
    x0, a, _, y0, _, e = headers[0].transform
    places = [((h.transform[0] - x0) / a, (h.transform[3] - y0) / e) for h in headers]
    offsets = [(round(x), round(y)) for x, y in places]
    aligned = all(abs(x - ox) <= OFF_LATTICE and abs(y - oy) <= OFF_LATTICE
                  for (x, y), (ox, oy) in zip(places, offsets, strict=True))
    left = min(x for x, _ in offsets)
    top = min(y for _, y in offsets)
    offsets = [(x - left, y - top) for x, y in offsets]
    width = max(x + h.width for (x, _), h in zip(offsets, headers, strict=True))
    height = max(y + h.height for (_, y), h in zip(offsets, headers, strict=True))
    return Layout((x0 + left * a, a, 0.0, y0 + top * e, 0.0, e), width, height, offsets, aligned)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _axis_mapping(wkt: str) -> str:
    """GDAL's dataAxisToSRSAxisMapping for a CRS whose coordinates the files give x first
    (easting/longitude): "2,1" when the CRS itself names northing/latitude first."""
    if not wkt:
        return ""
    from pyproj import CRS

    axes = CRS.from_wkt(wkt).axis_info
    return "2,1" if axes and axes[0].direction in ("north", "south") else "1,2"


def vrt_xml(headers: Sequence[Header], grid: Layout, band_names: Sequence[str], folder: Path,
            digest: str) -> bytes:
    first = headers[0]
    root = ET.Element("VRTDataset", rasterXSize=str(grid.width), rasterYSize=str(grid.height))
    if first.crs_wkt:
        ET.SubElement(root, "SRS", dataAxisToSRSAxisMapping=_axis_mapping(first.crs_wkt)
                      ).text = first.crs_wkt
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(float(v)) for v in grid.transform)
    metadata = ET.SubElement(root, "Metadata")
    ET.SubElement(metadata, "MDI", key=DIGEST_KEY).text = digest
    gdal_type = GDAL_TYPES.get(first.dtype, first.dtype)
    for band in range(1, first.count + 1):
        vrt_band = ET.SubElement(root, "VRTRasterBand", dataType=gdal_type, band=str(band))
        if band <= len(band_names) and band_names[band - 1]:
            ET.SubElement(vrt_band, "Description").text = band_names[band - 1]
        if first.nodata is not None:
            ET.SubElement(vrt_band, "NoDataValue").text = _number(first.nodata)
        for header, (x, y) in zip(headers, grid.offsets, strict=True):
            # A source with nodata is a ComplexSource, so its nodata never covers a neighbour.
            source = ET.SubElement(vrt_band, "ComplexSource" if header.nodata is not None
                                   else "SimpleSource")
            ET.SubElement(source, "SourceFilename", relativeToVRT="1").text = \
                Path(relative(header.path, folder)).as_posix()
            ET.SubElement(source, "SourceBand").text = str(band)
            ET.SubElement(source, "SourceProperties", RasterXSize=str(header.width),
                          RasterYSize=str(header.height), DataType=gdal_type,
                          BlockXSize=str(header.block[0]), BlockYSize=str(header.block[1]))
            size = {"xSize": str(header.width), "ySize": str(header.height)}
            ET.SubElement(source, "SrcRect", xOff="0", yOff="0", **size)
            ET.SubElement(source, "DstRect", xOff=str(x), yOff=str(y), **size)
            if header.nodata is not None:
                ET.SubElement(source, "NODATA").text = _number(header.nodata)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8") + b"\n"


def temporary(path: Path) -> Path:
    """A temporary name beside `path`, unique to this process and thread."""
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")


def remove_stale_temporaries(targets: Sequence[Path]) -> None:
    """Remove what an assembly killed mid-way (kill -9, power loss) left beside `targets`:
    the temporaries of processes that are gone."""
    for target in targets:
        for tmp in target.parent.glob(f".{glob.escape(target.name)}*.tmp"):
            m = re.fullmatch(rf"\.{re.escape(target.name)}(?:\.staged\.vrt)?\.(\d+)-\d+\.tmp",
                             tmp.name)
            if m and not pid_alive(int(m[1])):
                tmp.unlink(missing_ok=True)




def write_atomic(path: Path, data: bytes) -> None:
    tmp = temporary(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def vrt_digest(path: Path) -> str | None:
    """The source digest a VRT written here carries (None: no such VRT, or not ours)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    for item in root.iterfind("Metadata/MDI"):
        if item.get("key") == DIGEST_KEY:
            return item.text
    return None


def cog_digest(path: Path) -> str | None:
    import rasterio
    from rasterio.errors import RasterioIOError

    if not path.exists():
        return None
    try:
        with rasterio.open(path) as src:
            return src.tags().get(DIGEST_KEY)
    except RasterioIOError:
        return None


def up_to_date(paths: MosaicPaths, digest: str) -> bool:
    """Whether the product on disk was made from exactly these sources: its VRT (written
    last) carries their digest, its quicklook is there, and a COG, if there is one, too."""
    if vrt_digest(paths.vrt) != digest or not paths.quicklook.exists():
        return False
    return not paths.cog.exists() or cog_digest(paths.cog) == digest


def quicklook_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of the quicklook: the mosaic's long side brought within
    QUICKLOOK_LONG, the other in proportion."""
    long = max(width, height)
    low, high = QUICKLOOK_LONG
    target = min(max(long, low), high)
    return (max(1, round(width * target / long)), max(1, round(height * target / long)))


def _coverage(grid: Layout, headers: Sequence[Header], size: tuple[int, int]) -> np.ndarray:
    """Which quicklook pixels some source covers (the rest of the mosaic's box is empty)."""
    w, h = size
    fx, fy = w / grid.width, h / grid.height
    covered = np.zeros((h, w), dtype=bool)
    for header, (x, y) in zip(headers, grid.offsets, strict=True):
        covered[round(y * fy):round((y + header.height) * fy),
                round(x * fx):round((x + header.width) * fx)] = True
    return covered


def _stretch(band: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """0-255 from the band's 2nd to 98th percentile over its valid pixels."""
    values = band[valid]
    if values.size == 0:
        return np.zeros(band.shape, dtype=np.uint8)
    low, high = np.percentile(values, STRETCH)
    if high <= low:
        high = low + 1
    scaled = (band.astype(np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.nan_to_num(scaled, nan=0.0), 0, 255).round().astype(np.uint8)


def _ramp(grey: np.ndarray) -> list[np.ndarray]:
    stops = np.linspace(0, 255, len(RAMP))
    return [np.interp(grey, stops, RAMP[:, c]).round().astype(np.uint8) for c in range(3)]


def write_quicklook(vrt: Path, target: Path, grid: Layout,
                    headers: Sequence[Header]) -> tuple[int, int]:
    """The mosaic as a PNG people look at: RGB from its first three bands (one band: a colour
    ramp), each stretched from its 2nd to its 98th percentile, transparent where no file
    covers it or the files say nodata. Returns its (width, height)."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.errors import NotGeoreferencedWarning

    size = quicklook_size(grid.width, grid.height)
    w, h = size
    with rasterio.open(vrt) as src:
        bands = [1, 2, 3] if src.count >= 3 else [1]
        smaller = w < grid.width
        data = src.read(bands, out_shape=(len(bands), h, w), masked=True,
                        resampling=Resampling.average if smaller else Resampling.nearest)
    valid = _coverage(grid, headers, size) & ~np.ma.getmaskarray(data).any(axis=0)
    raw = np.ma.getdata(data)
    valid &= np.isfinite(raw).all(axis=0)
    stretched = [_stretch(raw[i], valid) for i in range(len(bands))]
    rgb = stretched if len(bands) == 3 else _ramp(stretched[0])
    planes = [*rgb, np.where(valid, 255, 0).astype(np.uint8)] if not valid.all() else rgb
    tmp = temporary(target)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(
                    tmp, "w", driver="PNG", width=w, height=h, count=len(planes),
                    dtype="uint8") as png:
                png.write(np.stack(planes))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return size


def write_cog(vrt: Path, target: Path) -> None:
    """The mosaic as one Cloud-Optimized GeoTIFF (DEFLATE, internal overviews), the VRT's
    band names and source digest carried over."""
    import rasterio
    import rasterio.shutil

    tmp = temporary(target)
    try:
        with rasterio.Env(GDAL_PAM_ENABLED="NO"):
            rasterio.shutil.copy(str(vrt), str(tmp), driver="COG", COMPRESS="DEFLATE",
                                 PREDICTOR="YES", BIGTIFF="IF_SAFER", OVERVIEWS="AUTO",
                                 RESAMPLING="AVERAGE")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled


def build_mosaic(files: Sequence[Path], paths: MosaicPaths, band_names: Sequence[str],
                 digest: str, *, cog: bool = False,
                 cancel: threading.Event | None = None) -> Mosaic:
    """Assemble the mosaic of `files` (sorted by the caller) at `paths`: the quicklook, the
    COG (when asked for, or when one is there already: it is kept current), then the VRT."""
    from rasterio.errors import RasterioIOError

    result = Mosaic(paths)
    headers: list[Header] = []
    for path in files:
        try:
            header = read_header(path)
        except RasterioIOError as exc:
            result.left_out.append(f"{path.name}: {'missing' if not path.exists() else exc}")
            continue
        problem = _fits(headers[0], header) if headers else None
        if problem:
            result.left_out.append(f"{path.name}: {problem}")
            continue
        headers.append(header)
    if not headers:
        return result
    _check(cancel)
    names = list(band_names) or read_band_names(headers[0].path)
    grid = layout(headers)
    xml = vrt_xml(headers, grid, names, paths.vrt.parent, digest)
    result.width, result.height = grid.width, grid.height
    result.sources, result.aligned = len(headers), grid.aligned
    # The VRT goes last, so one that carries this digest vouches for the rest. The quicklook
    # and the COG read it first from a temporary name.
    staged = temporary(paths.vrt.with_name(paths.vrt.name + ".staged.vrt"))
    staged.write_bytes(xml)
    try:
        result.quicklook_size = write_quicklook(staged, paths.quicklook, grid, headers)
        _check(cancel)
        if cog or paths.cog.exists():
            write_cog(staged, paths.cog)
            result.cog = True
        _check(cancel)
        write_atomic(paths.vrt, xml)
    finally:
        staged.unlink(missing_ok=True)
    return result

