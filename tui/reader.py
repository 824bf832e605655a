"""Reads a session store for the dashboard, only what changed since the last poll.

Runs in a thread of the app (or on the event loop in tests, for determinism). Read-only SELECTs
on its own connection: in WAL mode readers never wait for the worker's writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import json
import re
import time
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np
import pyproj

from core.grid import tile_id
from core.states import BACKOFF, CANCELLED, CMD_PENDING, FAILED, FINISHED, PENDING, SETTLED, SPLIT
from core.store import Row, Store, Totals, UnitLayout
from tui.widgets.common import CODE, SPLIT_CODE

# An attempt row's `updated` is taken before its transaction commits, so a poll can see a
# later row before an earlier one: re-read this many seconds back and drop what was already
# sent. (Units need none: they are read by their change counter, in commit order.)
OVERLAP = 5.0
FINISHED_KEPT = 500  # finished tasks kept in the Tasks table (all others are always there)
HEARTBEAT_FRESH = 15.0  # seconds; the worker beats about once a second
EVENTS_FIRST = 1000
EVENTS_PER_POLL = 2000


@dataclass(frozen=True)
class TaskRow:
    """The latest attempt of a unit, joined with the unit's own state."""

    unit: str
    state: str  # the unit's state (pending … done); the EE task state is ee_state
    ee_state: str
    progress: float
    runtime: float | None  # seconds from started to the attempt's last update
    eecu: float | None
    attempt: int
    error: str
    updated: float


@dataclass(frozen=True)
class EventRow:
    id: int
    ts: float
    level: str
    unit: str | None
    message: str


@dataclass(frozen=True)
class CommandRow:
    id: int
    verb: str
    unit: str | None
    state: str  # done / error
    result: str


class TileIds(Sequence[str]):
    """The map's tile ids, made when asked from each tile's row and column (a depth-0 unit's
    tile is core.grid.tile_id(row, col)): a million strings held for one line of text were
    60 MB of the dashboard, and reading them a second of its first paint."""

    _ID = re.compile(r"r(-?\d+)c(-?\d+)")

    def __init__(self, rows: np.ndarray, cols: np.ndarray) -> None:
        self.rows, self.cols = rows, cols

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return tile_id(int(self.rows[i]), int(self.cols[i]))

    def index(self, value: Any, start: int = 0, stop: int | None = None) -> int:
        m = self._ID.fullmatch(value) if isinstance(value, str) else None
        if m is not None:
            found = np.flatnonzero((self.rows == int(m[1])) & (self.cols == int(m[2])))
            found = found[(found >= start) & (found < (len(self) if stop is None else stop))]
            if len(found):
                return int(found[0])
        raise ValueError(f"{value!r} is not a tile of the map")


@dataclass
class MapInit:
    """The tile index, sent once: tile i sits at (rows[i], cols[i]); units are tile x column,
    a column being a period, or with [batches] one batch of a period (a period's columns side
    by side, in batch order)."""

    tile_ids: Sequence[str]
    rows: np.ndarray
    cols: np.ndarray
    periods: list[str]
    base: np.ndarray  # (tiles, columns) state codes of the depth-0 units
    # (origin x, origin y, tile size, geographic) of the grid, to say where a tile is
    grid: tuple[float, float, float, bool] | None = None
    # each column's period index and batch; None: one column per period, no batches
    column_period: np.ndarray | None = None
    column_batch: list[int | None] | None = None


# (tile index, column index, quadrant path, state code); path () is the depth-0 unit itself
UnitChange = tuple[int, int, tuple[int, ...], int]


def _row_error(state: str, unit_error: str, attempt_error: str | None) -> str:
    """The unit's own error when it has one; its last task's only while the unit is still
    failed, backing off or cancelled (a retried unit's old error is history, not news)."""
    if unit_error or state not in (FAILED, BACKOFF, CANCELLED):
        return unit_error
    return attempt_error or ""


def _fresh_if_retried(row: TaskRow) -> TaskRow:
    """A unit waiting to be sent (again) has no task yet: no progress, runtime or cost."""
    if row.state != PENDING:
        return row
    return dataclasses.replace(row, progress=0.0, runtime=None, eecu=None)


def _ints(dtype: type) -> np.ndarray:
    return np.empty(0, dtype=dtype)


@dataclass
class UnitChanges:
    """Units whose state changed, as the map takes them: depth-0 units as three parallel
    arrays (assigned in one NumPy step on the UI thread; a Python loop there took 100 ms for
    100,000 units), split children as a list. Built by the reader, off the UI thread."""

    tiles: np.ndarray = field(default_factory=lambda: _ints(np.int64))
    columns: np.ndarray = field(default_factory=lambda: _ints(np.int64))  # see MapInit
    codes: np.ndarray = field(default_factory=lambda: _ints(np.uint8))
    children: list[UnitChange] = field(default_factory=list)

    @classmethod
    def of(cls, changes: Iterable[UnitChange]) -> UnitChanges:
        base: list[tuple[int, int, int]] = []
        children: list[UnitChange] = []
        for change in changes:
            if change[2]:
                children.append(change)
            else:
                base.append((change[0], change[1], change[3]))
        table = np.array(base, dtype=np.int64).reshape(-1, 3)
        return cls(table[:, 0], table[:, 1], table[:, 2].astype(np.uint8), children)

    def __len__(self) -> int:
        return len(self.tiles) + len(self.children)


@dataclass(frozen=True)
class Outcome:
    """A finished session's result: what it made, where it is and what it cost."""

    totals: Totals
    where: Path | None  # the output folder; None when the job can no longer be read
    left_in_drive: tuple[int, int]  # (files, bytes) of the session's still in Drive


@dataclass
class Snapshot:
    first: bool = False
    map_init: MapInit | None = None
    unit_changes: UnitChanges = field(default_factory=UnitChanges)
    counts: dict[str, int] | None = None
    tasks: list[TaskRow] = field(default_factory=list)  # new or changed rows
    tasks_removed: list[str] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    settings: dict[str, Any] | None = None
    worker_alive: bool | None = None
    commands_done: list[CommandRow] = field(default_factory=list)
    commands_pending: int | None = None  # set when it changed
    outcome: Outcome | None = None  # with counts: the result when every unit is settled
    status: dict[str, Any] | None = None  # the worker's status, when it changed

    @property
    def empty(self) -> bool:
        return not (self.first or self.unit_changes or self.counts is not None or self.tasks
                    or self.tasks_removed or self.events or self.settings is not None
                    or self.worker_alive is not None or self.commands_done
                    or self.commands_pending is not None or self.status is not None)


def _column_key(pair: tuple[str, int | None]) -> tuple[str, int]:
    """A map column's place: by period, then batch (no batch first)."""
    return pair[0], -1 if pair[1] is None else pair[1]


def _state_code(state: str) -> int:
    """The map's code for a unit state (a split unit shows its children)."""
    return SPLIT_CODE if state == SPLIT else CODE.get(state, CODE[PENDING])


def quadrant_path(unit_id: str, tile: str, depth: int) -> tuple[int, ...]:
    """Where a split child sits in its root tile: quadrants 0..3 = NW, NE, SW, SE, one per
    depth. Read from the child's tile id (TILE.q.q…), or else its unit id (PARENT.q)."""
    if depth <= 0:
        return ()
    parts = tile.split(".")[1:]
    if len(parts) < depth:
        parts = unit_id.rsplit(".", depth)[1:]
    return tuple(int(p[:1]) for p in parts[-depth:])


# A unit as the task table needs it: (state, error, updated)
UnitState = tuple[str, str, float]


class StoreReader:
    """Keeps cursors (the units' change counter, the attempts' last `updated`, the last event
    id) and a small model of the tasks, and turns each poll into a Snapshot of what changed."""

    def __init__(self, path: Path, alive_every: float = 5.0) -> None:
        self.path = Path(path)
        self.store = Store(self.path)
        self.alive_every = alive_every
        self.first = True
        self.units_seq = 0  # unit_seq at the last look
        self.attempts_cursor = 0.0
        self.sent_attempts: dict[tuple[str, int], float] = {}
        self.event_cursor = 0
        # (row, col) -> tile index: tile_at[row - row0, col - col0], -1 where no tile
        self.tile_at = np.full((0, 0), -1, dtype=np.int32)
        self.row0 = self.col0 = 0
        self.column_index: dict[tuple[str, int | None], int] = {}  # (period, batch) -> column
        self.tasks: dict[str, TaskRow] = {}
        self.unit_state: dict[str, tuple[str, str]] = {}  # units with tasks: (state, error)
        self.visible: dict[str, TaskRow] = {}  # what the table was sent
        self.settings_json = ""
        self.status_updated: float | None = None
        self.alive_checked = -1e18
        self.commands_cursor: int | None = None
        self.commands_waiting: set[int] = set()
        self.commands_pending = 0
        self.output_dir: Path | None = None  # read once, when the session first shows finished

    def close(self) -> None:
        self.store.close()

    # -- one poll ------------------------------------------------------------------------------

    def poll(self, *, check_alive: bool = False) -> Snapshot:
        snap = Snapshot(first=self.first)
        with self.store.snapshot():  # one consistent picture across the tables
            changed_units = self._units(snap)
            changed_attempts = self._attempts(list(changed_units) if self.first else None)
            if changed_units or self.first:
                snap.counts = self.store.counts()
                snap.outcome = self._outcome(snap.counts)
            self._tasks(snap, changed_units, changed_attempts)
            self._events(snap)
            self._settings(snap)
            self._status(snap)
            self._commands(snap)
        now = time.monotonic()
        if check_alive or now - self.alive_checked >= self.alive_every:
            self.alive_checked = now
            snap.worker_alive = self._worker_alive()
        self.first = False
        return snap

    def _outcome(self, counts: dict[str, int]) -> Outcome | None:
        if not counts or any(n and state not in SETTLED for state, n in counts.items()):
            return None
        if self.output_dir is None:
            from core.session import load_session_spec
            from core.spec import SpecError

            # The job's region file may have gone since: the totals still hold without a folder.
            with contextlib.suppress(SpecError):
                self.output_dir = load_session_spec(self.store).output_dir
        left = self.store.files_in_drive()
        return Outcome(self.store.totals(), self.output_dir,
                       (len(left), sum(r["size"] or 0 for r in left)))

    def _worker_alive(self) -> bool:
        """A fresh heartbeat says so without touching the lock; only without one is the lock
        tried (which, for an instant, could make a worker starting right then think the
        session busy)."""
        beat = self.store.freshest_heartbeat()
        if beat is not None and time.time() - beat < HEARTBEAT_FRESH:
            return True
        return self.store.worker_alive()

    def _units(self, snap: Snapshot) -> dict[str, UnitState]:
        """Units changed since the last poll, by the store's change counter: exactly those,
        however many share a time stamp (after `eebatch new` a million units share one, and
        a window of times re-read them all at every poll)."""
        if self.first:
            return self._first_units(snap)
        rows = self.store.units_changed_after(self.units_seq)
        if not rows:
            return {}
        self.units_seq = rows[-1][10]  # in seq order
        snap.unit_changes = self._changes(rows)
        return {r[0]: (r[7], r[8] or "", r[9]) for r in rows}

    def _first_units(self, snap: Snapshot) -> dict[str, UnitState]:
        """The whole map in one go, and the units the Tasks table shows first (those with a
        task that are not finished, and the latest finished ones): never a Python object
        per unit of the session."""
        self.units_seq = self.store.unit_seq()
        self._map_init(snap)
        return {r["id"]: (r["state"], r["error"] or "", r["updated"])
                for r in self.store.task_units(FINISHED_KEPT)}

    def _map_init(self, snap: Snapshot) -> None:
        job = tomllib.loads(self.store.job_text)
        layout = self.store.unit_layout()
        if layout is not None:
            rows, cols, base, pairs, children = self._from_layout(layout)
        else:  # a session made before the layout was stored: every unit is read
            rows, cols, base, pairs = self._from_units(isinstance(job.get("batches"), dict))
            children = self.store.split_children()
        self.column_index = {pb: j for j, pb in enumerate(pairs)}
        period_ids = sorted({p for p, _ in pairs})
        period_index = {p: i for i, p in enumerate(period_ids)}
        snap.unit_changes = UnitChanges.of(
            ch for ch in map(self._map_change, children) if ch is not None)
        snap.map_init = MapInit(
            TileIds(rows, cols), rows, cols, period_ids, base, self._grid(job),
            np.array([period_index[p] for p, _ in pairs], dtype=np.int64),
            [b for _, b in pairs])

    def _from_layout(self, layout: UnitLayout) -> tuple[
            np.ndarray, np.ndarray, np.ndarray, list[tuple[str, int | None]], list[Row]]:
        """From the layout `new` stored: every unit starts in the most common state, and only
        the units in other states are read (their rowids, from the state index)."""
        n = len(layout.rows)
        order = np.lexsort((layout.cols, layout.rows))  # the map's tiles, in (row, col) order
        place = np.empty(n, dtype=np.int64)
        place[order] = np.arange(n)
        rows, cols = layout.rows[order], layout.cols[order]
        pairs = sorted(set(layout.columns), key=_column_key)
        column_of = np.array([pairs.index(c) for c in layout.columns], dtype=np.int64)
        counts = self.store.counts()
        common = max(counts, key=lambda s: counts[s]) if counts else PENDING
        base = np.full((n, len(pairs)), _state_code(common), dtype=np.uint8)
        for state in counts:
            if state != common:
                k = self.store.rowids_in(state, layout.units) - 1
                base[place[k % n], column_of[k // n]] = _state_code(state)
        self._index_tiles(rows, cols)
        return rows, cols, base, pairs, self.store.units_after(layout.units)

    def _from_units(self, batched: bool) -> tuple[
            np.ndarray, np.ndarray, np.ndarray, list[tuple[str, int | None]]]:
        """From every depth-0 unit, as plain tuples indexed with NumPy."""
        base_rows = self.store.top_level_units(batch=batched)
        columns = ([list(c) for c in zip(*base_rows, strict=True)]
                   or [[] for _ in range(5 if batched else 4)])
        rows, cols, periods, states = columns[:4]
        batches = columns[4] if batched else None
        r = np.array(rows, dtype=np.int64)
        c = np.array(cols, dtype=np.int64)
        # One integer key per tile, ordered as (row, col) is: the map's tile order.
        c0 = int(c.min()) if len(c) else 0
        width = int(c.max()) - c0 + 1 if len(c) else 1
        keys, first, tile_of = np.unique(r * width + (c - c0), return_index=True,
                                         return_inverse=True)
        tile_rows, tile_cols = r[first], c[first]
        period_ids = sorted(set(periods))
        period_index = {p: i for i, p in enumerate(period_ids)}
        column_of: np.ndarray | list[int] = [period_index[p] for p in periods]
        pairs: list[tuple[str, int | None]] = [(p, None) for p in period_ids]
        if batches is not None:
            # a column per (period, batch), in that order: no batch hides another. Keyed as
            # integers in NumPy: a tuple per unit cost a third of this read at 100,000 units.
            b = np.array([-1 if k is None else k for k in batches], dtype=np.int64) + 1
            span = int(b.max()) + 1 if len(b) else 1
            keys_pb, column_of = np.unique(np.asarray(column_of, dtype=np.int64) * span + b,
                                           return_inverse=True)
            pairs = [(period_ids[k // span], k % span - 1 if k % span else None)
                     for k in keys_pb.tolist()]
        code_of = {s: _state_code(s) for s in set(states)}
        base = np.full((len(keys), len(pairs)), CODE[PENDING], dtype=np.uint8)
        base[tile_of.reshape(-1), np.asarray(column_of).reshape(-1)] = [
            code_of[s] for s in states]
        self._index_tiles(tile_rows, tile_cols)
        return tile_rows, tile_cols, base, pairs

    def _index_tiles(self, rows: np.ndarray, cols: np.ndarray) -> None:
        """Where each (row, col) is in the map's tile order, as an array over the grid's
        extent (a dict of a million tuples was 200 MB)."""
        if not len(rows):
            return
        self.row0, self.col0 = int(rows.min()), int(cols.min())
        self.tile_at = np.full((int(rows.max()) - self.row0 + 1,
                                int(cols.max()) - self.col0 + 1), -1, dtype=np.int32)
        self.tile_at[rows - self.row0, cols - self.col0] = np.arange(len(rows))

    def _tile(self, row: int, col: int) -> int | None:
        r, c = row - self.row0, col - self.col0
        if 0 <= r < self.tile_at.shape[0] and 0 <= c < self.tile_at.shape[1]:
            i = int(self.tile_at[r, c])
            return i if i >= 0 else None
        return None

    def _grid(self, job: dict[str, Any]) -> tuple[float, float, float, bool] | None:
        """The grid's origin and tile size from one tile's bounds (tiles sit at
        origin + col * size, origin - row * size), and whether its CRS (the job's) is
        geographic."""
        one = self.store.one_top_level_unit()
        if one is None:
            return None
        size = one["east"] - one["west"]
        crs = job.get("grid", {}).get("crs", "EPSG:4326")
        return (one["west"] - one["col"] * size, one["north"] + one["row"] * size, size,
                pyproj.CRS.from_user_input(crs).is_geographic)

    def _changes(self, rows: list[tuple[Any, ...]]) -> UnitChanges:
        """Changed units (CHANGE_COLUMNS tuples) as the map takes them: depth-0 units looked
        up with NumPy, split children one by one."""
        base = [r for r in rows if r[4] == 0]
        children = [c for c in (self._map_change(r) for r in rows if r[4] > 0)
                    if c is not None]
        if not base:
            return UnitChanges(children=children)
        r = np.array([u[2] for u in base], dtype=np.int64) - self.row0
        c = np.array([u[3] for u in base], dtype=np.int64) - self.col0
        inside = (r >= 0) & (r < self.tile_at.shape[0]) & (c >= 0) & (c < self.tile_at.shape[1])
        tiles = np.full(len(base), -1, dtype=np.int64)
        tiles[inside] = self.tile_at[r[inside], c[inside]]
        columns = np.array([self.column_index.get((u[5], u[6]), -1) for u in base],
                           dtype=np.int64)
        codes = np.array([_state_code(u[7]) for u in base], dtype=np.uint8)
        keep = (tiles >= 0) & (columns >= 0)  # else outside the planned grid: nowhere to draw
        return UnitChanges(tiles[keep], columns[keep], codes[keep], children)

    def _map_change(self, r: Any) -> UnitChange | None:
        """A unit (Row or CHANGE_COLUMNS tuple) as a map change, or None off the map."""
        uid, tile, row, col, depth, period, batch, state = tuple(r)[:8]
        i = self._tile(row, col)
        j = self.column_index.get((period, batch))
        if i is None or j is None:
            return None  # a unit outside the planned grid: nothing to draw it on
        return i, j, quadrant_path(uid, tile, depth), _state_code(state)

    def _attempts(self, first_units: list[str] | None) -> list[Row]:
        """Attempts changed since the last poll; at the first, the latest attempt of each unit
        the Tasks table shows (not every attempt of the session)."""
        if first_units is not None:
            self.attempts_cursor = self.store.last_attempt_change()
            fresh = self.store.latest_attempts(first_units)
        else:
            rows = self.store.attempts_changed_since(self.attempts_cursor - OVERLAP)
            fresh = [r for r in rows
                     if self.sent_attempts.get((r["unit"], r["n"])) != r["updated"]]
            if rows:
                self.attempts_cursor = max(self.attempts_cursor,
                                           max(r["updated"] for r in rows))
        for r in fresh:
            self.sent_attempts[(r["unit"], r["n"])] = r["updated"]
        horizon = self.attempts_cursor - OVERLAP
        if len(self.sent_attempts) > 1000 or first_units is not None:
            self.sent_attempts = {k: v for k, v in self.sent_attempts.items() if v > horizon}
        return fresh

    def _tasks(self, snap: Snapshot, units: dict[str, UnitState],
               attempts: list[Row]) -> None:
        touched: set[str] = set()
        latest: dict[str, Row] = {}
        for a in attempts:
            old = latest.get(a["unit"])
            if old is None or a["n"] >= old["n"]:
                latest[a["unit"]] = a
        missing = [u for u in latest if u not in units and u not in self.unit_state]
        for r in self.store.unit_states(missing):
            self.unit_state[r["id"]] = (r["state"], r["error"] or "")
        for uid, (state, error, _) in units.items():
            if uid in self.tasks or uid in latest:
                self.unit_state[uid] = (state, error)
                touched.add(uid)
        for uid, a in latest.items():
            old = self.tasks.get(uid)
            if old is not None and a["n"] < old.attempt:
                continue
            state, unit_error = self.unit_state.get(uid, (PENDING, ""))
            runtime = a["updated"] - a["started"] if a["started"] else None
            self.tasks[uid] = _fresh_if_retried(TaskRow(
                uid, state, a["state"], float(a["progress"] or 0.0), runtime,
                a["eecu_seconds"], a["n"], _row_error(state, unit_error, a["error"]),
                a["updated"]))
            touched.add(uid)
        for uid in touched - latest.keys():
            old = self.tasks.get(uid)
            if old is None:
                continue
            state, unit_error = self.unit_state[uid]
            self.tasks[uid] = _fresh_if_retried(TaskRow(
                old.unit, state, old.ee_state, old.progress, old.runtime, old.eecu, old.attempt,
                _row_error(state, unit_error, old.error), max(old.updated, units[uid][2])))
        if not touched and not self.first:
            return
        self._visible(snap)

    def _visible(self, snap: Snapshot) -> None:
        """Every task that is not finished, and the most recent finished ones: the table stays
        small however long the session runs."""
        finished = [t for t in self.tasks.values() if t.state in FINISHED]
        kept = heapq.nlargest(FINISHED_KEPT, finished, key=lambda t: t.updated)
        want = {t.unit: t for t in self.tasks.values() if t.state not in FINISHED}
        want.update((t.unit, t) for t in kept)
        for uid in self.visible.keys() - want.keys():
            snap.tasks_removed.append(uid)
        for uid, row in want.items():
            if self.visible.get(uid) != row:
                snap.tasks.append(row)
        self.visible = want
        # Finished tasks out of the table are forgotten: they change no more (a finished
        # unit is never retried), and kept they grew with every unit of the session.
        if len(self.tasks) > len(want):
            self.tasks = dict(want)
            self.unit_state = {u: s for u, s in self.unit_state.items() if u in want}

    def _events(self, snap: Snapshot) -> None:
        if self.first:
            rows = self.store.last_events(EVENTS_FIRST)
        else:
            rows = self.store.events_after(self.event_cursor, EVENTS_PER_POLL)
        if rows:
            self.event_cursor = rows[-1]["id"]
        snap.events = [EventRow(r["id"], r["ts"], r["level"], r["unit"], r["message"])
                       for r in rows]

    def _settings(self, snap: Snapshot) -> None:
        rows = self.store.setting_rows()
        text = json.dumps([tuple(r) for r in rows])
        if text != self.settings_json:
            self.settings_json = text
            snap.settings = {r["key"]: json.loads(r["value"]) for r in rows}

    def _status(self, snap: Snapshot) -> None:
        """The worker's status, written about once a second: decoded only when it changed."""
        row = self.store.worker_status_row()
        if row is not None and row[0] != self.status_updated:
            self.status_updated = row[0]
            snap.status = json.loads(row[1])

    def _commands(self, snap: Snapshot) -> None:
        """Results of commands posted since the app opened (from here or from the CLI), and of
        any still waiting from before."""
        if self.commands_cursor is None:
            self.commands_cursor = self.store.last_command_id()
            self.commands_waiting = self.store.waiting_command_ids()
        ids = sorted(self.commands_waiting)
        rows = self.store.commands_since(self.commands_cursor, ids)
        for r in rows:
            self.commands_cursor = max(self.commands_cursor, r["id"])
            if r["state"] == CMD_PENDING:
                self.commands_waiting.add(r["id"])
                continue
            self.commands_waiting.discard(r["id"])
            snap.commands_done.append(CommandRow(r["id"], r["verb"], r["unit"], r["state"],
                                                 r["result"] or ""))
        if len(self.commands_waiting) != self.commands_pending or self.first:
            self.commands_pending = len(self.commands_waiting)
            snap.commands_pending = self.commands_pending
