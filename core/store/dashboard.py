"""What the dashboard reads, as named queries: units and attempts changed since a cursor, the
map's first picture (as plain tuples: 100,000 units in half the time of Row objects), events,
settings, command results, and a tile's or unit's details. Read-only; mixed into Store (one
connection, one owner of the schema)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.states import CMD_PENDING
from core.store.units import marks

# batch: where a unit sits on the map with [batches] (NULL without; core/batches.py)
UNIT_COLUMNS = "id, tile, row, col, depth, period, batch, state, error, updated"


class DashboardOps:
    conn: sqlite3.Connection

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One consistent picture across the tables for the reads inside."""
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    def freshest_heartbeat(self) -> float | None:
        return self.conn.execute(
            "SELECT MAX(heartbeat) FROM workers WHERE stopped IS NULL").fetchone()[0]

    def units_changed_since(self, since: float) -> list[sqlite3.Row]:
        return self.conn.execute(f"SELECT {UNIT_COLUMNS} FROM units WHERE updated > ?"
                                 " ORDER BY rowid", (since,)).fetchall()

    def last_unit_change(self) -> float:
        return float(self.conn.execute("SELECT COALESCE(MAX(updated), 0) FROM units"
                                       ).fetchone()[0])

    def unit_stamps_since(self, since: float) -> dict[str, float]:
        """unit -> updated, for units changed since `since`."""
        plain = self._plain()
        return dict(plain.execute("SELECT id, updated FROM units WHERE updated > ?",
                                  (since,)).fetchall())

    def units_with_attempts(self) -> list[sqlite3.Row]:
        return self.conn.execute(f"SELECT {UNIT_COLUMNS} FROM units"
                                 " WHERE id IN (SELECT unit FROM attempts)").fetchall()

    def top_level_units(self, batch: bool = False) -> list[tuple[Any, ...]]:
        """(row, col, period, state, tile) of every unit at depth 0, as plain tuples; with
        `batch`, each unit's batch after them (a job without [batches] need not read it: 10%
        of this read at 100,000 units)."""
        return self._plain().execute(
            f"SELECT row, col, period, state, tile{', batch' * batch} FROM units"
            " WHERE depth = 0").fetchall()

    def split_children(self) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT id, tile, row, col, depth, period, batch, state FROM units WHERE depth > 0"
            " ORDER BY rowid").fetchall()

    def one_top_level_unit(self) -> sqlite3.Row | None:
        return self.conn.execute("SELECT row, col, west, east, north FROM units WHERE depth = 0"
                                 " LIMIT 1").fetchone()

    def unit_states(self, ids: list[str]) -> list[sqlite3.Row]:
        """(id, state, error) of these units (asked 500 at a time: SQLite's variable limit)."""
        rows: list[sqlite3.Row] = []
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            rows += self.conn.execute(
                f"SELECT id, state, error FROM units WHERE id IN ({marks(part)})", part)
        return rows

    def attempts_changed_since(self, since: float) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT unit, n, state, progress, eecu_seconds, error, started, updated"
            " FROM attempts WHERE updated > ? ORDER BY id", (since,)).fetchall()

    def last_events(self, limit: int) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM (SELECT id, ts, level, unit, message FROM events"
            " ORDER BY id DESC LIMIT ?) ORDER BY id", (limit,)).fetchall()

    def events_after(self, after_id: int, limit: int) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT id, ts, level, unit, message FROM events WHERE id > ? ORDER BY id"
            " LIMIT ?", (after_id, limit)).fetchall()

    def worker_status_row(self) -> tuple[float, str] | None:
        """(updated, status as JSON text) of the worker's last status."""
        row = self.conn.execute("SELECT updated, status FROM worker_status WHERE id = 1"
                                ).fetchone()
        return (row[0], row[1]) if row else None

    def setting_rows(self) -> list[sqlite3.Row]:
        """(key, value as JSON text), in key order."""
        return self.conn.execute("SELECT key, value FROM settings ORDER BY key").fetchall()

    def last_command_id(self) -> int:
        return int(self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM commands").fetchone()[0])

    def waiting_command_ids(self) -> set[int]:
        return {r[0] for r in self.conn.execute(
            "SELECT id FROM commands WHERE state = ?", (CMD_PENDING,))}

    def commands_since(self, after_id: int, also: list[int]) -> list[sqlite3.Row]:
        """Commands posted after `after_id`, and those in `also` (still waiting at the last
        look)."""
        return self.conn.execute(
            "SELECT id, verb, unit, state, result FROM commands WHERE id > ? OR id IN"
            f" ({marks(also)}) ORDER BY id", (after_id, *also)).fetchall()

    def units_of_tile(self, tile: str) -> list[sqlite3.Row]:
        """All units of a tile (every period and batch, split children included), by
        primary-key ranges: ids are TILE, TILE.q…, or TILE_PERIOD[_bK], TILE.q…_PERIOD[_bK]"""
        return self.conn.execute(
            "SELECT * FROM units WHERE id = ? OR (id > ? AND id < ?) OR (id > ? AND id < ?)"
            " ORDER BY id", (tile, tile + ".", tile + "/", tile + "_", tile + "`")).fetchall()

    def units_by_id(self, ids: list[str]) -> list[sqlite3.Row]:
        return self.conn.execute(f"SELECT * FROM units WHERE id IN ({marks(ids)}) ORDER BY id",
                                 ids).fetchall()

    def attempts_of(self, ids: list[str]) -> dict[str, list[sqlite3.Row]]:
        """unit -> its attempts, in order."""
        return self._by_unit("SELECT * FROM attempts WHERE unit IN ({}) ORDER BY n", ids)

    def files_of(self, ids: list[str]) -> dict[str, list[sqlite3.Row]]:
        """unit -> its files, in order."""
        return self._by_unit("SELECT * FROM files WHERE unit IN ({}) ORDER BY id", ids)

    def _by_unit(self, sql: str, ids: list[str]) -> dict[str, list[sqlite3.Row]]:
        out: dict[str, list[sqlite3.Row]] = {}
        for start in range(0, len(ids), 500):  # SQLite's variable limit
            part = ids[start:start + 500]
            for r in self.conn.execute(sql.format(marks(part)), part):
                out.setdefault(r["unit"], []).append(r)
        return out

    def _plain(self) -> sqlite3.Cursor:
        cursor = self.conn.cursor()
        cursor.row_factory = None
        return cursor
