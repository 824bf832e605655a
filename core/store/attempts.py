"""The attempts table's named operations for the engine: one row per EE export of a unit,
written (with its requestId) before the request leaves, then following EE's task states.
Mixed into Store (one connection, one owner of the schema)."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from core.states import (
    A_SUBMITTING,
    ATTEMPT_LIVE,
    EE_CANCELLED,
    EE_CANCELLING,
    EE_FAILED,
    EE_LIVE,
    EE_PENDING,
    EE_SUCCEEDED,
)
from core.store.units import marks


class AttemptOps:
    conn: sqlite3.Connection

    def latest_attempt(self, unit: str) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT * FROM attempts WHERE unit = ? ORDER BY n DESC LIMIT 1", (unit,)).fetchone()

    def watched_attempts(self) -> list[sqlite3.Row]:
        """Attempts the worker still watches, with their unit's state, depth and count."""
        return self.conn.execute(
            "SELECT a.*, u.state AS unit_state, u.depth, u.attempts AS unit_attempts"
            " FROM attempts a JOIN units u ON u.id = a.unit"
            f" WHERE a.state IN ({marks(ATTEMPT_LIVE)})", ATTEMPT_LIVE).fetchall()

    def count_unsent_and_live(self) -> tuple[int, int]:
        """Attempts whose request may not have reached EE, and those EE may still run."""
        unsent = self.conn.execute("SELECT COUNT(*) FROM attempts WHERE state = ?",
                                   (A_SUBMITTING,)).fetchone()[0]
        live = self.conn.execute(f"SELECT COUNT(*) FROM attempts WHERE state IN"
                                 f" ({marks(EE_LIVE)})", EE_LIVE).fetchone()[0]
        return int(unsent), int(live)

    def record_attempt(self, unit: str, n: int, request_id: str, description: str,
                       prefix: str) -> None:
        now = time.time()
        self.conn.execute(
            "INSERT INTO attempts (unit, n, request_id, description, prefix, state, created,"
            " updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (unit, n, request_id, description, prefix, A_SUBMITTING, now, now))

    def attempt_sent(self, attempt_id: int, operation: str) -> None:
        """EE took the export: its operation's name, and EE's queue."""
        self.conn.execute("UPDATE attempts SET operation = ?, state = ?, updated = ?"
                          " WHERE id = ? AND state = ?",
                          (operation, EE_PENDING, time.time(), attempt_id, A_SUBMITTING))

    def attempt_refused(self, attempt_id: int, error: str) -> None:
        """The export never started: a bad recipe, or EE refused the request."""
        self.conn.execute("UPDATE attempts SET state = ?, error = ? WHERE id = ?",
                          (EE_FAILED, error, attempt_id))

    def attempt_seen(self, attempt_id: int, *, operation: str, state: str, progress: float,
                     eecu_seconds: float | None, error: str | None, started: float | None,
                     ee_created: float | None, folder_id: str | None) -> None:
        """What an operations.list showed of the attempt. EE's createTime and the folder it
        wrote to are kept once known: they say which Drive files are its outputs. Why eebatch
        cancelled it as a straggler stays, whatever EE then says ("Cancelled.")."""
        self.conn.execute(
            "UPDATE attempts SET operation = ?, state = ?, progress = ?, eecu_seconds = ?,"
            " error = CASE WHEN error LIKE 'straggler:%' THEN error ELSE ? END,"
            " started = COALESCE(started, ?), updated = ?,"
            " ee_created = COALESCE(?, ee_created), folder_id = COALESCE(?, folder_id)"
            " WHERE id = ?",
            (operation, state, progress, eecu_seconds, error, started, time.time(), ee_created,
             folder_id, attempt_id))

    def attempt_cancelling(self, attempt_id: int) -> None:
        self.conn.execute("UPDATE attempts SET state = ?, updated = ? WHERE id = ?",
                          (EE_CANCELLING, time.time(), attempt_id))

    def attempt_lost(self, attempt: Any) -> None:
        """An attempt EE no longer knows (operations.get answers 404): one being cancelled is
        over; any other has failed, and its unit is sent again as a new attempt (a new
        requestId: the old one may still be remembered by EE's deduplication)."""
        cancelling = attempt["state"] == EE_CANCELLING
        self.conn.execute(
            "UPDATE attempts SET state = ?, error = ?, updated = ? WHERE id = ?",
            (EE_CANCELLED if cancelling else EE_FAILED, "EE no longer knows this task",
             time.time(), attempt["id"]))

    def succeeded_prefixes(self) -> list[tuple[str, str | None]]:
        """(unit, prefix) of every attempt EE finished: for exports to assets, the assets
        eebatch made (prefix None for attempts of versions that kept none)."""
        return [(r[0], r[1]) for r in self.conn.execute(
            "SELECT unit, prefix FROM attempts WHERE state = ? ORDER BY unit, n",
            (EE_SUCCEEDED,))]
