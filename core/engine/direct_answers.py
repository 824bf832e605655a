"""A direct answer (core/engine/direct.py) before it counts: the file EE sent is checked
against its request (a GeoTIFF's size, bands, CRS and georeferencing; a table's shape),
written whole and synced as a part, or its parts removed. Run on the fetch threads."""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.backends.drive import VerifyError
from core.routes import PixelGrid


@dataclass(frozen=True)
class Fetched:
    title: str
    part: Path
    size: int
    md5: str


def check_image(data: bytes, grid: PixelGrid, bands: int | None) -> None:
    """The GeoTIFF EE sent is the one asked for: its size, bands, CRS and georeferencing."""
    from rasterio.crs import CRS
    from rasterio.errors import RasterioError
    from rasterio.io import MemoryFile

    try:
        with MemoryFile(data) as mem, mem.open() as ds:
            shape, count, crs, transform = (ds.height, ds.width), ds.count, ds.crs, ds.transform
    except RasterioError as exc:
        raise VerifyError(f"the GeoTIFF EE sent does not open: {exc}") from exc
    if shape != (grid.height, grid.width):
        raise VerifyError(f"EE sent {shape[1]} x {shape[0]} pixels for a request of "
                          f"{grid.width} x {grid.height}")
    if bands is not None and count != bands:
        raise VerifyError(f"EE sent {count} bands, the recipe makes {bands}")
    if crs is None or crs != CRS.from_user_input(grid.crs):
        raise VerifyError(f"EE sent the pixels in {crs}, not {grid.crs}")
    got = (transform.a, transform.b, transform.c, transform.d, transform.e, transform.f)
    step = abs(grid.transform[0])
    if any(not math.isclose(g, w, rel_tol=1e-9, abs_tol=step * 1e-6)
           for g, w in zip(got, grid.transform, strict=True)):
        raise VerifyError(f"EE sent the pixels at {got}, not at {grid.transform}")


def check_table(data: bytes) -> None:
    """A CSV with a header and rows as wide as it."""
    try:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise VerifyError(f"the table EE sent is not a CSV: {exc}") from exc
    if not rows or any(len(r) != len(rows[0]) for r in rows):
        raise VerifyError("the table EE sent has no header or rows of another width")


def write_part(part: Path, data: bytes) -> None:
    with open(part, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def remove_parts(parts: Any) -> None:
    for part in parts:
        part.unlink(missing_ok=True)
