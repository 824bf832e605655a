"""The terms of the Drive model (drive_model.py): the fixed ids, the FileInfo snapshot it
hands out, the Patch and Usage it takes and gives, and its refusals.

A refusal is a DriveError carrying the reason and message Google uses (notFound,
storageQuotaExceeded, ...) and the parameter Google names as the culprit; it knows no HTTP
(drive.py picks the status code).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

FOLDER_MIME = "application/vnd.google-apps.folder"
ROOT_ID = "0AEmuRootFolderIdUk9PVA"
USER_NAME = "Emulator User"
USER_EMAIL = "emulator@example.com"
PERMISSION_ID = "00000000000000000000"


def rfc3339(ts: float) -> str:
    """Epoch seconds → '2026-11-21T03:35:40.639Z' (Drive always sends milliseconds)."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


# -- refusals ------------------------------------------------------------------------------


class DriveError(Exception):
    """A refused operation: Google's error `reason` and `message`, and `location`, the
    parameter Google names as the culprit (if any)."""

    reason = "error"

    def __init__(self, message: str, *, location: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location


class NotFound(DriveError):
    reason = "notFound"


class InvalidValue(DriveError):
    reason = "invalid"


class Forbidden(DriveError):
    reason = "forbidden"


class InsufficientFilePermissions(Forbidden):
    reason = "insufficientFilePermissions"


class StorageQuotaExceeded(DriveError):
    reason = "storageQuotaExceeded"


class NotDownloadable(DriveError):
    reason = "fileNotDownloadable"


def file_not_found(file_id: str) -> NotFound:
    return NotFound(f"File not found: {file_id}.", location="fileId")


QUOTA_EXCEEDED = "The user's Drive storage quota has been exceeded."

# -- values -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileInfo:
    """A snapshot of one file, with `trashed` worked out (explicitly or by an ancestor)."""

    id: str
    title: str
    mime_type: str
    parents: tuple[str, ...]
    created: float
    modified: float
    seq: int
    size: int
    md5: str | None
    trashed: bool
    explicitly_trashed: bool
    starred: bool
    hidden: bool
    description: Any
    version: int
    original_filename: str | None

    @property
    def folder(self) -> bool:
        return self.mime_type == FOLDER_MIME

    @property
    def has_content(self) -> bool:
        """Google Docs types (and folders) have no bytes of their own."""
        return not self.mime_type.startswith("application/vnd.google-apps.")

    @property
    def is_root(self) -> bool:
        return self.id == ROOT_ID


KEEP: Final[Any] = object()  # Patch.description when the body does not mention it


@dataclass
class Patch:
    """A metadata change with Drive's patch semantics: None (or KEEP) leaves a field alone.
    `parents` replaces the parents (honoured on updates only; [] means the root);
    `modified_date` is the client's modifiedDate, set only when it asked to."""

    title: str | None = None
    description: Any = KEEP
    mime_type: str | None = None  # ignored for folders
    starred: bool | None = None
    hidden: bool | None = None
    trashed: bool | None = None
    parents: list[str] | None = None
    add_parents: list[str] = field(default_factory=list)
    remove_parents: list[str] = field(default_factory=list)
    modified_date: str | None = None


class Usage(NamedTuple):
    used: int  # bytes of every file, trashed or not
    trash: int  # of those, bytes in the trash
    change_id: int  # bumped by every change
