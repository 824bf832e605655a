"""The Drive adapter, on pydrive2 (Drive API v2): find the export folder(s), list, download
to a path, delete, quota.

pydrive2 never retries, so short calls are retried here with tenacity; downloads are retried
by the worker, which verifies every file. Each download builds its own GoogleDriveFile: pydrive2
keeps one HTTP connection per thread, and a file object must never be shared across threads.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from core.backends.failures import Kind, classify_exception, http_status
from core.backends.timestamps import unix_time

FOLDER = "application/vnd.google-apps.folder"
CHUNK = 8 * 1024 * 1024  # 8 MiB: pydrive2 holds one chunk in RAM per download


@dataclass(frozen=True)
class DriveFile:
    id: str
    title: str
    size: int
    md5: str
    parents: tuple[str, ...]
    created: float | None = None  # Drive's createdDate (Google's clock), as a Unix time


@dataclass(frozen=True)
class Quota:
    used: int  # bytes of every app sharing the quota (Drive, Gmail, Photos)
    total: int | None  # None: unlimited
    trash: int


class VerifyError(Exception):
    """A download whose size or MD5 does not match Drive's: retried, never kept."""


def _q(text: str) -> str:
    """Quote a string for a Drive query."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _transient(exc: BaseException) -> bool:
    """Worth a quick retry here: a server error, a rate limit, a reset, a short outage."""
    return classify_exception(exc)[0] in (Kind.TRANSIENT, Kind.OUTAGE)


class Drive:
    def __init__(self, drive: Any, *, retries: int = 4) -> None:
        self._drive = drive  # a pydrive2 GoogleDrive
        self._retrying = Retrying(
            stop=stop_after_attempt(retries), reraise=True,
            wait=wait_exponential_jitter(multiplier=0.2, max=5, jitter=0.2),
            retry=retry_if_exception(_transient))

    @classmethod
    def for_emulator(cls, url: str) -> Drive:
        from core.connect import make_drive

        return cls(make_drive(url))

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self._retrying(fn, *args, **kwargs)

    def quota(self) -> Quota:
        about = self._call(self._drive.GetAbout)
        total = None if about.get("quotaType") == "UNLIMITED" else int(
            about.get("quotaBytesTotal") or 0) or None
        # The 15 GB is shared with Gmail and Photos: quotaBytesUsed counts Drive alone,
        # quotaBytesUsedAggregate every app (Drive v2 about resource).
        used = about.get("quotaBytesUsedAggregate") or about.get("quotaBytesUsed") or 0
        return Quota(int(used), total, int(about.get("quotaBytesUsedInTrash") or 0))

    def find_folders(self, name: str) -> list[str]:
        """Every folder of that title at any depth (EE may have made several), newest first."""
        q = f"title = {_q(name)} and mimeType = '{FOLDER}' and trashed = false"
        items = self._call(lambda: self._drive.ListFile({"q": q}).GetList())
        items.sort(key=lambda f: f.get("modifiedDate", ""), reverse=True)
        return [f["id"] for f in items]

    def list_folder(self, folder_ids: list[str]) -> list[DriveFile]:
        """Files (not folders, not trashed) in any of the folders, in one query."""
        if not folder_ids:
            return []
        parents = " or ".join(f"{_q(fid)} in parents" for fid in folder_ids)
        q = f"({parents}) and trashed = false and mimeType != '{FOLDER}'"
        items = self._call(lambda: self._drive.ListFile({"q": q}).GetList())
        return [DriveFile(f["id"], f["title"], int(f.get("fileSize") or 0),
                          f.get("md5Checksum", ""),
                          tuple(p["id"] for p in f.get("parents", ())),
                          unix_time(f.get("createdDate"))) for f in items]

    def download(self, file: DriveFile, dest: Path) -> None:
        """Download to `dest` (a .part path), hashing the bytes as they are written, check size
        and MD5, fsync. Raise VerifyError on a mismatch; the partial file is removed on any
        failure. (Reading the file back for its MD5 cost 30 ms of every 2 s download at
        10 MB/s, a connection idle meanwhile.)"""
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        try:
            chunks = self._drive.CreateFile({"id": file.id}).GetContentIOBuffer(
                chunksize=CHUNK)
            with open(dest, "wb") as fh:
                for chunk in chunks:
                    digest.update(chunk)
                    fh.write(chunk)
                    size += len(chunk)
                fh.flush()
                if size != file.size:
                    raise VerifyError(f"{file.title}: got {size} bytes, Drive says {file.size}")
                if file.md5 and digest.hexdigest() != file.md5:
                    raise VerifyError(f"{file.title}: MD5 {digest.hexdigest()} does not match "
                                      f"Drive's {file.md5}")
                os.fsync(fh.fileno())
        except BaseException:
            dest.unlink(missing_ok=True)
            raise

    def delete(self, file_id: str) -> None:
        """Delete for good (trash would keep counting against the quota). Gone already is fine:
        a resent delete after a crash must not fail."""
        def _delete() -> None:
            try:
                self._drive.CreateFile({"id": file_id}).Delete()
            except Exception as exc:
                if http_status(exc) != 404:
                    raise

        self._call(_delete)
