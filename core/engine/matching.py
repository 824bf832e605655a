"""Which Drive files one export wrote, and nothing else.

EE names its files PREFIX.ext, or PREFIX-RRRRRRRRRR-CCCCCCCCCC.ext (10-digit pixel offsets) when
it splits a big image, in the folder its operation's destinationUris names. Drive never
overwrites: a stale output of an earlier run, or the user's own copy, can carry the very same
title, in that folder or in another folder of the same name. So a file counts as an output of
an export only when all of these hold:

- it is in the folder EE wrote to (every folder of the export's name if EE did not say);
- its title is the prefix plus the export format's own extension, exactly as EE writes it
  (`.tif` for GeoTIFF, not `.TIF`, not `.txt`), or a shard of it;
- Drive created it after EE accepted the export (createdDate against the operation's
  createTime: both are Google's clock).

Two such files with one title are a clash: eebatch cannot tell which one EE wrote, so it takes
neither and deletes neither, and says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from core.backends.drive import DriveFile

SHARD = re.compile(r"-\d{10}-\d{10}\Z")  # EE's split-file suffix: row and column offsets

# Extensions EE gives each export format (upper-cased, without "_"), as it writes them.
IMAGE_EXTENSIONS = {"GEOTIFF": ("tif",)}
TABLE_EXTENSIONS = {
    "CSV": ("csv",), "GEOJSON": ("geojson",), "KML": ("kml",), "KMZ": ("kmz",),
    "SHP": ("shp", "shx", "dbf", "prj", "cpg"),
}


@dataclass(frozen=True)
class Naming:
    """How one kind of export names its files."""

    extensions: tuple[str, ...]
    sharded: bool  # big images come in shards

    def prefix_of(self, title: str) -> str | None:
        """The fileNamePrefix a file of this naming carries, or None if it is not one."""
        base, dot, ext = title.rpartition(".")
        if not dot or ext not in self.extensions:
            return None
        if self.sharded and SHARD.search(base):
            return base[:-22]  # a shard: "-" + 10 digits + "-" + 10 digits
        return base


def naming_for(kind: str, file_format: str) -> Naming:
    """The naming of an export: `kind` is "image" or "table" (a table export of a job whose
    format is GeoTIFF is sent as CSV, see backends/earthengine.py)."""
    fmt = file_format.upper().replace("_", "")
    if kind == "table":
        return Naming(TABLE_EXTENSIONS.get(fmt, TABLE_EXTENSIONS["CSV"]), sharded=False)
    return Naming(IMAGE_EXTENSIONS.get(fmt, IMAGE_EXTENSIONS["GEOTIFF"]), sharded=True)


def by_prefix(files: Iterable[DriveFile], naming: Naming) -> dict[str, list[DriveFile]]:
    """Files of this naming by the prefix they carry: one pass over a folder listing."""
    out: dict[str, list[DriveFile]] = {}
    for f in files:
        prefix = naming.prefix_of(f.title)
        if prefix is not None:
            out.setdefault(prefix, []).append(f)
    return out


@dataclass
class Outputs:
    """What one export's files are among the files carrying its prefix."""

    files: list[DriveFile] = field(default_factory=list)  # the export's own
    clashes: dict[str, list[DriveFile]] = field(default_factory=dict)  # title -> candidates
    others: list[DriveFile] = field(default_factory=list)  # same name, not this export's

    def report(self, folder: str) -> str:
        """One line on what was left alone, for the session log."""
        parts = []
        if self.clashes:
            titles = ", ".join(f"{len(fs)} files named {t}" for t, fs in self.clashes.items())
            parts.append(f"name clash in Drive folder {folder!r}: {titles}, all made after the "
                         "export started; eebatch cannot tell which one Earth Engine wrote and "
                         "touches none of them. Move or rename the files that are not the "
                         "export's, then retry the unit")
        if self.others:
            titles = ", ".join(sorted({f.title for f in self.others}))
            parts.append(f"left alone in Drive (same name, not written by this export): "
                         f"{titles}")
        return "; ".join(parts)


def pick(candidates: Iterable[DriveFile], folders: set[str] | None,
         not_before: float | None) -> Outputs:
    """The export's files among `candidates` (files carrying its prefix): in one of `folders`
    (None: any of those listed) and created at or after `not_before` (None: any time)."""
    out = Outputs()
    by_title: dict[str, list[DriveFile]] = {}
    for f in candidates:
        in_folder = folders is None or any(p in folders for p in f.parents)
        fresh = not_before is None or (f.created is not None and f.created >= not_before)
        if in_folder and fresh:
            by_title.setdefault(f.title, []).append(f)
        else:
            out.others.append(f)
    shards = {t for t in by_title if SHARD.search(t.rpartition(".")[0])}
    if shards and len(shards) < len(by_title):
        # EE writes one file or shards, never both: one of these is someone else's.
        out.clashes.update(by_title)
        return out
    for title, files in by_title.items():
        if len(files) == 1:
            out.files.append(files[0])
        else:
            out.clashes[title] = files
    return out
