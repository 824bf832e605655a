"""One emulated user's Google Drive as a model, with no HTTP in it: the file tree, the files
and their content, trash, quota accounting and search.

Metadata lives in memory behind one lock; file bytes live on disk, one blob per file id, and
are read and written outside the lock. Callers get `FileInfo` snapshots, never the live
records. A refused operation raises a `DriveError` (drive_types.py) carrying the reason and
message Google uses (notFound, storageQuotaExceeded, ...); drive.py turns it into Google's
JSON error. The Earth Engine side uses `ensure_export_folder`, `free_bytes` and `add_file`
(the `DriveForExports` protocol of drive_port.py).

As strict and slow as Google's Drive:
* a new file or folder (uploaded, inserted, or an export EE drops in) stays out of every
  search (files.list, any q) for `config.drive_listing_lag` wall-clock seconds after its
  creation, as Drive's search index lags; `get` finds it at once, delete works at once;
* Gmail and Photos share the quota: `config.quota_other` bytes count against it (about's
  quotaBytesUsedAggregate), so `free_bytes` and `check_room` leave room for them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import random
import shutil
import string
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from core.emulator.config import EmulatorConfig
from core.emulator.drive_query import InvalidQuery, Predicate, parse_date
from core.emulator.drive_types import (
    FOLDER_MIME,
    KEEP,
    QUOTA_EXCEEDED,
    ROOT_ID,
    USER_EMAIL,
    FileInfo,
    Forbidden,
    InsufficientFilePermissions,
    InvalidValue,
    NotDownloadable,
    Patch,
    StorageQuotaExceeded,
    Usage,
    file_not_found,
    rfc3339,
)

_ID_CHARS = string.ascii_letters + string.digits + "-_"
# Ids never repeat, not even across emulator restarts (a restarted emulator handing out the
# ids of files a session already downloaded made it take new files for old ones), as Google's.
_IDS = random.SystemRandom()
_HASH_CHUNK = 1 << 20


def md5_file(path: Path) -> tuple[str, int]:
    """(lowercase hex md5, size), read in 1 MiB pieces."""
    digest = hashlib.md5()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(_HASH_CHUNK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


@dataclass
class _Entry:
    """The live record of one file or folder (only ever touched under the model's lock)."""

    id: str
    title: str
    mime_type: str
    parents: list[str]
    created: float
    modified: float
    seq: int  # creation order: the default list order and part of every page-token key
    listed_from: float = 0.0  # wall-clock (monotonic) time from which searches find it
    size: int = 0
    md5: str | None = None
    explicitly_trashed: bool = False
    starred: bool = False
    hidden: bool = False
    description: Any = None  # whatever JSON value the client set
    version: int = 1
    original_filename: str | None = None

    @property
    def folder(self) -> bool:
        return self.mime_type == FOLDER_MIME

    @property
    def has_content(self) -> bool:
        return not self.mime_type.startswith("application/vnd.google-apps.")


# -- the model -----------------------------------------------------------------------------


class DriveModel:
    """One user's Drive. Thread-safe: every metadata access holds `_lock`; blob I/O does not."""

    def __init__(
        self,
        config: EmulatorConfig,
        root_dir: Path,
        *,
        now: Callable[[], float] = time.time,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        """`now` is the emulated Google's (simulated) clock, for dates; `wall` a monotonic
        wall clock, for the search index's lag (which does not speed up with the simulation)."""
        self.config = config
        self.root_dir = Path(root_dir)
        self._blobs = self.root_dir / "blobs"
        self._staging = self.root_dir / "uploads"
        # Metadata is in memory only, so blobs left by an earlier run are unreachable.
        for d in (self._blobs, self._staging):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True, exist_ok=True)
        self._now = now
        self._wall = wall
        self._lock = threading.RLock()
        self._seq = 0
        self._last_stamp = 0.0
        self._used = 0
        self._peak = 0  # the most `_used` has been (GET /_emulator/state: drive.peak_used)
        self._change_id = 1000
        self._files: dict[str, _Entry] = {}
        self._children: dict[str, set[str]] = {}
        stamp = self._stamp()
        self._files[ROOT_ID] = _Entry(ROOT_ID, "My Drive", FOLDER_MIME, [], stamp, stamp, 0)
        self._children[ROOT_ID] = set()

    # -- what Earth Engine does ------------------------------------------------------------

    def ensure_export_folder(self, name: str) -> str:
        """EE's `folder=` rule: a non-trashed folder titled exactly `name` at any depth (the
        most recently modified if several), else a new one at the root. 'a/b' is one title;
        an empty name means the root itself."""
        if not name:  # no folder given: EE writes to the Drive root
            return ROOT_ID
        with self._lock:
            memo: dict[str, bool] = {}
            found = [
                e
                for e in self._files.values()
                if e.folder and e.id != ROOT_ID and e.title == name and not self._trashed(e, memo)
            ]
            if found:
                return max(found, key=lambda e: (e.modified, e.seq)).id
            return self._create(name, FOLDER_MIME, [ROOT_ID]).id

    def add_file(self, parent_id: str, title: str, src: Path, mime_type: str) -> FileInfo:
        """Move `src` into storage as a new file in `parent_id`. Quota is not checked (EE
        checks `free_bytes()` first). Raises KeyError for an unknown parent, so call
        `ensure_export_folder` right before."""
        with self._lock:
            parent = self._files.get(parent_id)
            if parent is None or not parent.folder:
                raise KeyError(f"no Drive folder {parent_id!r}")
            file_id = self._new_id()
        blob = self._blob(file_id)
        shutil.move(os.fspath(src), blob)
        md5, size = md5_file(blob)
        with self._lock:
            if parent_id not in self._files:
                blob.unlink(missing_ok=True)
                raise KeyError(f"no Drive folder {parent_id!r}")
            entry = self._create(title, mime_type, [parent_id], size=size, md5=md5, file_id=file_id)
            return self._info(entry, {})

    def free_bytes(self) -> int | None:
        """Quota left after Drive, Gmail and Photos, or None for an unlimited Drive."""
        if self.config.drive_quota is None:
            return None
        with self._lock:
            return max(0, self.config.drive_quota - self._used - self.config.quota_other)

    # -- quota -----------------------------------------------------------------------------

    @property
    def quota(self) -> int | None:
        """Total bytes allowed, None for an unlimited Drive."""
        return self.config.drive_quota

    def quota_used(self) -> int:
        """Bytes of Drive's own files (about's quotaBytesUsed)."""
        with self._lock:
            return self._used

    @property
    def quota_other(self) -> int:
        """Bytes of Gmail and Photos, which share the quota with Drive."""
        return self.config.quota_other

    def usage(self) -> Usage:
        with self._lock:
            return Usage(self._used, self._trash_bytes(), self._change_id)

    def check_room(self, new_bytes: int, replacing: str | None = None) -> None:
        """Raise StorageQuotaExceeded unless `new_bytes` fit, counting the bytes of the file
        `replacing` (whose content they would replace) as free."""
        quota = self.config.drive_quota
        if quota is None:
            return
        with self._lock:
            freed = self._files[replacing].size if replacing in self._files else 0
            if self._used + self.config.quota_other - freed + new_bytes > quota:
                raise StorageQuotaExceeded(QUOTA_EXCEEDED)

    # -- reading ---------------------------------------------------------------------------

    def get(self, file_id: str) -> FileInfo:
        """The file `file_id` ('root' names the root folder); NotFound if there is none."""
        with self._lock:
            return self._info(self._lookup(file_id), {})

    def search(self, pred: Predicate | None = None) -> tuple[list[FileInfo], int]:
        """Every file but the root that `pred` (a compiled q= query) accepts, in no order,
        and the change id they were read at. Files newer than the listing lag are left out,
        whatever the query: the search index has not seen them yet."""
        with self._lock:
            memo: dict[str, bool] = {}
            wall = self._wall()
            found = [
                self._info(e, memo)
                for e in self._files.values()
                if e.id != ROOT_ID
                and e.listed_from <= wall
                and (pred is None or pred(self._query_view(e, memo)))
            ]
            return found, self._change_id

    def find_folders(self, title: str) -> list[FileInfo]:
        """Every non-trashed folder titled `title` (tests and the state view)."""
        with self._lock:
            memo: dict[str, bool] = {}
            return [
                self._info(e, memo)
                for e in self._files.values()
                if e.folder and e.id != ROOT_ID and e.title == title and not self._trashed(e, memo)
            ]

    def open_content(self, file_id: str) -> tuple[FileInfo, BinaryIO]:
        """The file and its bytes, opened now so that a later delete cannot break the read
        (the unlinked blob stays readable); the caller closes the handle."""
        with self._lock:
            entry = self._lookup(file_id)
            if entry.folder or not entry.has_content:
                raise NotDownloadable(
                    "Only files with binary content can be downloaded. Use Export with Docs "
                    "Editors files.",
                    location="alt",
                )
            fh = open(self._blob(entry.id), "rb")  # noqa: SIM115 - the caller closes it
            return self._info(entry, {}), fh

    def resolve_parents(self, ids: Sequence[str]) -> list[str]:
        """Folder ids as a client names them → checked ids, in order, without repeats; none
        means the root. An empty id is InvalidValue, an unknown one (or a file) NotFound."""
        with self._lock:
            return self._resolve_parents(ids)

    # -- writing ---------------------------------------------------------------------------

    def insert(self, title: str, mime_type: str, parents: Sequence[str], patch: Patch) -> FileInfo:
        """A new file without content (a folder, or an empty file) in `parents`."""
        with self._lock:
            parent_ids = self._resolve_parents(parents)
            entry = self._create(
                title,
                mime_type,
                parent_ids,
                size=0,
                md5=None if mime_type == FOLDER_MIME else hashlib.md5(b"").hexdigest(),
            )
            if entry.has_content:
                self._blob(entry.id).touch()
            self._apply(entry, patch, modified=False)
            return self._info(entry, {})

    def staging_path(self) -> Path:
        """A fresh path for content being received, on the blobs' file system (so that
        `create_file` and `replace_content` move it in without copying)."""
        return self._staging / base64.urlsafe_b64encode(os.urandom(12)).decode()

    def create_file(
        self, src: Path, title: str, mime_type: str, parents: Sequence[str], patch: Patch
    ) -> FileInfo:
        """Move `src` in as a new file; StorageQuotaExceeded if it does not fit."""
        md5, size = md5_file(src)
        self.check_room(size)
        with self._lock:
            parent_ids = self._resolve_parents(parents)
            file_id = self._new_id()
            os.replace(src, self._blob(file_id))
            entry = self._create(title, mime_type, parent_ids, size=size, md5=md5, file_id=file_id)
            self._apply(entry, patch, modified=False)
            entry.original_filename = entry.title
            return self._info(entry, {})

    def replace_content(self, file_id: str, src: Path, mime_type: str, patch: Patch) -> FileInfo:
        """Move `src` in as the new content of `file_id` (a new version); StorageQuotaExceeded
        if it does not fit in place of the old content."""
        md5, size = md5_file(src)
        self.check_room(size, file_id)
        with self._lock:
            entry = self._lookup(file_id)
            os.replace(src, self._blob(entry.id))
            self._used += size - entry.size
            self._peak = max(self._peak, self._used)
            entry.size, entry.md5 = size, md5
            entry.mime_type = mime_type if not entry.folder else entry.mime_type
            self._apply(entry, patch, modified=True)
            entry.original_filename = entry.title
            return self._info(entry, {})

    def update(self, file_id: str, patch: Patch) -> FileInfo:
        with self._lock:
            entry = self._lookup(file_id)
            if entry.id == ROOT_ID:
                raise Forbidden("The root folder cannot be modified.")
            self._apply(entry, patch, modified=True)
            return self._info(entry, {})

    def set_trashed(self, file_id: str, trashed: bool) -> FileInfo:
        """Trash or restore a file (with a folder, everything inside it follows)."""
        with self._lock:
            entry = self._lookup(file_id)
            if entry.id == ROOT_ID:
                raise InsufficientFilePermissions("The root folder cannot be trashed.")
            entry.explicitly_trashed = trashed
            entry.version += 1
            self._change_id += 1
            return self._info(entry, {})

    def delete(self, file_id: str) -> None:
        """Delete for good, with every descendant that has no other parent left."""
        with self._lock:
            entry = self._lookup(file_id)
            if entry.id == ROOT_ID:
                raise InsufficientFilePermissions("The root folder cannot be deleted.")
            self._remove_tree(entry.id)

    def empty_trash(self) -> None:
        with self._lock:
            explicit = [e.id for e in self._files.values() if e.explicitly_trashed]
            for file_id in explicit:
                if file_id in self._files:
                    self._remove_tree(file_id)

    # -- test data and the state view ------------------------------------------------------

    def seed_fixture_files(self, export_folder: str = "eebatch") -> dict[str, str]:
        """Test data worth having: the export folder at the root plus a nested
        duplicate of it, a zero-byte file and a title with a quote and a backslash. Never
        called on start; returns the ids by role."""
        with self._lock:
            top = self._create(export_folder, FOLDER_MIME, [ROOT_ID])
            archive = self._create("archive", FOLDER_MIME, [ROOT_ID])
            nested = self._create(export_folder, FOLDER_MIME, [archive.id])
            ids = {"export_folder": top.id, "archive": archive.id, "nested_duplicate": nested.id}
            for role, title, data in (
                ("empty_file", "empty.tif", b""),
                ("quoted_file", "Valentine's Day \\ x.tif", b"II*\x00"),
            ):
                file_id = self._new_id()
                self._blob(file_id).write_bytes(data)
                entry = self._create(
                    title,
                    "image/tiff",
                    [top.id],
                    size=len(data),
                    md5=hashlib.md5(data).hexdigest(),
                    file_id=file_id,
                )
                ids[role] = entry.id
            for file_id in ids.values():  # files that were there before: indexed long ago
                self._files[file_id].listed_from = 0.0
            return ids

    def state(self) -> dict[str, Any]:
        with self._lock:
            memo: dict[str, bool] = {}
            files = [
                {
                    "id": e.id,
                    "title": e.title,
                    "mimeType": e.mime_type,
                    "parents": list(e.parents),
                    "fileSize": e.size,
                    "md5Checksum": e.md5,
                    "trashed": self._trashed(e, memo),
                    "explicitlyTrashed": e.explicitly_trashed,
                    "createdDate": rfc3339(e.created),
                    "modifiedDate": rfc3339(e.modified),
                }
                for e in sorted(self._files.values(), key=lambda e: e.seq)
                if e.id != ROOT_ID
            ]
            return {
                "rootFolderId": ROOT_ID,
                "files": files,
                "quota": {
                    "total": self.config.drive_quota,
                    "used": self._used,
                    "trash": self._trash_bytes(),
                },
                "peak_used": self._peak,
            }

    # -- helpers (callers hold the lock unless noted) ----------------------------------------

    def _lookup(self, file_id: str) -> _Entry:
        entry = self._files.get(ROOT_ID if file_id == "root" else file_id)
        if entry is None:
            raise file_not_found(file_id)
        return entry

    def _resolve_parent(self, pid: str) -> str:
        if not pid:
            raise InvalidValue("Invalid Value", location="parents.id")
        pid = ROOT_ID if pid == "root" else pid
        parent = self._files.get(pid)
        if parent is None or not parent.folder:
            raise file_not_found(pid)
        return pid

    def _resolve_parents(self, ids: Sequence[str]) -> list[str]:
        if not ids:
            return [ROOT_ID]
        out: list[str] = []
        for ref in ids:
            pid = self._resolve_parent(ref)
            if pid not in out:
                out.append(pid)
        return out

    def _apply(self, e: _Entry, patch: Patch, *, modified: bool) -> None:
        """Apply a Patch, in Drive's order: a refusal part-way leaves what came before it."""
        if patch.title is not None:
            e.title = patch.title
        if patch.description is not KEEP:
            e.description = patch.description
        if patch.mime_type and not e.folder:
            e.mime_type = patch.mime_type
        if patch.starred is not None:
            e.starred = patch.starred
        if patch.hidden is not None:
            e.hidden = patch.hidden
        if patch.trashed is not None:
            e.explicitly_trashed = patch.trashed
        parents = list(e.parents)
        if patch.parents is not None and modified:
            parents = self._resolve_parents(patch.parents)
        for pid in patch.add_parents:
            pid = self._resolve_parent(pid)
            if pid not in parents:
                parents.append(pid)
        for pid in patch.remove_parents:
            pid = ROOT_ID if pid == "root" else pid
            if pid in parents:
                parents.remove(pid)
        if parents != e.parents:
            for pid in parents:
                if pid == e.id or self._is_descendant(pid, e.id):
                    raise InvalidValue("A folder cannot contain itself.")
            self._set_parents(e, parents)
        if modified:
            e.version += 1
            e.modified = self._stamp()
        if patch.modified_date is not None:
            try:
                e.modified = parse_date(patch.modified_date)
            except InvalidQuery:
                raise InvalidValue("Invalid Value", location="modifiedDate") from None
        self._change_id += 1

    def _info(self, e: _Entry, memo: dict[str, bool]) -> FileInfo:
        return FileInfo(
            id=e.id,
            title=e.title,
            mime_type=e.mime_type,
            parents=tuple(e.parents),
            created=e.created,
            modified=e.modified,
            seq=e.seq,
            size=e.size,
            md5=e.md5,
            trashed=self._trashed(e, memo),
            explicitly_trashed=e.explicitly_trashed,
            starred=e.starred,
            hidden=e.hidden,
            description=e.description,
            version=e.version,
            original_filename=e.original_filename,
        )

    def _stamp(self) -> float:
        """Now, in whole milliseconds, strictly after every earlier stamp, so 'most recently
        modified' never ties."""
        with self._lock:
            t = max(round(self._now(), 3), round(self._last_stamp + 0.001, 3))
            self._last_stamp = t
            return t

    def _new_id(self) -> str:
        with self._lock:
            while True:
                file_id = "1" + "".join(_IDS.choice(_ID_CHARS) for _ in range(32))
                if file_id not in self._files:
                    return file_id

    def _blob(self, file_id: str) -> Path:
        return self._blobs / file_id

    def _create(
        self,
        title: str,
        mime_type: str,
        parents: list[str],
        *,
        size: int = 0,
        md5: str | None = None,
        file_id: str | None = None,
    ) -> _Entry:
        stamp = self._stamp()
        self._seq += 1
        entry = _Entry(
            file_id or self._new_id(),
            title,
            mime_type,
            [],
            stamp,
            stamp,
            self._seq,
            listed_from=self._wall() + self.config.drive_listing_lag,
            size=size,
            md5=md5,
        )
        self._files[entry.id] = entry
        if entry.folder:
            self._children.setdefault(entry.id, set())
        self._set_parents(entry, parents)
        self._used += size
        self._peak = max(self._peak, self._used)
        self._change_id += 1
        return entry

    def _set_parents(self, entry: _Entry, parents: list[str]) -> None:
        for pid in entry.parents:
            self._children.get(pid, set()).discard(entry.id)
        entry.parents = list(parents)
        stamp = self._stamp()
        for pid in parents:
            self._children.setdefault(pid, set()).add(entry.id)
            # A folder's modifiedDate follows its newest child, which EE's folder rule uses.
            if pid != ROOT_ID and pid in self._files:
                self._files[pid].modified = stamp

    def _is_descendant(self, candidate: str, ancestor: str) -> bool:
        seen: set[str] = set()
        todo = [candidate]
        while todo:
            cur = todo.pop()
            if cur == ancestor:
                return True
            if cur in seen or cur not in self._files:
                continue
            seen.add(cur)
            todo.extend(self._files[cur].parents)
        return False

    def _remove_tree(self, file_id: str) -> None:
        """Delete a file, or a folder and every descendant that has no other parent left."""
        todo = [file_id]
        while todo:
            cur = todo.pop()
            entry = self._files.pop(cur, None)
            if entry is None:
                continue
            for pid in entry.parents:
                self._children.get(pid, set()).discard(cur)
            for child_id in self._children.pop(cur, set()):
                child = self._files.get(child_id)
                if child is None:
                    continue
                child.parents = [p for p in child.parents if p != cur]
                if not child.parents:
                    todo.append(child_id)
            self._used -= entry.size
            with contextlib.suppress(FileNotFoundError):
                self._blob(cur).unlink()
        self._change_id += 1

    def _trashed(self, e: _Entry, memo: dict[str, bool]) -> bool:
        """Explicitly trashed, or inside a trashed folder."""
        if e.id in memo:
            return memo[e.id]
        memo[e.id] = e.explicitly_trashed  # guards against parent cycles
        result = e.explicitly_trashed or any(
            self._trashed(self._files[p], memo) for p in e.parents if p in self._files
        )
        memo[e.id] = result
        return result

    def _trash_bytes(self) -> int:
        memo: dict[str, bool] = {}
        return sum(e.size for e in self._files.values() if self._trashed(e, memo))

    def _query_view(self, e: _Entry, memo: dict[str, bool]) -> dict[str, Any]:
        """What a q= query sees of a file (see drive_query.Item)."""
        return {
            "title": e.title,
            "mimeType": e.mime_type,
            "fullText": f"{e.title} {e.description or ''}",
            "parents": e.parents,
            "owners": (USER_EMAIL,),
            "writers": (USER_EMAIL,),
            "readers": (USER_EMAIL,),
            "trashed": self._trashed(e, memo),
            "starred": e.starred,
            "hidden": e.hidden,
            "createdDate": e.created,
            "modifiedDate": e.modified,
            "modifiedByMeDate": e.modified,
            "lastViewedByMeDate": e.modified,
            "sharedWithMe": False,
        }
