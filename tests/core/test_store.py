"""The session store: created atomically, reopened after an unclean close, one worker only,
commands checked before they are queued, schema migrations."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core import paths
from core.session import create_session
from core.store import SCHEMA_VERSION, SessionBusy, Store, StoreError
from tests.conftest import BASE_JOB, write_job

ROOT = Path(__file__).parents[2]


@pytest.fixture
def store(tmp_path: Path):
    s, _ = create_session(write_job(tmp_path, BASE_JOB))
    yield s
    s.close()


def _python(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ})


def test_session_holds_job_units_and_settings(store: Store, tmp_path: Path) -> None:
    assert store.path.parent == paths.sessions_dir()
    assert store.job_text == BASE_JOB
    assert store.counts() == {"pending": 8}
    assert store.setting("max_tasks") == 10
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    again, _ = create_session(write_job(tmp_path, BASE_JOB))
    assert (store.id, again.id) == ("t-1", "t-2")
    assert Store.open("t-2").id == "t-2"
    with pytest.raises(StoreError, match="several sessions"):
        Store.find("t-")
    again.close()


def test_list_sessions_reports_progress(store: Store) -> None:
    store.conn.execute("UPDATE units SET state = 'done' WHERE rowid <= 2")
    (info,) = Store.list_sessions()
    assert (info.id, info.done, info.total) == ("t-1", 2, 8)


def test_second_worker_is_refused_with_a_clear_message(store: Store) -> None:
    child = _python(f"""
        import time
        from core.store import Store
        s = Store({str(store.path)!r}); s.acquire_worker(); print("held", flush=True)
        time.sleep(60)
    """)
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    try:
        with pytest.raises(SessionBusy, match=rf"already being run by pid {child.pid}"):
            store.acquire_worker()
        assert store.worker_alive()
    finally:
        child.kill()
        child.wait()
    # The lock died with its process (kill -9): the next worker starts at once.
    store.acquire_worker()
    store.release_worker()


def test_unclean_close_loses_nothing_committed(store: Store) -> None:
    """A writer killed with SIGKILL in the middle of a stream of commits: every committed row
    is there after reopening, and the database is intact."""
    child = _python(f"""
        from core.store import Store
        s = Store({str(store.path)!r})
        i = 0
        while True:
            with s.tx():
                s.log(f"step {{i}}")
            print(i, flush=True)
            i += 1
    """)
    assert child.stdout is not None
    seen = -1
    deadline = time.time() + 20
    while seen < 50 and time.time() < deadline:
        seen = int(child.stdout.readline())
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    reopened = Store(store.path)
    assert reopened.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    messages = {r["message"] for r in reopened.events(limit=100_000)}
    assert {f"step {i}" for i in range(seen + 1)} <= messages
    reopened.close()


def test_a_crashed_new_leaves_no_session(tmp_path: Path) -> None:
    # A temporary file from an interrupted `new` is not a session.
    (paths.sessions_dir() / ".t-1.999.tmp").write_bytes(b"partial")
    assert Store.list_sessions() == []


def test_commands_are_checked_before_they_are_queued(store: Store) -> None:
    with pytest.raises(StoreError, match="no unit 'nope'"):
        store.post_command("cancel", "nope")
    unit = store.units()[0]["id"]
    with pytest.raises(StoreError, match="only failed or cancelled units retry"):
        store.post_command("retry", unit)
    with pytest.raises(StoreError, match="unknown command"):
        store.post_command("explode", unit)
    with pytest.raises(StoreError, match="max_tasks must be"):
        store.post_command("set", arg={"key": "max_tasks", "value": 0})
    assert store.pending_commands() == []
    cid = store.post_command("set", arg={"key": "drive_budget", "value": "2 GB"})
    (cmd,) = store.pending_commands()
    assert cmd["id"] == cid and '"value": 2000000000' in cmd["arg"]
    store.finish_command(cid, True, "ok")
    assert store.pending_commands() == []


def test_newer_schema_is_refused(store: Store) -> None:
    store.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer eebatch"):
        Store(store.path)


def test_migrations_run_from_version_zero(tmp_path: Path) -> None:
    from core.store import migrate

    conn = sqlite3.connect(tmp_path / "old.sqlite", isolation_level=None)
    migrate(conn)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"session", "units", "attempts", "files", "events", "commands"} <= tables
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
