"""The files table's named operations for the engine: the Drive files of each attempt, from
listed through downloading and verified to deleted (from Drive). Mixed into Store (one
connection, one owner of the schema)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from core.states import (
    DELETED,
    DOWNLOADING,
    EXPORTED,
    FILE_DOWNLOADING,
    IN_DRIVE,
    LISTED,
    LOCAL,
    ON_DISK,
    VERIFIED,
)
from core.store.units import marks


class FileOps:
    conn: sqlite3.Connection

    def file(self, file_id: int) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()

    def file_ids_of(self, unit: str) -> set[int]:
        return {r[0] for r in self.conn.execute("SELECT id FROM files WHERE unit = ?", (unit,))}

    def known_drive_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT drive_id FROM files")}

    def drive_ids_of(self, unit: str, states: tuple[str, ...]) -> list[str]:
        return [r[0] for r in self.conn.execute(
            f"SELECT drive_id FROM files WHERE unit = ? AND state IN ({marks(states)})",
            (unit, *states))]

    def unit_has_files_in(self, unit: str, states: tuple[str, ...]) -> bool:
        return bool(self.conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM files WHERE unit = ? AND state IN ({marks(states)}))",
            (unit, *states)).fetchone()[0])

    def attempt_has_deleted_file(self, attempt_id: int) -> bool:
        """Whether any output of the attempt was taken (verified and removed from Drive)."""
        return bool(self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM files WHERE attempt = ? AND state = ?)",
            (attempt_id, DELETED)).fetchone()[0])

    def record_files(self, unit: str, attempt_id: int | None,
                     files: Iterable[Any]) -> None:
        """Drive files found for the unit's export (DriveFile: id, title, size, md5)."""
        now = time.time()
        self.conn.executemany(
            "INSERT INTO files (unit, attempt, drive_id, title, size, md5, state, updated)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(unit, attempt_id, f.id, f.title, f.size, f.md5, LISTED, now) for f in files])

    def record_local_files(self, unit: str, files: Iterable[tuple[str, int, str, str]]) -> None:
        """Files of a direct unit, verified in place: (title, size, md5, local path). They were
        never in Drive; their drive_id says so and keeps the column unique."""
        now = time.time()
        self.conn.executemany(
            "INSERT INTO files (unit, attempt, drive_id, title, size, md5, local_path, state,"
            " updated) VALUES (?, NULL, ?, ?, ?, ?, ?, ?, ?)",
            [(unit, f"direct:{unit}:{title}", title, size, md5, path, LOCAL, now)
             for title, size, md5, path in files])

    def set_file(self, file_id: int, state: str, **fields: Any) -> None:
        sets = ", ".join(["state = ?", "updated = ?"] + [f"{k} = ?" for k in fields])
        self.conn.execute(f"UPDATE files SET {sets} WHERE id = ?",
                          (state, time.time(), *fields.values(), file_id))

    def drop_files(self, unit: str, states: tuple[str, ...]) -> None:
        """Forget the unit's files in these states (its export is redone or cancelled)."""
        self.conn.execute(f"DELETE FROM files WHERE unit = ? AND state IN ({marks(states)})",
                          (unit, *states))

    def units_with_listed_files(self, units: list[str]) -> set[str]:
        # Only these units' files, through the files_unit index: scanning every file each
        # tick was most of the idle CPU late in a big job.
        return {r[0] for r in self.conn.execute(
            f"SELECT DISTINCT unit FROM files WHERE state = ? AND unit IN ({marks(units)})",
            (LISTED, *units))}

    def files_to_download(self, now: float, limit: int) -> list[sqlite3.Row]:
        """Listed files of units that are exported or downloading and not held back."""
        return self.conn.execute(
            "SELECT f.* FROM files f JOIN units u ON u.id = f.unit WHERE f.state = ?"
            " AND u.state IN (?, ?) AND (u.not_before IS NULL OR u.not_before <= ?)"
            " ORDER BY f.id LIMIT ?", (LISTED, EXPORTED, DOWNLOADING, now, limit)).fetchall()

    def files_downloading(self) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT id, title FROM files WHERE state = ?",
                                 (FILE_DOWNLOADING,)).fetchall()

    def downloads_back_to_listed(self) -> None:
        """After a restart: every download starts again from byte 0 (pydrive2 cannot
        resume)."""
        self.conn.execute("UPDATE files SET state = ? WHERE state = ?",
                          (LISTED, FILE_DOWNLOADING))

    def verified_files(self, limit: int) -> list[sqlite3.Row]:
        """Verified files still in Drive, to delete there."""
        return self.conn.execute("SELECT id, drive_id FROM files WHERE state = ? ORDER BY id"
                                 " LIMIT ?", (VERIFIED, limit)).fetchall()

    def files_left_in_drive(self, unit: str) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM files WHERE unit = ? AND state != ?",
                                     (unit, DELETED)).fetchone()[0])

    def unit_bytes(self, unit: str) -> int:
        return int(self.conn.execute("SELECT COALESCE(SUM(size), 0) FROM files WHERE unit = ?",
                                     (unit,)).fetchone()[0])

    def our_bytes_in_drive(self) -> int:
        """Bytes of the session's files still in Drive: known here exactly."""
        return int(self.conn.execute(
            f"SELECT COALESCE(SUM(size), 0) FROM files WHERE state IN ({marks(IN_DRIVE)})",
            IN_DRIVE).fetchone()[0])

    def files_awaiting_download(self) -> tuple[int, int]:
        """(files, bytes) listed or downloading."""
        n, size = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files WHERE state IN (?, ?)",
            (LISTED, FILE_DOWNLOADING)).fetchone()
        return int(n), int(size)

    def last_verified(self) -> float:
        """When the newest verified file was recorded (0: none yet)."""
        return float(self.conn.execute(
            f"SELECT COALESCE(MAX(updated), 0) FROM files WHERE state IN ({marks(ON_DISK)})",
            ON_DISK).fetchone()[0])

    def manifest_rows(self) -> list[sqlite3.Row]:
        """A row per verified file on disk, with its unit's tile, period, bounds and the route
        the file came by (a file listed in Drive came by batch, whatever its unit is on now)."""
        return self.conn.execute(
            "SELECT f.local_path, f.unit, u.tile, u.period, u.start, u.end, u.west, u.south,"
            " u.east, u.north, f.size, f.md5,"
            f" CASE WHEN f.state = '{LOCAL}' THEN 'direct' ELSE 'batch' END AS route"
            " FROM files f JOIN units u ON u.id = f.unit"
            f" WHERE f.state IN ({marks(ON_DISK)}) AND f.local_path IS NOT NULL",
            ON_DISK).fetchall()
