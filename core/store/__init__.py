"""The session store: one SQLite file (WAL) per session, the single source of truth and the bus
between the worker and any UI. Every state change is committed before it matters; a crash or
kill -9 loses at most the step that was in flight, which the worker redoes on restart."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import socket
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from core import paths
from core.limits import LimitError, check_live
from core.processes import pid_alive
from core.routes import AUTO, BATCH, DIRECT
from core.states import (
    CMD_DONE,
    CMD_ERROR,
    CMD_PENDING,
    COUNTED,
    DONE,
    EE_LIVE,
    IN_DRIVE,
    ON_DISK,
    SPLIT,
    cancel_refusal,
    retry_refusal,
)
from core.store.attempts import AttemptOps
from core.store.costs import CostOps
from core.store.dashboard import DashboardOps, UnitLayout
from core.store.files import FileOps
from core.store.models import ModelOps
from core.store.units import UnitOps, marks
from core.store.views import ViewOps

COMMAND_VERBS = ("cancel", "retry", "pause", "resume", "set")

# Every event of the events table also goes to this logger, once committed, with the session
# id as `record.session`: a session's log file (core/engine/runner.py) takes its own.
EVENTS = logging.getLogger("eebatch.events")
EVENTS.addHandler(logging.NullHandler())  # no handler attached: say nothing (not lastResort)
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
EVENT_TIME = "%Y-%m-%d %H:%M:%S"  # the log file's and `eebatch log`'s time stamps


LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"  # with datefmt=EVENT_TIME


def event_message(unit: str | None, message: str) -> str:
    return f"{unit + ': ' if unit else ''}{message}"


def event_line(row: sqlite3.Row) -> str:
    """An events-table row as LOG_FORMAT writes it into the session's log file."""
    return (f"{time.strftime(EVENT_TIME, time.localtime(row['ts']))} "
            f"{row['level'].upper()} {event_message(row['unit'], row['message'])}")

MIGRATIONS: list[str] = [
    # version 1
    """
    CREATE TABLE session (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL,
        job_path TEXT NOT NULL, job_text TEXT NOT NULL
    );
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE units (
        id TEXT PRIMARY KEY, tile TEXT NOT NULL, row INTEGER NOT NULL, col INTEGER NOT NULL,
        depth INTEGER NOT NULL DEFAULT 0, parent TEXT, period TEXT NOT NULL,
        start TEXT, end TEXT, west REAL NOT NULL, south REAL NOT NULL, east REAL NOT NULL,
        north REAL NOT NULL, est_pixels INTEGER NOT NULL, est_bytes INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT, not_before REAL, updated REAL NOT NULL
    );
    CREATE INDEX units_state ON units(state);
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY, unit TEXT NOT NULL REFERENCES units(id), n INTEGER NOT NULL,
        request_id TEXT NOT NULL UNIQUE, description TEXT NOT NULL, operation TEXT,
        state TEXT NOT NULL, progress REAL NOT NULL DEFAULT 0, eecu_seconds REAL,
        error TEXT, created REAL NOT NULL, started REAL, updated REAL NOT NULL
    );
    CREATE INDEX attempts_unit ON attempts(unit);
    CREATE TABLE files (
        id INTEGER PRIMARY KEY, unit TEXT NOT NULL REFERENCES units(id), attempt INTEGER,
        drive_id TEXT NOT NULL, title TEXT NOT NULL, size INTEGER NOT NULL, md5 TEXT NOT NULL,
        local_path TEXT, state TEXT NOT NULL, updated REAL NOT NULL, UNIQUE (drive_id)
    );
    CREATE INDEX files_unit ON files(unit);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY, ts REAL NOT NULL, level TEXT NOT NULL, unit TEXT,
        message TEXT NOT NULL
    );
    CREATE TABLE commands (
        id INTEGER PRIMARY KEY, ts REAL NOT NULL, verb TEXT NOT NULL, unit TEXT, arg TEXT,
        state TEXT NOT NULL DEFAULT 'pending', result TEXT, done_ts REAL
    );
    CREATE TABLE workers (
        id INTEGER PRIMARY KEY, pid INTEGER NOT NULL, host TEXT NOT NULL, started REAL NOT NULL,
        heartbeat REAL NOT NULL, stopped REAL
    );
    """,
    # version 2: manual retries jump the queue; UIs read only the units changed since last time
    """
    ALTER TABLE units ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX units_updated ON units(updated);
    CREATE INDEX attempts_state ON attempts(state);
    """,
    # version 3: the dashboard reads attempts changed since its last look
    """
    CREATE INDEX attempts_updated ON attempts(updated);
    """,
    # version 4: the worker's per-poll file queries (bytes in Drive, files waiting) by state;
    # without it, two full scans of the files table each poll near the end of a big job
    """
    CREATE INDEX files_state ON files(state);
    """,
    # version 5: outputs are matched to the attempt that wrote them (its folder and EE's
    # createTime); download failures are counted per unit (reset by a retry); a unit's
    # Drive need learned from a "Drive full" failure
    """
    ALTER TABLE attempts ADD COLUMN ee_created REAL;
    ALTER TABLE attempts ADD COLUMN folder_id TEXT;
    ALTER TABLE units ADD COLUMN download_failures INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE units ADD COLUMN need_bytes INTEGER NOT NULL DEFAULT 0;
    """,
    # version 6: the worker's status (written each second) gets a table of its own, out of
    # the user's settings, which a reader then looks at only when they change
    """
    CREATE TABLE worker_status (
        id INTEGER PRIMARY KEY CHECK (id = 1), status TEXT NOT NULL, updated REAL NOT NULL
    );
    INSERT INTO worker_status (id, status, updated)
        SELECT 1, value, 0 FROM settings WHERE key = 'worker_status';
    DELETE FROM settings WHERE key = 'worker_status';
    """,
    # version 7: each attempt keeps the fileNamePrefix it was sent with (core/naming.py):
    # NULL for attempts of earlier versions, whose files carry the unit id as it was
    """
    ALTER TABLE attempts ADD COLUMN prefix TEXT;
    """,
    # version 8: a unit's batch of its collection ([batches], core/batches.py), from 0 in its
    # period; NULL for units of a job without batches, and for every unit of earlier versions
    """
    ALTER TABLE units ADD COLUMN batch INTEGER;
    """,
    # version 9: models a recipe trains once in EE before its units run (core/store/models.py)
    """
    CREATE TABLE models (
        key TEXT PRIMARY KEY, asset TEXT NOT NULL, request_id TEXT NOT NULL, operation TEXT,
        state TEXT NOT NULL, error TEXT, tries INTEGER NOT NULL DEFAULT 0, updated REAL NOT NULL
    );
    """,
    # version 10: what the worker and the dashboard ask every second or poll, answered without
    # reading every unit (a million units: issue 15). Units (and their estimated pixels) per
    # state, kept by triggers as units change state (the status heartbeat counted every
    # unfinished unit: 28 ms a second);
    # a change counter, units.seq, that the dashboard reads changes by exactly (it re-read
    # every unit of the last 5 s: after `eebatch new`, the whole session at every poll);
    # admission's order as a partial index (it sorted every pending unit at each submit:
    # 200 ms); the bytes of every file listed and their units' estimates, kept by triggers
    # (the size-ratio learner read every file and unit at each poll); and where each planned
    # unit sits (unit_layout, written by `new`: core/store/dashboard.py), so the dashboard's
    # first picture needs no read of every unit.
    """
    CREATE TABLE unit_counts (
        state TEXT PRIMARY KEY, n INTEGER NOT NULL, pixels INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO unit_counts (state, n, pixels)
        SELECT state, COUNT(*), SUM(est_pixels) FROM units GROUP BY state;
    CREATE TRIGGER unit_counts_insert AFTER INSERT ON units BEGIN
        INSERT INTO unit_counts (state, n, pixels) VALUES (NEW.state, 1, NEW.est_pixels)
            ON CONFLICT (state) DO UPDATE SET n = n + 1, pixels = pixels + NEW.est_pixels;
    END;
    CREATE TRIGGER unit_counts_delete AFTER DELETE ON units BEGIN
        UPDATE unit_counts SET n = n - 1, pixels = pixels - OLD.est_pixels
            WHERE state = OLD.state;
    END;
    CREATE TRIGGER unit_counts_update AFTER UPDATE OF state, est_pixels ON units
        WHEN OLD.state IS NOT NEW.state OR OLD.est_pixels IS NOT NEW.est_pixels BEGIN
        UPDATE unit_counts SET n = n - 1, pixels = pixels - OLD.est_pixels
            WHERE state = OLD.state;
        INSERT INTO unit_counts (state, n, pixels) VALUES (NEW.state, 1, NEW.est_pixels)
            ON CONFLICT (state) DO UPDATE SET n = n + 1, pixels = pixels + NEW.est_pixels;
    END;
    ALTER TABLE units ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE unit_seq (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
    INSERT INTO unit_seq (id, n) VALUES (1, 0);
    CREATE INDEX units_seq ON units(seq) WHERE seq > 0;
    CREATE TRIGGER units_seq_insert AFTER INSERT ON units BEGIN
        UPDATE unit_seq SET n = n + 1 WHERE id = 1;
        UPDATE units SET seq = (SELECT n FROM unit_seq WHERE id = 1) WHERE rowid = NEW.rowid;
    END;
    CREATE TRIGGER units_seq_update AFTER UPDATE OF state, error ON units
        WHEN NEW.seq IS OLD.seq BEGIN
        UPDATE unit_seq SET n = n + 1 WHERE id = 1;
        UPDATE units SET seq = (SELECT n FROM unit_seq WHERE id = 1) WHERE rowid = NEW.rowid;
    END;
    CREATE INDEX units_to_send ON units(priority DESC, est_bytes DESC, id)
        WHERE state IN ('pending', 'backoff');
    CREATE TABLE unit_layout (
        id INTEGER PRIMARY KEY CHECK (id = 1), rows BLOB NOT NULL, cols BLOB NOT NULL,
        columns TEXT NOT NULL
    );
    CREATE TABLE file_totals (
        id INTEGER PRIMARY KEY CHECK (id = 1), bytes INTEGER NOT NULL, est_bytes INTEGER NOT NULL
    );
    INSERT INTO file_totals (id, bytes, est_bytes) SELECT 1,
        (SELECT COALESCE(SUM(size), 0) FROM files),
        (SELECT COALESCE(SUM(est_bytes), 0) FROM units WHERE id IN (SELECT unit FROM files));
    CREATE TRIGGER file_totals_insert AFTER INSERT ON files BEGIN
        UPDATE file_totals SET bytes = bytes + NEW.size, est_bytes = est_bytes + CASE
            WHEN (SELECT COUNT(*) FROM files WHERE unit = NEW.unit) = 1
            THEN COALESCE((SELECT est_bytes FROM units WHERE id = NEW.unit), 0) ELSE 0 END
        WHERE id = 1;
    END;
    CREATE TRIGGER file_totals_delete AFTER DELETE ON files BEGIN
        UPDATE file_totals SET bytes = bytes - OLD.size, est_bytes = est_bytes - CASE
            WHEN NOT EXISTS (SELECT 1 FROM files WHERE unit = OLD.unit)
            THEN COALESCE((SELECT est_bytes FROM units WHERE id = OLD.unit), 0) ELSE 0 END
        WHERE id = 1;
    END;
    CREATE TRIGGER file_totals_update AFTER UPDATE OF size, unit ON files BEGIN
        UPDATE file_totals SET bytes = bytes - OLD.size + NEW.size, est_bytes = est_bytes
            - CASE WHEN OLD.unit IS NOT NEW.unit
                   AND NOT EXISTS (SELECT 1 FROM files WHERE unit = OLD.unit)
              THEN COALESCE((SELECT est_bytes FROM units WHERE id = OLD.unit), 0) ELSE 0 END
            + CASE WHEN OLD.unit IS NOT NEW.unit
                   AND (SELECT COUNT(*) FROM files WHERE unit = NEW.unit) = 1
              THEN COALESCE((SELECT est_bytes FROM units WHERE id = NEW.unit), 0) ELSE 0 END
        WHERE id = 1;
    END;
    """,
    # version 11: the route each unit takes (core/routes.py): 'batch' (an export through
    # Drive) or 'direct' (computed interactively); admission and the direct room each read
    # their own units in the send order, so the route leads the index.
    """
    ALTER TABLE units ADD COLUMN route TEXT NOT NULL DEFAULT 'batch';
    DROP INDEX units_to_send;
    CREATE INDEX units_to_send ON units(route, priority DESC, est_bytes DESC, id)
        WHERE state IN ('pending', 'backoff');
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


# What other modules may name of SQLite without importing it: a row as queries return it, and
# the error a read of a locked, vanished or damaged file raises.
Row = sqlite3.Row
DatabaseError = sqlite3.Error


class StoreError(Exception):
    """A session that does not exist, is ambiguous, or is busy; the message says what to do."""


class SessionBusy(StoreError):
    pass


class SessionDamaged(StoreError):
    """A session file SQLite cannot read (truncated, overwritten, empty) or that holds no
    eebatch session. Nothing can be recovered from it; `eebatch rm` removes it."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path} is not a readable eebatch session ({reason}); "
                         f"`eebatch rm {_ref(path)}` removes it")


def _ref(path: Path) -> str:
    """How to name a session file on the command line: its id when it is in the sessions dir."""
    return path.stem if path.parent == paths.sessions_dir() else str(path)


# SQLite's primary result codes for a file that is not (or no longer) a database; every other
# error (locked, busy, read-only, I/O) says nothing about the file's content.
_DAMAGE_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def is_damage(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _DAMAGE_CODES


def read_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """The StoreError to raise for a SQLite error met while reading the session at `path`."""
    if is_damage(exc):
        return SessionDamaged(path, str(exc))
    return StoreError(f"cannot read session {path}: {exc}")


@dataclass(frozen=True)
class SessionInfo:
    id: str
    name: str
    created: float
    path: Path
    counts: dict[str, int]
    job_path: Path | None = None  # the job file it was created from (resolved)

    @property
    def total(self) -> int:
        return sum(n for s, n in self.counts.items() if s in COUNTED)

    @property
    def done(self) -> int:
        return self.counts.get(DONE, 0)


@dataclass(frozen=True)
class Totals:
    """What a session has made and what it cost, for the end of a run and `status`."""

    files: int  # verified on disk
    bytes: int
    eecu_seconds: float
    retries: int  # attempts beyond each unit's first
    splits: int
    wall_seconds: float  # summed over the workers that ran it


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    _configure(conn)
    return conn


def _configure(conn: sqlite3.Connection) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # a committed step survives power loss too
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")


def migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(f"this session was written by a newer eebatch (schema {version}); "
                         "upgrade eebatch to open it")
    for n in range(version, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[n]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={n + 1}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration one by one (a trigger's body holds `;`s of its own)."""
    statement = ""
    for part in script.split(";"):
        statement += part + ";"
        if sqlite3.complete_statement(statement):
            if statement.strip(" \n;"):
                yield statement
            statement = ""


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "job"


# -- creating a session file ------------------------------------------------------------------

# `.BASE.PID@HOST.RANDOM.tmp` (and its -wal, -shm); `.ID.PID.tmp` is what older versions wrote.
_TEMPORARY = re.compile(r"^\.[a-z0-9-]+\.(?P<pid>\d+)(?:@(?P<host>[a-z0-9-]+)\.[A-Za-z0-9_]+)?"
                        r"\.tmp(?:-wal|-shm|-journal)?$")


def _host() -> str:
    return _slug(socket.gethostname())




def _remove_stale_temporaries(directory: Path) -> None:
    """Remove what a `new` killed mid-way (kill -9, power loss) left: the temporaries of
    processes of this host that are gone. Another host's (a shared home) are left alone: its
    pids mean nothing here."""
    for path in directory.glob(".*.tmp*"):
        m = _TEMPORARY.match(path.name)
        if m and m["host"] in (None, _host()) and not pid_alive(int(m["pid"])):
            path.unlink(missing_ok=True)


def _remove_temporary(tmp: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)


def _first_free(directory: Path, base: str, n: int) -> int:
    while (directory / f"{base}-{n}.sqlite").exists():
        n += 1
    return n


def _build(tmp: Path, session_id: str, name: str, job_path: Path, job_text: str,
           units: Iterable[tuple[Any, ...]] | UnitSlices, settings: dict[str, Any],
           layout: UnitLayout | None, route: tuple[str, int | None]) -> None:
    """Write the whole session into `tmp` and leave it closed and self-contained (no -wal).
    Written without a journal (a build that fails is deleted whole, never opened), then
    switched to WAL and synced: through the WAL, a million units were written twice."""
    conn = sqlite3.connect(tmp, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-65536")  # 64 MB: the id index of a million units
        migrate(conn)
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO session VALUES (?, ?, ?, ?, ?)",
                     (session_id, name, now, str(job_path), job_text))
        conn.executemany("INSERT INTO settings VALUES (?, ?)",
                         [(k, json.dumps(v)) for k, v in settings.items()])
        # The units table's indexes and triggers are made after its rows: kept up row by
        # row, they took most of the time of a million units' insert.
        later = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'units' AND"
            " type IN ('index', 'trigger') AND sql IS NOT NULL").fetchall()
        for kind, name, _ in later:
            conn.execute(f"DROP {kind.upper()} {name}")
        if isinstance(units, UnitSlices):
            for period, start, end, batch, rows in units.slices:
                # What a slice's units share, written once as literals: bound for each unit,
                # they were half of a million units' insert.
                shared = ", ".join(map(_literal, (period, start, end, batch, now)))
                conn.executemany(
                    "INSERT INTO units (id, tile, row, col, west, south, east, north,"
                    " est_pixels, est_bytes, period, start, end, batch, updated) VALUES"
                    f" (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {shared})", rows)
        else:
            conn.executemany(
                "INSERT INTO units (id, tile, row, col, period, start, end, west, south, east,"
                " north, est_pixels, est_bytes, batch, updated) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, " + str(now) + ")",
                _with_batch(units))
        _set_starting_routes(conn, route)
        for _, _, sql in later:
            conn.execute(sql)
        conn.execute("INSERT INTO unit_counts (state, n, pixels) SELECT state, COUNT(*),"
                     " SUM(est_pixels) FROM units GROUP BY state")
        if layout is not None:
            layout.write(conn)
        conn.execute("INSERT INTO events (ts, level, message) VALUES (?, 'info', ?)",
                      (now, f"session created from {job_path}"))
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    fd = os.open(tmp, os.O_RDONLY)  # no connection is open: no SQLite lock to lose
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _set_starting_routes(conn: sqlite3.Connection, route: tuple[str, int | None]) -> None:
    """Each new unit's route (core/routes.py starting_route): every unit batch (the column's
    default) or direct, or for auto, direct up to the given pixels."""
    name, max_pixels = route
    if name == DIRECT:
        conn.execute("UPDATE units SET route = ?", (DIRECT,))
    elif name == AUTO:
        assert max_pixels is not None
        conn.execute("UPDATE units SET route = ? WHERE est_pixels <= ?", (DIRECT, max_pixels))


@dataclass(frozen=True)
class UnitSlices:
    """Units to store a slice at a time, as Plan.slice_rows gives them: (period, start, end,
    batch, rows), each row (id, tile, row, col, west, south, east, north, pixels, bytes)."""

    slices: Iterable[tuple[str, str | None, str | None, int | None, Iterable[tuple[Any, ...]]]]


def _literal(value: str | float | None) -> str:
    """A value as an SQL literal (strings quoted, quotes doubled)."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def _with_batch(units: Iterable[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """Unit rows as Plan.unit_rows gives them: 14 values, the batch last; 13 is a unit of no
    batch (given None). Rows of 14 pass as they are (a step per unit was a second of a
    million units' `new`)."""
    rows = iter(units)
    first = next(rows, None)
    if first is None:
        return iter(())
    if len(first) == 14:
        return itertools.chain([first], rows)
    return ((*unit, None) for unit in itertools.chain([first], rows))


def _rename_session(tmp: Path, session_id: str) -> None:
    """Give the session being built another id (its first choice was taken meanwhile)."""
    conn = _connect(tmp)
    try:
        conn.execute("UPDATE session SET id = ?", (session_id,))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _check_session_file(path: Path, conn: sqlite3.Connection) -> str | None:
    """What makes the file no session, asked of SQLite itself before anything is written:
    SQLite would take an empty file for a new database, and `_configure` would switch any
    SQLite file to WAL - neither may happen to a file that is not a session. (Never read the
    file through a second descriptor of our own: closing it drops every POSIX lock SQLite
    holds on it in this process, and another process then deletes the live WAL.)"""
    if path.stat().st_size == 0:
        return "the file is empty"
    if conn.execute("PRAGMA user_version").fetchone()[0] == 0:  # sessions are born migrated
        return "a SQLite file without an eebatch session in it"
    wal = path.with_name(path.name + "-wal")
    if not (wal.exists() and wal.stat().st_size > 0):  # with a WAL, pages may live there
        # A file cut short reads fine up to the cut, and a write then lands past it.
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        size = pages * conn.execute("PRAGMA page_size").fetchone()[0]
        if size > path.stat().st_size:
            return f"truncated: {path.stat().st_size:,} of the {size:,} bytes its header counts"
    return None


# Tables every session has had since schema 1: one missing is a damaged file, not a session.
SESSION_TABLES = ("session", "settings", "units", "attempts", "files", "events", "commands")


def _open_session(path: Path) -> tuple[sqlite3.Connection, sqlite3.Row]:
    """The one way into a session file: a connection (migrated to this schema) and its session
    row, or a StoreError saying what is wrong - SessionDamaged when the file is not a session."""
    if not path.is_file():
        raise StoreError(f"no session file at {path}")
    try:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise read_error(path, exc) from None
    try:
        problem = _check_session_file(path, conn)
        if problem:
            raise SessionDamaged(path, problem)
        _configure(conn)
        try:
            migrate(conn)
        except StoreError as exc:  # a newer eebatch's: say which file
            raise StoreError(f"{path}: {exc}") from None
        missing = [t for t in SESSION_TABLES if not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (t,)).fetchone()]
        if missing:
            raise SessionDamaged(path, f"its {', '.join(missing)} table is missing")
        row = conn.execute("SELECT * FROM session").fetchone()
        if row is None:
            raise SessionDamaged(path, "no session record in it")
    except sqlite3.Error as exc:
        conn.close()
        raise read_error(path, exc) from None
    except BaseException:
        conn.close()
        raise
    return conn, row


class Store(UnitOps, AttemptOps, FileOps, ModelOps, CostOps, ViewOps, DashboardOps):
    """An open session. Each thread that writes opens its own Store on the same file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock: FileLock | None = None
        self.conn, row = _open_session(self.path)
        self.id: str = row["id"]
        self.name: str = row["name"]
        self.created: float = row["created"]
        self.job_path = Path(row["job_path"])
        self.job_text: str = row["job_text"]
        self._unlogged: list[tuple[str, str | None, str]] = []  # events of the open transaction

    # -- creation, lookup --------------------------------------------------------------------

    @classmethod
    def create(cls, name: str, job_path: Path, job_text: str,
               units: Iterable[tuple[Any, ...]] | UnitSlices, settings: dict[str, Any],
               layout: UnitLayout | None = None,
               route: tuple[str, int | None] = (BATCH, None)) -> Store:
        """Write a new session: built in a temporary file, then hard-linked to its final name.
        The link fails if the name exists, so two `new`s at once never share an id: the loser
        takes the next number. A temporary is removed on any error, and one left by a killed
        process is removed by the next `new`. `layout` says where the units sit, in the order
        given (the dashboard's first read; kept only if the rows match it); `route` the units'
        routes (core/routes.py starting_route)."""
        directory = paths.sessions_dir()
        _remove_stale_temporaries(directory)
        base = _slug(name)
        fd, tmp_name = tempfile.mkstemp(
            dir=directory, prefix=f".{base}.{os.getpid()}@{_host()}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            n = _first_free(directory, base, 1)
            _build(tmp, f"{base}-{n}", name, job_path, job_text, units, settings, layout,
                   route)
            while True:
                final = directory / f"{base}-{n}.sqlite"
                try:
                    os.link(tmp, final)  # atomic and exclusive: never replaces a session
                    break
                except FileExistsError:
                    n = _first_free(directory, base, n + 1)
                    _rename_session(tmp, f"{base}-{n}")
        finally:
            _remove_temporary(tmp)
        return cls(final)

    @staticmethod
    def find(ref: str) -> Path:
        """A session by id, unique id prefix, or path to its .sqlite file."""
        candidate = Path(ref)
        directory = paths.sessions_dir()
        exact = directory / f"{ref}.sqlite"
        try:
            if candidate.suffix == ".sqlite" and candidate.exists():
                return candidate
            if exact.exists():
                return exact
        except (OSError, ValueError):  # a name too long, a NUL: no such session
            raise StoreError(f"no session {ref!r}; `eebatch sessions` lists them") from None
        matches = sorted(p for p in directory.glob("*.sqlite") if p.stem.startswith(ref))
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise StoreError(f"no session {ref!r}; `eebatch sessions` lists them")
        names = ", ".join(p.stem for p in matches)
        raise StoreError(f"{ref!r} matches several sessions ({names}); give more of the id")

    @classmethod
    def open(cls, ref: str) -> Store:
        return cls(cls.find(ref))

    @staticmethod
    def list_sessions() -> list[SessionInfo]:
        """The sessions that open, oldest first (`scan_sessions` also gives the others)."""
        return Store.scan_sessions()[0]

    @staticmethod
    def scan_sessions() -> tuple[list[SessionInfo], list[tuple[Path, StoreError]]]:
        """Every session file: the readable ones oldest first, and each of the others with
        what is wrong with it (SessionDamaged for a damaged file), so a listing can show them."""
        out: list[SessionInfo] = []
        problems: list[tuple[Path, StoreError]] = []
        for path in sorted(paths.sessions_dir().glob("*.sqlite")):
            try:
                store = Store(path)
            except StoreError as exc:
                problems.append((path, exc))
                continue
            try:
                out.append(SessionInfo(store.id, store.name, store.created, path,
                                       store.counts(), store.job_path))
            except sqlite3.Error as exc:
                problems.append((path, read_error(path, exc)))
            finally:
                store.close()
        return sorted(out, key=lambda s: s.created), problems

    def delete(self) -> None:
        self.close()
        Store.remove_files(self.path)

    @staticmethod
    def remove_files(path: Path) -> None:
        """Delete a session file and its companions; for a damaged file no Store can open."""
        for suffix in ("", "-wal", "-shm", ".lock"):
            Path(str(path) + suffix).unlink(missing_ok=True)

    def close(self) -> None:
        self.release_worker()
        self.conn.close()

    # -- the worker lock ---------------------------------------------------------------------

    def acquire_worker(self) -> None:
        """One worker per session. An OS file lock dies with its process (kill -9 included),
        so a crashed worker never blocks the next one."""
        lock = FileLock(str(self.path) + ".lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise SessionBusy(f"session {self.id} is already being run by {self.who_runs()}; "
                              f"attach to it with `eebatch open {self.id}` instead") from None
        self._lock = lock
        now = time.time()
        with self.tx():
            self.conn.execute("UPDATE workers SET stopped = ? WHERE stopped IS NULL", (now,))
            self.conn.execute("INSERT INTO workers (pid, host, started, heartbeat) VALUES"
                              " (?, ?, ?, ?)", (os.getpid(), socket.gethostname(), now, now))

    def who_runs(self) -> str:
        """"pid 4242 on host, started 2026-12-01 10:52": the worker last registered."""
        row = self.conn.execute("SELECT pid, host, started FROM workers WHERE stopped IS NULL"
                                " ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return "another process"
        return (f"pid {row['pid']} on {row['host']}, started "
                f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(row['started']))}")

    def release_worker(self) -> None:
        if self._lock is not None:
            with self.tx():
                self.conn.execute("UPDATE workers SET stopped = ? WHERE stopped IS NULL AND"
                                  " pid = ?", (time.time(), os.getpid()))
            self._lock.release()
            self._lock = None

    def worker_status(self) -> dict[str, Any] | None:
        """What the worker last said of itself: Drive figures, rate, ETA, why it waits."""
        row = self.conn.execute("SELECT status FROM worker_status WHERE id = 1").fetchone()
        return json.loads(row[0]) if row else None

    def set_worker_status(self, status: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO worker_status (id, status, updated) VALUES (1, ?, ?) ON CONFLICT(id)"
            " DO UPDATE SET status = excluded.status, updated = excluded.updated",
            (json.dumps(status), time.time()))

    def heartbeat(self) -> None:
        self.conn.execute("UPDATE workers SET heartbeat = ? WHERE stopped IS NULL AND pid = ?",
                          (time.time(), os.getpid()))

    def worker_alive(self) -> bool:
        """True when some process holds the worker lock (this one or another)."""
        return self._lock is not None or Store.worker_lock_held(self.path)

    @staticmethod
    def worker_lock_held(path: Path) -> bool:
        """True when some process holds the worker lock of the session file at `path`."""
        lock = FileLock(str(path) + ".lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return True
        lock.release()
        return False

    # -- transactions, settings, events ------------------------------------------------------

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            self._unlogged.clear()  # never happened: not in the log file either
            raise
        self.conn.execute("COMMIT")
        self._emit_events()

    def setting(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def settings(self) -> dict[str, Any]:
        rows = self.conn.execute("SELECT key, value FROM settings")
        return {key: json.loads(value) for key, value in rows}

    def set_setting(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT INTO settings VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET"
                          " value = excluded.value", (key, json.dumps(value)))

    def log(self, message: str, level: str = "info", unit: str | None = None) -> None:
        """Record an event. It reaches Python logging (the session's log file) only after it
        is committed: a rolled-back step logs nothing, and no log I/O runs in a transaction."""
        self.conn.execute("INSERT INTO events (ts, level, unit, message) VALUES (?, ?, ?, ?)",
                          (time.time(), level, unit, message))
        self._unlogged.append((level, unit, message))
        if not self.conn.in_transaction:  # autocommit: committed already
            self._emit_events()

    def _emit_events(self) -> None:
        events, self._unlogged = self._unlogged, []
        for level, unit, message in events:
            EVENTS.log(_LEVELS.get(level, logging.INFO), event_message(unit, message),
                       extra={"session": self.id})

    def events(self, after_id: int = 0, limit: int = 500) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?",
                                 (after_id, limit)).fetchall()

    # -- units --------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Units per state (those with any), as the triggers of schema v10 keep them."""
        return {r[0]: r[1] for r in
                self.conn.execute("SELECT state, n FROM unit_counts WHERE n > 0")}

    def unit(self, unit_id: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM units WHERE id = ?", (unit_id,)).fetchone()

    def units(self, state: str | None = None) -> list[sqlite3.Row]:
        if state is None:
            return self.conn.execute("SELECT * FROM units ORDER BY rowid").fetchall()
        return self.conn.execute("SELECT * FROM units WHERE state = ? ORDER BY rowid",
                                 (state,)).fetchall()

    def totals(self) -> Totals:
        conn = self.conn
        files = conn.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files"
                             f" WHERE state IN ({marks(ON_DISK)})", ON_DISK).fetchone()
        eecu, tries, units = conn.execute(
            "SELECT COALESCE(SUM(eecu_seconds), 0), COUNT(*), COUNT(DISTINCT unit)"
            " FROM attempts").fetchone()
        # A direct unit's tries have no export (attempt): its count of tries says them.
        direct_retries = conn.execute(
            "SELECT COALESCE(SUM(attempts - 1), 0) FROM units WHERE route = ? AND attempts > 1",
            (DIRECT,)).fetchone()[0]
        wall = conn.execute("SELECT COALESCE(SUM(COALESCE(stopped, heartbeat) - started), 0)"
                            " FROM workers").fetchone()[0]
        return Totals(files[0], files[1], eecu, tries - units + direct_retries,
                      self.counts().get(SPLIT, 0), wall)

    # -- what the session holds in EE and Drive (for `eebatch rm`) ---------------------------

    def live_operations(self) -> list[sqlite3.Row]:
        """(unit, operation) of the attempts EE may still run."""
        return self.conn.execute(
            "SELECT unit, operation FROM attempts WHERE state IN (?, ?, ?)"
            " AND operation IS NOT NULL ORDER BY id", EE_LIVE).fetchall()

    def files_in_drive(self) -> list[sqlite3.Row]:
        """The session's recorded exports still in Drive (not yet deleted from it)."""
        return self.conn.execute(
            "SELECT unit, drive_id, title, size FROM files WHERE state IN (?, ?, ?)"
            " ORDER BY id", IN_DRIVE).fetchall()

    # -- commands (a UI in another process asks the worker) ----------------------------------

    def post_command(self, verb: str, unit: str | None = None, arg: Any = None) -> int:
        """Queue a command for the worker after checking it applies; raise StoreError if not."""
        if verb not in COMMAND_VERBS:
            raise StoreError(f"unknown command {verb!r}; known: {', '.join(COMMAND_VERBS)}")
        if verb in ("cancel", "retry"):
            if unit is None:
                raise StoreError(f"{verb} needs a unit id")
            row = self.unit(unit)
            if row is None:
                raise StoreError(f"no unit {unit!r} in session {self.id}")
            refusal = (cancel_refusal if verb == "cancel" else retry_refusal)(unit, row["state"])
            if refusal:
                raise StoreError(refusal)
        if verb == "set":
            if not isinstance(arg, dict) or set(arg) != {"key", "value"}:
                raise StoreError("set needs a key and a value")
            try:
                arg = {"key": arg["key"], "value": check_live(arg["key"], arg["value"])}
            except LimitError as exc:
                raise StoreError(str(exc)) from None
        cur = self.conn.execute("INSERT INTO commands (ts, verb, unit, arg) VALUES (?, ?, ?, ?)",
                                (time.time(), verb, unit, json.dumps(arg)))
        return int(cur.lastrowid or 0)

    def pending_commands(self) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM commands WHERE state = ? ORDER BY id", (CMD_PENDING,)).fetchall()

    def finish_command(self, command_id: int, ok: bool, result: str) -> None:
        self.conn.execute("UPDATE commands SET state = ?, result = ?, done_ts = ? WHERE id = ?",
                          (CMD_DONE if ok else CMD_ERROR, result, time.time(), command_id))

    def command(self, command_id: int) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM commands WHERE id = ?", (command_id,)).fetchone()
