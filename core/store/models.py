"""Models a recipe trains once in EE before its units run (the classify recipe's classifier):
one row per model key ("job", or a period's id), with the asset it is exported to and the
export that makes it. Mixed into Store (one connection, one owner of the schema).

Crash-safe as every export is: the row, with its requestId, is written before the export is
sent, so a restart sends the same requestId again and EE answers with the same task.
"""

from __future__ import annotations

import sqlite3
import time

from core.states import BACKOFF, FAILED, M_SUBMITTING, PENDING


class ModelOps:
    conn: sqlite3.Connection

    def model(self, key: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM models WHERE key = ?", (key,)).fetchone()

    def models(self) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM models ORDER BY key").fetchall()

    def model_sending(self, key: str, asset: str, request_id: str, tries: int) -> None:
        """A new export of the model (its first, or after a failure), before it is sent."""
        self.conn.execute(
            "INSERT INTO models (key, asset, request_id, operation, state, error, tries, updated)"
            " VALUES (?, ?, ?, NULL, ?, NULL, ?, ?) ON CONFLICT(key) DO UPDATE SET"
            " asset = excluded.asset, request_id = excluded.request_id, operation = NULL,"
            " state = excluded.state, error = NULL, tries = excluded.tries,"
            " updated = excluded.updated",
            (key, asset, request_id, M_SUBMITTING, tries, time.time()))

    def set_model(self, key: str, state: str, *, operation: str | None = None,
                  error: str | None = None) -> None:
        self.conn.execute(
            "UPDATE models SET state = ?, operation = COALESCE(?, operation), error = ?,"
            " updated = ? WHERE key = ?", (state, operation, error, time.time(), key))

    def periods_to_send(self) -> list[str]:
        """The periods with units still to be sent (pending or backed off)."""
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT period FROM units WHERE state IN (?, ?)", (PENDING, BACKOFF))]

    def count_periods(self) -> int:
        return int(self.conn.execute("SELECT COUNT(DISTINCT period) FROM units").fetchone()[0])

    def period_dates(self, period: str) -> tuple[str | None, str | None]:
        """The dates a period's units cover (by-date batches each hold a part of them)."""
        row = self.conn.execute("SELECT MIN(start), MAX(end) FROM units WHERE period = ?",
                                (period,)).fetchone()
        return row[0], row[1]

    def fail_units_to_send(self, periods: list[str] | None, error: str) -> int:
        """Fail the units still to be sent of `periods` (None: of every period): what they
        needed could not be made. A retry brings them back."""
        where = "state IN (?, ?)"
        args: list[object] = [PENDING, BACKOFF]
        if periods is not None:
            where += f" AND period IN ({', '.join('?' * len(periods))})"
            args += periods
        return self.conn.execute(
            f"UPDATE units SET state = ?, error = ?, not_before = NULL, updated = ? WHERE {where}",
            [FAILED, error, time.time(), *args]).rowcount
