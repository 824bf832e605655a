"""One table per job from every unit's CSV: the rows of each file, in the order of the files
(period, unit, path) and of their rows, with the unit, tile and period it came from (and its
batch, for a job cut into batches) in front, as `table.csv` and `table.parquet`.

A file's own column of the same name and the same values as one of those is the same fact and
is kept once; one that differs is kept as `NAME.1`. Written to temporary names and renamed,
the Parquet file last, carrying a digest of its sources (their paths and MD5s): one that
carries the digest of the files now verified vouches for both (`up_to_date`). Merging twice
gives byte-identical files.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.assembly.rasters import Cancelled, temporary

STEM = "table"
KEYS = ("unit", "tile", "period", "batch")
DIGEST_KEY = b"eebatch_sources"


@dataclass(frozen=True)
class TablePaths:
    csv: Path
    parquet: Path

    @classmethod
    def beside(cls, folder: Path) -> TablePaths:
        return cls(folder / f"{STEM}.csv", folder / f"{STEM}.parquet")


@dataclass(frozen=True)
class TableSource:
    path: Path
    keys: dict[str, Any]  # unit, tile, period and (None when the job has none) batch


@dataclass
class Table:
    paths: TablePaths
    rows: int = 0
    files: int = 0
    columns: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # "file: why"


def parquet_digest(path: Path) -> str | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        return None
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException):
        return None
    value = metadata.get(DIGEST_KEY)
    return value.decode() if value is not None else None


def up_to_date(paths: TablePaths, digest: str) -> bool:
    return paths.csv.exists() and parquet_digest(paths.parquet) == digest


def _read(source: TableSource, keys: Sequence[str]) -> Any:
    """The file's rows with the key columns in front."""
    import pandas as pd

    try:
        frame = pd.read_csv(source.path)
    except pd.errors.EmptyDataError:  # not even a header: no rows
        frame = pd.DataFrame()
    for key in keys:
        value = source.keys.get(key)
        if key in frame.columns:
            same = frame[key].astype(str).eq(str(value)).all()
            frame = frame.drop(columns=key) if same else frame.rename(columns={key: f"{key}.1"})
    front = pd.DataFrame({key: [source.keys.get(key)] * len(frame) for key in keys},
                         index=frame.index)
    return pd.concat([front, frame], axis=1)


def _arrow(frame: Any, digest: str) -> Any:
    """The frame as an Arrow table carrying the digest. A column of mixed kinds (numbers in
    one file, words in another) goes as text."""
    import pandas as pd
    import pyarrow as pa

    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        frame = frame.copy()
        for column in frame.columns:
            if frame[column].dtype == object:
                frame[column] = frame[column].map(lambda v: v if pd.isna(v) else str(v))
        table = pa.Table.from_pandas(frame, preserve_index=False)
    return table.replace_schema_metadata({**(table.schema.metadata or {}),
                                          DIGEST_KEY: digest.encode()})


def merge_tables(sources: Sequence[TableSource], paths: TablePaths, digest: str, *,
                 cancel: threading.Event | None = None) -> Table:
    """Merge `sources` (sorted by the caller) into `paths`: the CSV, then the Parquet."""
    import pandas as pd
    import pyarrow.parquet as pq

    result = Table(paths)
    keys = [k for k in KEYS if k != "batch" or any(s.keys.get(k) is not None for s in sources)]
    frames = []
    for source in sources:
        try:
            frames.append(_read(source, keys))
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            result.left_out.append(f"{source.path.name}: "
                                   f"{'missing' if not source.path.exists() else exc}")
            continue
        if cancel is not None and cancel.is_set():
            raise Cancelled
    if not frames:
        return result
    frame = pd.concat(frames, ignore_index=True, sort=False)
    result.rows, result.files, result.columns = len(frame), len(frames), list(frame.columns)
    for target, write in ((paths.csv, lambda tmp: frame.to_csv(tmp, index=False)),
                          (paths.parquet, lambda tmp: pq.write_table(_arrow(frame, digest), tmp))):
        tmp = temporary(target)
        try:
            write(tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return result
