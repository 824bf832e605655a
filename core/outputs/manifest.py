"""The manifest: one row per verified file of a session, kept beside the outputs while the job
runs (`output_dir/manifest.csv`), so a researcher has the index of what they got, where each
file lies on the ground and in time, and its checksum, without writing a script.

It is rewritten whole from the session store (the one source of truth), atomically: a crash
leaves the previous manifest, never half of one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from core.paths import relative

NAME = "manifest.csv"
# route: how the file came (core/routes.py): "batch" (an export through Drive) or "direct"
COLUMNS = ["file", "unit", "tile", "period", "start", "end", "west", "south", "east", "north",
           "crs", "bands", "size", "md5", "route"]


def write_manifest(output_dir: Path, files: Iterable[dict[str, Any]], *, crs: str,
                   bands: str) -> Path:
    """Write the manifest of `files` (dicts with local_path, unit, tile, period, start, end,
    west, south, east, north, size, md5, route); paths are relative to output_dir. Returns its
    path."""
    rows = []
    for f in files:
        row = {k: f.get(k) for k in COLUMNS if k in f}
        row["file"] = relative(f["local_path"], output_dir)
        rows.append({**row, "crs": crs, "bands": bands})
    frame = pd.DataFrame(rows, columns=COLUMNS).sort_values(["period", "unit", "file"])
    path = output_dir / NAME
    tmp = output_dir / f".{NAME}.{os.getpid()}.tmp"
    try:
        frame.to_csv(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
