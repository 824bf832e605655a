"""The session store: one SQLite file (WAL) per session, the single source of truth and the bus
between the worker and any UI. Every state change is committed before it matters; a crash or
kill -9 loses at most the step that was in flight, which the worker redoes on restart."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from core import paths

# Unit states, in the order a unit passes through them.
PENDING, SUBMITTING, QUEUED, RUNNING = "pending", "submitting", "queued", "running"
EXPORTED, DOWNLOADING, DONE = "exported", "downloading", "done"
BACKOFF, FAILED, CANCELLED, SPLIT = "backoff", "failed", "cancelled", "split"
STATES = (PENDING, SUBMITTING, QUEUED, RUNNING, EXPORTED, DOWNLOADING, DONE, BACKOFF, FAILED,
          CANCELLED, SPLIT)
ACTIVE = (SUBMITTING, QUEUED, RUNNING, EXPORTED, DOWNLOADING)
# A split unit is replaced by its children: it no longer counts towards progress.
COUNTED = tuple(s for s in STATES if s != SPLIT)

COMMAND_VERBS = ("cancel", "retry", "pause", "resume", "set")

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
]
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    """A session that does not exist, is ambiguous, or is busy; the message says what to do."""


class SessionBusy(StoreError):
    pass


@dataclass(frozen=True)
class SessionInfo:
    id: str
    name: str
    created: float
    path: Path
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(n for s, n in self.counts.items() if s in COUNTED)

    @property
    def done(self) -> int:
        return self.counts.get(DONE, 0)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # a committed step survives power loss too
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


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
    for part in script.split(";"):
        if part.strip():
            yield part


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "job"


class Store:
    """An open session. Each thread that writes opens its own Store on the same file."""

    def __init__(self, path: Path | str) -> None:
        path = Path(path)
        if not path.exists():
            raise StoreError(f"no session file at {path}")
        self.path = path
        self.conn = _connect(path)
        migrate(self.conn)
        row = self.conn.execute("SELECT * FROM session").fetchone()
        if row is None:
            raise StoreError(f"{path} is not a complete session (created by a crashed `new`?)")
        self.id: str = row["id"]
        self.name: str = row["name"]
        self.created: float = row["created"]
        self.job_path = Path(row["job_path"])
        self.job_text: str = row["job_text"]
        self._lock: FileLock | None = None

    # -- creation, lookup --------------------------------------------------------------------

    @classmethod
    def create(cls, name: str, job_path: Path, job_text: str,
               units: Iterable[tuple[Any, ...]], settings: dict[str, Any]) -> Store:
        """Write a new session atomically: built under a temporary name, then renamed, so a
        crash during `new` never leaves a half session behind."""
        directory = paths.sessions_dir()
        base = _slug(name)
        n = 1
        while (directory / f"{base}-{n}.sqlite").exists():
            n += 1
        session_id = f"{base}-{n}"
        final = directory / f"{session_id}.sqlite"
        tmp = directory / f".{session_id}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        conn = _connect(tmp)
        try:
            migrate(conn)
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO session VALUES (?, ?, ?, ?, ?)",
                         (session_id, name, now, str(job_path), job_text))
            conn.executemany("INSERT INTO settings VALUES (?, ?)",
                             [(k, json.dumps(v)) for k, v in settings.items()])
            conn.executemany(
                "INSERT INTO units (id, tile, row, col, period, start, end, west, south, east,"
                " north, est_pixels, est_bytes, updated) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, " + str(now) + ")", units)
            conn.execute("INSERT INTO events (ts, level, message) VALUES (?, 'info', ?)",
                         (now, f"session created from {job_path}"))
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        for suffix in ("-wal", "-shm"):
            Path(str(tmp) + suffix).unlink(missing_ok=True)
        os.replace(tmp, final)
        return cls(final)

    @staticmethod
    def find(ref: str) -> Path:
        """A session by id, unique id prefix, or path to its .sqlite file."""
        candidate = Path(ref)
        if candidate.suffix == ".sqlite" and candidate.exists():
            return candidate
        directory = paths.sessions_dir()
        exact = directory / f"{ref}.sqlite"
        if exact.exists():
            return exact
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
        out = []
        for path in sorted(paths.sessions_dir().glob("*.sqlite")):
            try:
                store = Store(path)
            except (StoreError, sqlite3.DatabaseError):
                continue
            try:
                out.append(SessionInfo(store.id, store.name, store.created, path,
                                       store.counts()))
            finally:
                store.close()
        return sorted(out, key=lambda s: s.created)

    def delete(self) -> None:
        self.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)
        Path(str(self.path) + ".lock").unlink(missing_ok=True)

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
            row = self.conn.execute(
                "SELECT pid, host, started FROM workers WHERE stopped IS NULL"
                " ORDER BY id DESC LIMIT 1").fetchone()
            who = (f"pid {row['pid']} on {row['host']}, started "
                   f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(row['started']))}"
                   if row else "another process")
            raise SessionBusy(f"session {self.id} is already being run by {who}; attach to it "
                              f"with `eebatch open {self.id}` instead") from None
        self._lock = lock
        now = time.time()
        with self.tx():
            self.conn.execute("UPDATE workers SET stopped = ? WHERE stopped IS NULL", (now,))
            self.conn.execute("INSERT INTO workers (pid, host, started, heartbeat) VALUES"
                              " (?, ?, ?, ?)", (os.getpid(), socket.gethostname(), now, now))

    def release_worker(self) -> None:
        if self._lock is not None:
            with self.tx():
                self.conn.execute("UPDATE workers SET stopped = ? WHERE stopped IS NULL AND"
                                  " pid = ?", (time.time(), os.getpid()))
            self._lock.release()
            self._lock = None

    def heartbeat(self) -> None:
        self.conn.execute("UPDATE workers SET heartbeat = ? WHERE stopped IS NULL AND pid = ?",
                          (time.time(), os.getpid()))

    def worker_alive(self) -> bool:
        """True when some process holds the worker lock (this one or another)."""
        if self._lock is not None:
            return True
        lock = FileLock(str(self.path) + ".lock")
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
            raise
        self.conn.execute("COMMIT")

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
        self.conn.execute("INSERT INTO events (ts, level, unit, message) VALUES (?, ?, ?, ?)",
                          (time.time(), level, unit, message))

    def events(self, after_id: int = 0, limit: int = 500) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?",
                                 (after_id, limit)).fetchall()

    # -- units --------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in
                self.conn.execute("SELECT state, COUNT(*) FROM units GROUP BY state")}

    def unit(self, unit_id: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM units WHERE id = ?", (unit_id,)).fetchone()

    def units(self, state: str | None = None) -> list[sqlite3.Row]:
        if state is None:
            return self.conn.execute("SELECT * FROM units ORDER BY rowid").fetchall()
        return self.conn.execute("SELECT * FROM units WHERE state = ? ORDER BY rowid",
                                 (state,)).fetchall()

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
            state = row["state"]
            if verb == "cancel" and state in (DONE, CANCELLED, FAILED, SPLIT):
                raise StoreError(f"unit {unit} is {state}: nothing to cancel")
            if verb == "cancel" and state == DOWNLOADING:
                raise StoreError(f"unit {unit} is downloading: it will be done in moments")
            if verb == "retry" and state not in (FAILED, CANCELLED):
                raise StoreError(f"unit {unit} is {state}: only failed or cancelled units retry")
        if verb == "set":
            key, value = _check_set(arg)
            arg = {"key": key, "value": value}
        cur = self.conn.execute("INSERT INTO commands (ts, verb, unit, arg) VALUES (?, ?, ?, ?)",
                                (time.time(), verb, unit, json.dumps(arg)))
        return int(cur.lastrowid or 0)

    def pending_commands(self) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM commands WHERE state = 'pending' ORDER BY id").fetchall()

    def finish_command(self, command_id: int, ok: bool, result: str) -> None:
        self.conn.execute("UPDATE commands SET state = ?, result = ?, done_ts = ? WHERE id = ?",
                          ("done" if ok else "error", result, time.time(), command_id))

    def command(self, command_id: int) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM commands WHERE id = ?", (command_id,)).fetchone()


def _check_set(arg: Any) -> tuple[str, Any]:
    from core.sizes import parse_size

    if not isinstance(arg, dict) or set(arg) != {"key", "value"}:
        raise StoreError("set needs a key and a value")
    key, value = arg["key"], arg["value"]
    if key == "max_tasks":
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 3000:
            raise StoreError(f"max_tasks must be a whole number from 1 to 3000, got {value!r}")
        return key, value
    if key == "drive_budget":
        try:
            size = parse_size(value)
        except ValueError as exc:
            raise StoreError(f"drive_budget: {exc}") from None
        if size <= 0:
            raise StoreError("drive_budget must be more than 0 bytes")
        return key, size
    raise StoreError(f"cannot set {key!r}; settable: max_tasks, drive_budget")
