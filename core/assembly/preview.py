"""What a session has assembled, for a person to look at: each product with what it is made of
(from `products.plan` over the store's verified files), a quicklook as RGB pixels small enough
for a terminal, a merged table's first rows and row count, and the periods still missing.

Pure reading (rasterio, pandas, the store's named queries); no UI. Call it off the UI's event
loop: it opens files.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.assembly.products import output_kind, plan
from core.states import UNFINISHED

HEAD_ROWS = 5


@dataclass(frozen=True)
class MosaicView:
    period: str
    batch: int | None
    vrt: Path
    quicklook: Path
    cog: Path | None  # when one was made
    tiles: int  # whole tiles in it
    parts: int  # split parts in it
    files: int
    made: bool  # its VRT is on disk
    size: tuple[int, int] | None = None  # the mosaic's width, height in pixels

    @property
    def label(self) -> str:
        return self.period + (f" batch {self.batch}" if self.batch is not None else "")


@dataclass(frozen=True)
class TableView:
    csv: Path
    parquet: Path | None
    files: int
    made: bool
    rows: int = 0
    columns: tuple[str, ...] = ()
    head: tuple[tuple[str, ...], ...] = ()
    note: str | None = None


@dataclass(frozen=True)
class Missing:
    period: str
    done: int  # tiles whose every unit settled
    total: int


@dataclass
class Results:
    kind: str  # "image" or "table"
    mosaics: list[MosaicView] = field(default_factory=list)
    table: TableView | None = None
    missing: list[Missing] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(m.made for m in self.mosaics) and not (self.table and self.table.made)


def missing_periods(units: list[Any]) -> list[Missing]:
    """Periods some of whose tiles a worker still has to do: per period, how many of its
    planned tiles are done (the tile and every split part of it settled)."""
    tiles: dict[str, set[str]] = {}
    open_: dict[str, set[str]] = {}
    for u in units:
        tile = str(u["tile"]).split(".")[0]
        tiles.setdefault(u["period"], set()).add(tile)
        if u["state"] in UNFINISHED:
            open_.setdefault(u["period"], set()).add(tile)
    return [Missing(p, len(tiles[p]) - len(open_[p]), len(tiles[p]))
            for p in sorted(open_)]


def collect(store: Any, spec: Any) -> Results:
    """The session's products and what is still missing, as the files on disk say now."""
    kind = output_kind(spec)
    results = Results(kind)
    for work in plan(store.product_files(), spec, tables=True):
        if work.mosaic is not None:
            p = work.mosaic
            parts = sum("." in t for t in set(work.tiles))
            made = p.vrt.exists()
            key = work.key.split()
            batch = int(key[2][1:]) if len(key) > 2 else None
            results.mosaics.append(MosaicView(
                key[1], batch, p.vrt, p.quicklook, p.cog if p.cog.exists() else None,
                len(set(work.tiles)) - parts, parts, len(work.files), made,
                mosaic_size(p.vrt) if made else None))
        elif work.table is not None:
            t = work.table
            made = t.csv.exists()
            view = TableView(t.csv, t.parquet if t.parquet.exists() else None,
                             len(work.sources), made, note=work.note)
            if made:
                rows, columns, head = read_table(t.csv, t.parquet)
                view = TableView(view.csv, view.parquet, view.files, True, rows, columns,
                                 head, work.note)
            results.table = view
    results.missing = missing_periods(store.units())
    return results


def mosaic_size(vrt: Path) -> tuple[int, int] | None:
    import rasterio

    try:
        with rasterio.open(vrt) as src:
            return src.width, src.height
    except Exception:  # being replaced, or unreadable: the view says so by leaving it out
        return None


def read_quicklook(path: Path, width: int, height: int) -> np.ndarray | None:
    """The quicklook PNG as RGB (uint8, rows × cols × 3) fitted inside `width` × `height`
    pixels, its aspect kept; transparent pixels (no tile there) black. None if unreadable."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.errors import NotGeoreferencedWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                scale = min(width / src.width, height / src.height, 1.0)
                w = max(1, round(src.width * scale))
                h = max(1, round(src.height * scale))
                data = src.read(out_shape=(src.count, h, w), resampling=Resampling.average)
    except Exception:
        return None
    # grey (and alpha): the grey three times
    rgb = np.repeat(data[:1], 3, axis=0) if data.shape[0] in (1, 2) else data[:3]
    if data.shape[0] in (2, 4):  # an alpha band: blank where nothing covers
        rgb = np.where(data[-1:] > 0, rgb, 0)
    return np.ascontiguousarray(rgb.transpose(1, 2, 0)).astype(np.uint8)


def read_table(csv: Path, parquet: Path | None,
               n: int = HEAD_ROWS) -> tuple[int, tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """(row count, columns, the first `n` rows as text) of a merged table: the count from
    the Parquet file's metadata when there is one, else by reading the CSV."""
    import pandas as pd

    head = pd.read_csv(csv, dtype=str, keep_default_na=False, nrows=n)
    rows: int | None = None
    if parquet is not None:
        try:
            import pyarrow.parquet as pq

            rows = pq.ParquetFile(parquet).metadata.num_rows
        except Exception:
            rows = None
    if rows is None:
        rows = sum(len(chunk) for chunk in pd.read_csv(csv, dtype=str, chunksize=100_000,
                                                       usecols=[0]))
    return (rows, tuple(str(c) for c in head.columns),
            tuple(tuple(str(v) for v in row) for row in head.itertuples(index=False)))
