"""What the dashboard reads, as named queries: units changed since a change counter, attempts
changed since a time, the map's first picture (from the layout `new` stored and the state
index, or for older sessions every unit as plain tuples), events, settings, command results,
and a tile's or unit's details. Read-only but for the layout `new` writes; mixed into Store
(one connection, one owner of the schema)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.states import CMD_PENDING, FINISHED, PENDING, STATES
from core.store.units import TO_SEND_WHERE, marks

# batch: where a unit sits on the map with [batches] (NULL without; core/batches.py)
UNIT_COLUMNS = "id, tile, row, col, depth, period, batch, state, error, updated"
# A changed unit as units_changed_after gives it (plain tuples, in this order)
CHANGE_COLUMNS = "id, tile, row, col, depth, period, batch, state, error, updated, seq"
_INT64 = "<i8"


@dataclass(frozen=True)
class UnitLayout:
    """Where the planned units sit, in the order `new` stores them: the unit of rowid k + 1
    is tile k % T (at rows[i], cols[i]) of column k // T, a column being a (period, batch)
    pair (batch None without [batches]). With it the dashboard's first picture reads only
    the units not in the most common state, through the state index (a million units:
    ~0.1 s, where reading every unit took seconds)."""

    rows: np.ndarray
    cols: np.ndarray
    columns: list[tuple[str, int | None]]

    @property
    def units(self) -> int:
        return len(self.rows) * len(self.columns)

    def write(self, conn: sqlite3.Connection) -> None:
        """Stored only if the units table holds exactly these units at rowids 1..units
        (checked at both ends and by count); otherwise readers read every unit instead."""
        n, top = conn.execute("SELECT COUNT(*), MAX(rowid) FROM units").fetchone()
        if not self.units or n != self.units or top != self.units:
            return
        for k in (0, self.units - 1):
            i, j = k % len(self.rows), k // len(self.rows)
            row = conn.execute("SELECT row, col, period, batch, depth FROM units"
                               " WHERE rowid = ?", (k + 1,)).fetchone()
            if tuple(row) != (int(self.rows[i]), int(self.cols[i]), *self.columns[j], 0):
                return
        conn.execute("INSERT INTO unit_layout (id, rows, cols, columns) VALUES (1, ?, ?, ?)",
                     (np.asarray(self.rows, dtype=_INT64).tobytes(),
                      np.asarray(self.cols, dtype=_INT64).tobytes(),
                      json.dumps([list(c) for c in self.columns])))

    @classmethod
    def read(cls, conn: sqlite3.Connection) -> UnitLayout | None:
        row = conn.execute("SELECT rows, cols, columns FROM unit_layout WHERE id = 1"
                           ).fetchone()
        if row is None:
            return None
        return cls(np.frombuffer(row[0], dtype=_INT64), np.frombuffer(row[1], dtype=_INT64),
                   [(p, b) for p, b in json.loads(row[2])])


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

    def unit_seq(self) -> int:
        """The units' change counter: every insert, and every change of a unit's state or
        error, takes the next number (triggers, schema v10), in commit order."""
        return int(self.conn.execute("SELECT n FROM unit_seq WHERE id = 1").fetchone()[0])

    def units_changed_after(self, seq: int) -> list[tuple[Any, ...]]:
        """CHANGE_COLUMNS of the units changed after `seq` (unit_seq), as plain tuples: exactly
        those, however many share a time stamp."""
        # `seq > 0` as the partial index units_seq says it (the units never changed, seq 0,
        # are not in it): SQLite uses that index only for a query that repeats it.
        return self._plain().execute(f"SELECT {CHANGE_COLUMNS} FROM units WHERE seq > 0 AND"
                                     " seq > ? ORDER BY seq", (seq,)).fetchall()

    def unit_layout(self) -> UnitLayout | None:
        """Where `new` put the planned units (None for sessions made before schema v10)."""
        return UnitLayout.read(self.conn)

    def rowids_in(self, state: str, up_to: int) -> np.ndarray:
        """Rowids (at most `up_to`) of the units in `state`, from the state index alone: one
        string SQLite joins, parsed by NumPy (no Python object per unit)."""
        text = self.conn.execute(
            "SELECT group_concat(rowid, ' ') FROM units WHERE state = ? AND rowid <= ?",
            (state, up_to)).fetchone()[0]
        return np.array(text.split(), dtype=np.int64) if text else np.zeros(0, np.int64)

    def units_after(self, rowid: int) -> list[sqlite3.Row]:
        """The units stored after the planned ones (split children), in order."""
        return self.conn.execute(
            "SELECT id, tile, row, col, depth, period, batch, state FROM units WHERE rowid > ?"
            " ORDER BY rowid", (rowid,)).fetchall()

    def task_units(self, finished: int) -> list[sqlite3.Row]:
        """The units the Tasks table shows at first: every unit with a task that is not
        finished, and the `finished` finished ones changed last. Read through indexes (the
        states, and the order of sending or of change), never every unit: late in a job of a
        million units every unit has a task. A pending unit has had a task only when it is
        sent again first (a retry, a straggler resent: priority > 0)."""
        busy = tuple(s for s in STATES if s not in (PENDING, *FINISHED))
        tasked = "EXISTS (SELECT 1 FROM attempts a WHERE a.unit = units.id)"
        rows = self.conn.execute(
            f"SELECT {UNIT_COLUMNS} FROM units WHERE state IN ({marks(busy)}) AND {tasked}",
            busy).fetchall()
        rows += self.conn.execute(
            f"SELECT {UNIT_COLUMNS} FROM units INDEXED BY units_to_send WHERE route IN"
            f" ('batch', 'direct') AND {TO_SEND_WHERE} AND priority > 0 AND state = ?"
            f" AND {tasked}", (PENDING,)).fetchall()
        if finished <= 0:
            return rows
        # Few finished units: those, sorted. Many: the latest changes first, until enough
        # (most of them are finished units late in a job).
        settled = self.conn.execute(
            f"SELECT COALESCE(SUM(n), 0) FROM unit_counts WHERE state IN ({marks(FINISHED)})",
            FINISHED).fetchone()[0]
        many = settled > 20 * finished
        rows += self.conn.execute(
            f"SELECT {UNIT_COLUMNS} FROM units {'INDEXED BY units_updated' if many else ''}"
            f" WHERE state IN ({marks(FINISHED)}) AND {tasked} ORDER BY updated DESC LIMIT ?",
            (*FINISHED, finished)).fetchall()
        return rows

    def latest_attempts(self, units: list[str]) -> list[sqlite3.Row]:
        """The latest attempt of each of these units (asked 500 at a time)."""
        rows: list[sqlite3.Row] = []
        for start in range(0, len(units), 500):
            part = units[start:start + 500]
            rows += self.conn.execute(
                "SELECT unit, n, state, progress, eecu_seconds, error, started, updated"
                f" FROM attempts a WHERE unit IN ({marks(part)}) AND n = (SELECT MAX(n) FROM"
                " attempts b WHERE b.unit = a.unit)", part)
        return rows

    def last_attempt_change(self) -> float:
        return float(self.conn.execute("SELECT COALESCE(MAX(updated), 0) FROM attempts"
                                       ).fetchone()[0])

    def top_level_units(self, batch: bool = False) -> list[tuple[Any, ...]]:
        """(row, col, period, state) of every unit at depth 0, as plain tuples; with `batch`,
        each unit's batch after them (a job without [batches] need not read it: 10% of this
        read at 100,000 units). For sessions made before the layout was stored."""
        return self._plain().execute(
            f"SELECT row, col, period, state{', batch' * batch} FROM units"
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

    def route_moves(self, ids: list[str]) -> dict[str, str]:
        """unit -> the event that moved it from the direct route to batch (core/engine/direct.py,
        _too_heavy), of these units. Events have no index on unit: a scan of the table (0.3-0.4
        s at 3,000,000 events), for a details screen's few units, never per poll."""
        moves = self._by_unit("SELECT unit, message FROM events WHERE unit IN ({}) AND message"
                              " LIKE 'EE could not compute it directly (%'", ids)
        return {unit: rows[-1]["message"] for unit, rows in moves.items()}

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
