"""A session's products, from the verified files its store records (never from a listing of
the folder): a mosaic per period (per batch, for a job cut into batches) of an image recipe,
one merged table per job of a table recipe. `plan` says what each product is made of (pure:
the worker runs it in its loop, with the store), `make` makes one (any thread; file work
only), `assemble_session` does both for `eebatch assemble`.

Where they land:
  output_dir/PERIOD/mosaic.vrt, mosaic.png, mosaic.tif (COG)   (time.period_folders, the default)
  output_dir/mosaic_PERIOD.vrt …                               (period_folders = false)
  output_dir/mosaic.vrt …                                      (a job without [time])
  output_dir/table.csv, table.parquet                          (a table recipe)
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.assembly.rasters import (
    Cancelled,
    Mosaic,
    MosaicPaths,
    build_mosaic,
    remove_stale_temporaries,
)
from core.assembly.rasters import up_to_date as mosaic_up_to_date
from core.assembly.tables import Table, TablePaths, TableSource, merge_tables
from core.assembly.tables import up_to_date as table_up_to_date
from core.paths import relative
from core.recipes import RECIPES
from core.spec import JobSpec

# Part of every digest: a product made by an eebatch that assembled differently is remade.
FORMAT = "eebatch-assembly-1"
TABLE_KEY = "table"


@dataclass(frozen=True)
class Work:
    """One product and the files it is made of."""

    key: str  # "mosaic 20230601", "mosaic 20230601 b2", "table"
    what: str  # for messages: "mosaic of 20230601"
    digest: str
    mosaic: MosaicPaths | None = None
    files: tuple[Path, ...] = ()  # a mosaic's GeoTIFFs
    tiles: tuple[str, ...] = ()  # their units' tiles (r1c2, r1c2.0 for a split part)
    band_names: tuple[str, ...] = ()
    table: TablePaths | None = None
    sources: tuple[TableSource, ...] = ()
    note: str | None = None  # nothing to make, and why (said once)


@dataclass(frozen=True)
class Outcome:
    key: str
    line: str  # "mosaic of 20230601: 112 files → …" (the log says "assembled " before it)
    made: bool  # something was written
    problem: bool = False  # failed, or files were left out: a warning


def _digest(base: Path, entries: Iterable[tuple[Path, str]], *extra: str) -> str:
    text = "\n".join([FORMAT, *extra, *(f"{relative(p, base)}\t{md5}"
                                         for p, md5 in entries)])
    return hashlib.sha256(text.encode()).hexdigest()


def output_kind(spec: JobSpec) -> str:
    """"image" or "table": what the job's recipe exports."""
    return RECIPES[spec.recipe.name].output(spec.recipe.params)


def mosaic_paths(spec: JobSpec, period: str, batch: int | None) -> MosaicPaths:
    """Where a period's (and batch's) mosaic lands: beside its files."""
    folder, stem = spec.output_dir, "mosaic"
    if spec.time is not None and spec.time.period_folders and period != "all":
        folder = folder / period
    elif period != "all":
        stem += f"_{period}"
    if batch is not None:
        stem += f"_b{batch}"
    return MosaicPaths.beside(folder, stem)


def _latest_per_path(rows: Iterable[Any]) -> list[Any]:
    """One row per local file: a file written again (a unit exported again) is the newest row
    that names it."""
    latest: dict[str, Any] = {}
    for row in rows:
        seen = latest.get(row["local_path"])
        if seen is None or row["id"] > seen["id"]:
            latest[row["local_path"]] = row
    return sorted(latest.values(), key=lambda r: (r["period"], r["local_path"]))


def plan(rows: Iterable[Any], spec: JobSpec, *, tables: bool) -> list[Work]:
    """The products `rows` (store.product_files: verified files with their unit's tile,
    period and batch) make: an image job's mosaics, by period and batch; a table job's one
    table (only with `tables`: it is made at the job's end, or on demand)."""
    rows = _latest_per_path(rows)
    if output_kind(spec) == "table":
        return [_table_work(rows, spec)] if tables else []
    recipe = RECIPES[spec.recipe.name]
    names = tuple(recipe.band_names(spec.recipe.params))
    groups: dict[tuple[str, int | None], list[Any]] = {}
    for row in rows:
        if row["local_path"].lower().endswith(".tif"):
            groups.setdefault((row["period"], _batch(row)), []).append(row)
    works = []
    for (period, batch), members in sorted(groups.items(), key=lambda g: (g[0][0],
                                                                         g[0][1] or -1)):
        paths = mosaic_paths(spec, period, batch)
        files = tuple(Path(r["local_path"]) for r in members)
        label = period + (f" batch {batch}" if batch is not None else "")
        works.append(Work(
            f"mosaic {period}" + (f" b{batch}" if batch is not None else ""),
            f"mosaic of {label}",
            _digest(paths.vrt.parent, ((p, r["md5"]) for p, r in zip(files, members,
                                                                       strict=True)),
                    " ".join(names)),
            mosaic=paths, files=files, tiles=tuple(r["tile"] for r in members),
            band_names=names))
    return works


def _batch(row: Any) -> int | None:
    """The unit's batch: None for a unit of no batch, or a store without the column."""
    try:
        return row["batch"]
    except (IndexError, KeyError):
        return None


def _table_work(rows: list[Any], spec: JobSpec) -> Work:
    paths = TablePaths.beside(spec.output_dir)
    fmt = spec.export.file_format
    csvs = [r for r in rows if r["local_path"].lower().endswith(".csv")]
    note = None
    if not csvs and rows:
        note = f"tables exported as {fmt} are not merged (only CSV is)"
    sources = tuple(TableSource(Path(r["local_path"]), {
        "unit": r["unit"], "tile": r["tile"], "period": r["period"], "batch": _batch(r)})
        for r in csvs)
    digest = _digest(spec.output_dir, ((s.path, r["md5"]) for s, r in zip(sources, csvs,
                                                                          strict=True)))
    return Work(TABLE_KEY, "table", digest, table=paths, sources=sources, note=note)


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def _mosaic_line(work: Work, m: Mosaic) -> str:
    parts = sum("." in t for t in work.tiles)
    tiles = len(set(work.tiles))
    made = (_count(m.sources, "file") + (f" ({_count(tiles - parts, 'tile')} and "
                                          f"{_count(parts, 'split part')})" if parts else "")
            + f" → {m.paths.vrt} ({m.width:,}×{m.height:,} px"
            + ("" if m.aligned else ", files off one pixel lattice: placed to the nearest pixel")
            + f"), quicklook {m.paths.quicklook.name} ({m.quicklook_size[0]}×"
            f"{m.quicklook_size[1]})" + (f", COG {m.paths.cog.name}" if m.cog else ""))
    if m.left_out:
        made += (f"; {_count(len(m.left_out), 'file')} left out: " + "; ".join(m.left_out[:5])
                 + (" …" if len(m.left_out) > 5 else ""))
    return f"{work.what}: {made}"


def _table_line(work: Work, t: Table) -> str:
    line = (f"table: {_count(t.rows, 'row')} from {_count(t.files, 'file')} → {t.paths.csv} and "
            f"{t.paths.parquet.name} ({len(t.columns)} columns)")
    if t.left_out:
        line += (f"; {_count(len(t.left_out), 'file')} left out: " + "; ".join(t.left_out[:5])
                 + (" …" if len(t.left_out) > 5 else ""))
    return line


def is_current(work: Work) -> bool:
    """Whether the product on disk is already made of exactly this work's files."""
    if work.mosaic is not None:
        return mosaic_up_to_date(work.mosaic, work.digest)
    assert work.table is not None
    return table_up_to_date(work.table, work.digest)


def make(work: Work, *, cog: bool = False, force: bool = False,
         cancel: threading.Event | None = None) -> Outcome | None:
    """Make one product. None when it is current already (and not `force`d or a COG asked
    for); a failure is an Outcome with `problem` (raised only: Cancelled)."""
    if work.note is not None:
        return Outcome(work.key, f"{work.what}: {work.note}", False)
    if not force and not cog and is_current(work):
        return None
    try:
        if work.mosaic is not None:
            paths = work.mosaic
            paths.vrt.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries([paths.vrt, paths.quicklook, paths.cog])
            m = build_mosaic(work.files, paths, work.band_names, work.digest, cog=cog,
                             cancel=cancel)
            if not m.sources:
                return Outcome(work.key, f"{work.what}: none of its {len(work.files)} files "
                               "could be read: " + "; ".join(m.left_out[:5]), False, True)
            return Outcome(work.key, _mosaic_line(work, m), True, bool(m.left_out))
        assert work.table is not None
        if not work.sources:
            return None
        work.table.csv.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries([work.table.csv, work.table.parquet])
        t = merge_tables(work.sources, work.table, work.digest, cancel=cancel)
        if not t.files:
            return Outcome(work.key, f"table: none of its {len(work.sources)} files could be "
                           "read: " + "; ".join(t.left_out[:5]), False, True)
        return Outcome(work.key, _table_line(work, t), True, bool(t.left_out))
    except Cancelled:
        raise
    except Exception as exc:  # a failed product fails no unit: said, and made again later
        return Outcome(work.key, f"{work.what} failed: {type(exc).__name__}: {exc}", False,
                       True)


def assemble_session(store: Any, spec: JobSpec, *, cog: bool = False) -> list[Outcome]:
    """Every product of the session, made again now from its verified files (for `eebatch
    assemble`; a worker may run meanwhile: each product is replaced whole)."""
    works = plan(store.product_files(), spec, tables=True)
    return [o for o in (make(w, cog=cog, force=True) for w in works) if o is not None]
