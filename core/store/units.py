"""The units table's named operations for the engine: a unit's state and fields, the units to
send, to download, to count. Mixed into Store (one connection, one owner of the schema)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from core.routes import BATCH, DIRECT
from core.states import (
    A_SUBMITTING,
    BACKOFF,
    DELETED,
    DOWNLOADING,
    EXPORTED,
    FAILED,
    IN_EE,
    LISTED,
    PENDING,
    SPLIT,
    SUBMITTING,
)


def marks(values: Iterable[Any]) -> str:
    """"?, ?, ?" for an IN (…) of these values."""
    return ", ".join("?" * len(list(values)))


# The units admission may send, as the partial index units_to_send (schema v10) names them:
# SQLite uses that index only for a query that repeats its WHERE to the letter.
TO_SEND = (PENDING, BACKOFF)
TO_SEND_WHERE = "state IN ('pending', 'backoff')"
assert f"state IN ({', '.join(repr(s) for s in TO_SEND)})" == TO_SEND_WHERE


class UnitOps:
    conn: sqlite3.Connection

    def set_unit(self, unit: str, state: str, *, only_from: tuple[str, ...] | None = None,
                 **fields: Any) -> None:
        """Move a unit to `state` (only from the states in `only_from`, if given), setting
        any other columns named in `fields`."""
        sets = ["state = ?", "updated = ?"] + [f"{k} = ?" for k in fields]
        params: list[Any] = [state, time.time(), *fields.values(), unit]
        sql = f"UPDATE units SET {', '.join(sets)} WHERE id = ?"
        if only_from:
            sql += f" AND state IN ({marks(only_from)})"
            params += list(only_from)
        self.conn.execute(sql, params)

    def any_unit_in(self, states: tuple[str, ...]) -> bool:
        return self.count_units_in(states) > 0

    def count_units_in(self, states: tuple[str, ...]) -> int:
        # From the counts the triggers keep (schema v10): counting the units themselves read
        # every unfinished unit each second (28 ms at a million).
        return int(self.conn.execute(
            f"SELECT COALESCE(SUM(n), 0) FROM unit_counts WHERE state IN ({marks(states)})",
            states).fetchone()[0])

    def pixels_in(self, states: tuple[str, ...]) -> int:
        """Estimated pixels of the units in these states (kept by triggers, schema v10)."""
        return int(self.conn.execute(
            f"SELECT COALESCE(SUM(pixels), 0) FROM unit_counts WHERE state IN"
            f" ({marks(states)})", states).fetchone()[0])

    def unit_ids_in(self, states: tuple[str, ...]) -> set[str]:
        return {r[0] for r in self.conn.execute(
            f"SELECT id FROM units WHERE state IN ({marks(states)})", states)}

    def failed_units(self) -> list[tuple[str, str]]:
        """(unit, error) of every failed unit."""
        return [(r["id"], r["error"] or "") for r in self.conn.execute(
            "SELECT id, error FROM units WHERE state = ? ORDER BY id", (FAILED,))]

    def units_to_send(self, now: float, limit: int,
                      route: str = BATCH) -> list[sqlite3.Row]:
        """Pending and backed-off units of a route due now, retries first, then the largest.
        Read in the order of the units_to_send index, so it costs the units read, not every
        pending unit sorted (200 ms a call at a million). Named: without statistics SQLite
        takes units_state and sorts."""
        return self.conn.execute(
            f"SELECT * FROM units INDEXED BY units_to_send WHERE route = ? AND {TO_SEND_WHERE}"
            " AND (not_before IS NULL OR not_before <= ?)"
            " ORDER BY priority DESC, est_bytes DESC, id LIMIT ?",
            (route, now, limit)).fetchall()

    def route_counts(self) -> dict[str, dict[str, int]]:
        """Units per route and state (split units left out: their children count). Reads
        every unit: for one-shot views (status), not for every second."""
        counts: dict[str, dict[str, int]] = {}
        for route, state, n in self.conn.execute(
                "SELECT route, state, COUNT(*) FROM units WHERE state != ?"
                " GROUP BY route, state", (SPLIT,)):
            counts.setdefault(route, {})[state] = n
        return counts

    def set_route(self, unit: str, route: str) -> None:
        self.conn.execute("UPDATE units SET route = ? WHERE id = ?", (route, unit))

    def direct_units_downloading_back_to_pending(self) -> list[sqlite3.Row]:
        """After a restart: direct fetches cut off mid-way start again (no try counted); the
        units, for their part files."""
        rows = self.conn.execute("SELECT * FROM units WHERE state = ? AND route = ?",
                                 (DOWNLOADING, DIRECT)).fetchall()
        self.conn.execute("UPDATE units SET state = ?, not_before = NULL, updated = ?,"
                          " attempts = MAX(attempts - 1, 0) WHERE state = ? AND route = ?",
                          (PENDING, time.time(), DOWNLOADING, DIRECT))
        return rows

    def exported_units_due(self, now: float, limit: int) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM units WHERE state = ? AND (not_before IS NULL OR not_before <= ?)"
            " ORDER BY updated LIMIT ?", (EXPORTED, now, limit)).fetchall()

    def exported_units_unlisted(self) -> list[str]:
        """Exported units none of whose files is listed (waiting to be downloaded)."""
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM units u WHERE state = ? AND NOT EXISTS (SELECT 1 FROM files f"
            " WHERE f.unit = u.id AND f.state = ?)", (EXPORTED, LISTED))]

    def add_children(self, children: list[tuple[Any, ...]]) -> None:
        """A split unit's four children: (id, tile, row, col, depth, parent, period, start,
        end, west, south, east, north, est_pixels, est_bytes, priority, updated, batch, route);
        each is its parent's batch on a quarter of its tile, on its parent's route."""
        self.conn.executemany(
            "INSERT OR IGNORE INTO units (id, tile, row, col, depth, parent, period, start, end,"
            " west, south, east, north, est_pixels, est_bytes, priority, updated, batch, route)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", children)

    def raise_need_bytes(self, needs: list[tuple[int, str]]) -> None:
        """(bytes, unit): what Drive-full failures taught each unit it needs at least."""
        self.conn.executemany("UPDATE units SET need_bytes = MAX(need_bytes, ?) WHERE id = ?",
                              needs)

    def expected_export_bytes(self, ratio: float) -> int:
        """Drive bytes the exports still in EE, or exported but not yet listed, will take:
        each unit's estimate scaled by `ratio`, or what it is known to need if more."""
        # Each exported unit's files through files_unit: `id NOT IN (SELECT unit FROM
        # files …)` read every file of the job at each poll.
        return int(self.conn.execute(
            "SELECT COALESCE(SUM(MAX(CAST(est_bytes * ? AS INTEGER), need_bytes)), 0)"
            f" FROM units u WHERE state IN ({marks(IN_EE)}) OR (state = ? AND NOT EXISTS"
            " (SELECT 1 FROM files f WHERE f.unit = u.id AND f.state != ?))",
            (ratio, *IN_EE, EXPORTED, DELETED)).fetchone()[0])

    def measured_and_estimated_bytes(self) -> tuple[int, int]:
        """Bytes of every file listed so far, and what their units were estimated at: kept
        by triggers as files come and go (schema v10), not summed over every file."""
        actual, estimated = self.conn.execute(
            "SELECT bytes, est_bytes FROM file_totals WHERE id = 1").fetchone()
        return int(actual), int(estimated)

    def units_downloading_back_to_exported(self) -> None:
        """After a restart: downloads start again from the beginning."""
        self.conn.execute("UPDATE units SET state = ?, updated = ? WHERE state = ? AND route = ?",
                          (EXPORTED, time.time(), DOWNLOADING, BATCH))

    def unsent_units_to_backoff(self) -> None:
        """After a restart: units whose export request may not have reached EE are sent
        again (under the same requestId)."""
        self.conn.execute(
            "UPDATE units SET state = ?, not_before = NULL, updated = ? WHERE id IN"
            " (SELECT unit FROM attempts WHERE state = ?) AND state = ?",
            (BACKOFF, time.time(), A_SUBMITTING, SUBMITTING))
