"""What the Earth Engine side of the emulator calls on Drive, and nothing more.

ee.py holds its Drive as a `DriveForExports`; drive_model.DriveModel is the one that serves it
(structurally: it does not import this module). Keeping the protocol this narrow means EE
cannot reach into the HTTP layer or the model's other operations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class DriveForExports(Protocol):
    def free_bytes(self) -> int | None:
        """Quota left in bytes, or None for an unlimited Drive."""
        ...

    def ensure_export_folder(self, name: str) -> str:
        """The id of the folder EE's `folder=` rule picks for `name` (created at the root if
        there is none); '' means the Drive root."""
        ...

    def add_file(self, parent_id: str, title: str, src: Path, mime_type: str) -> object:
        """Move the finished output `src` into folder `parent_id` as a new file. The quota is
        not checked (`free_bytes` is, first); KeyError for an unknown folder. The return
        value (the new file) is not used by EE."""
        ...
