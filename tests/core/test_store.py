"""The session store: created atomically, reopened after an unclean close, one worker only,
commands checked before they are queued, schema migrations."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core import paths
from core.session import create_session
from core.store import (
    _TEMPORARY,
    SCHEMA_VERSION,
    SessionBusy,
    SessionDamaged,
    Store,
    StoreError,
    _slug,
)
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
    """`new` killed (kill -9, power loss) half-way through writing a session: no session
    appears, not even a damaged one, nor anything under a session's name (a journal, a lock);
    what is left is only the dead process's own temporaries, and the next `new` removes them
    and takes the id, as if the crashed one had never run."""
    directory = paths.sessions_dir()
    # A temporary file from an interrupted `new` is not a session.
    planted = f".t-1.{_dead_pid()}.tmp"
    (directory / planted).write_bytes(b"partial")
    assert Store.list_sessions() == []

    # The units written but not committed (enough pages to spill into the WAL): there the
    # child says so and waits to be killed. No timing: the kill comes at that very point.
    child = _python(f"""
        import time
        from pathlib import Path
        from core.store import Store

        def units():
            for i in range(50_000):
                yield (f"u{{i}}", f"r{{i}}c0", i, 0, "all", None, None, 0, 0, 1, 1, 1, 1)
            print("writing", flush=True)
            time.sleep(600)

        Store.create("t", Path({str(tmp_path / "job.toml")!r}), "", units(), {{}})
    """)
    assert child.stdout is not None
    try:
        line = child.stdout.readline().strip()
    finally:
        child.kill()  # SIGKILL: no finally, no cleanup in the child
    _, err = child.communicate()
    assert line == "writing", err

    assert Store.list_sessions() == []
    assert Store.scan_sessions() == ([], [])  # not even a damaged one
    left = sorted(p.name for p in directory.iterdir())
    assert any(n.startswith(f".t.{child.pid}@") and n.endswith(".tmp") for n in left), left
    for name in left:  # no session, journal or lock: only the dead processes' temporaries
        m = _TEMPORARY.match(name)
        assert m and (name == planted or m["pid"] == str(child.pid)), left

    store, _ = create_session(write_job(tmp_path, BASE_JOB))
    assert store.id == "t-1"  # the crashed `new` took no id
    store.close()
    assert sorted(p.name for p in directory.iterdir()) == ["t-1.sqlite"]  # no leftover at all


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


def test_a_session_of_schema_5_keeps_its_workers_status_in_its_own_table(tmp_path: Path) -> None:
    import json

    from core.store import MIGRATIONS, migrate

    conn = sqlite3.connect(tmp_path / "v5.sqlite", isolation_level=None)
    for n, script in enumerate(MIGRATIONS[:5]):  # a session written by eebatch of schema 5
        conn.executescript(script)
        conn.execute(f"PRAGMA user_version={n + 1}")
    status = {"drive_used": 7, "waiting": "why"}
    conn.execute("INSERT INTO settings VALUES ('worker_status', ?), ('max_tasks', '4')",
                 (json.dumps(status),))
    migrate(conn)
    assert json.loads(conn.execute("SELECT status FROM worker_status").fetchone()[0]) == status
    assert [r[0] for r in conn.execute("SELECT key FROM settings")] == ["max_tasks"]


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_concurrent_news_of_one_job_make_distinct_sessions(tmp_path: Path) -> None:
    """Several `eebatch new` of one job released at the same moment: each gets its own
    session, complete and openable; none overwrites another; no temporary file is left."""
    job = write_job(tmp_path, BASE_JOB.replace("size = 1", "size = 0.05"))  # 3,200 units
    go = tmp_path / "go"
    children = [_python(f"""
        import sys, time
        from pathlib import Path
        from tui.cli import main
        print("ready", flush=True)
        deadline = time.monotonic() + 60
        while not Path({str(go)!r}).exists() and time.monotonic() < deadline:
            time.sleep(0.001)
        sys.exit(main(["new", {str(job)!r}]))
    """) for _ in range(4)]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    go.touch()
    outputs = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0] * 4, outputs
    ids = sorted(out.split("created session ")[1].split(":")[0] for out, _ in outputs)
    assert ids == ["t-1", "t-2", "t-3", "t-4"], outputs
    for session_id in ids:
        s = Store.open(session_id)
        assert s.id == session_id and s.counts() == {"pending": 3200}
        s.close()
    assert sorted(p.name for p in paths.sessions_dir().iterdir()) == [
        f"{i}.sqlite" for i in ids]


def test_a_failed_new_leaves_no_temporary_file(tmp_path: Path) -> None:
    def units_then_crash():  # type: ignore[no-untyped-def]
        yield ("u1", "r0c0", 0, 0, "all", None, None, 0, 0, 1, 1, 1, 1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Store.create("t", tmp_path / "job.toml", BASE_JOB, units_then_crash(), {})
    assert list(paths.sessions_dir().iterdir()) == []


def test_new_cleans_temporaries_of_dead_processes(tmp_path: Path) -> None:
    """A `new` killed with SIGKILL leaves its temporary; the next `new` removes it, but never
    the temporary of a `new` still running."""
    directory = paths.sessions_dir()
    dead, alive = _dead_pid(), os.getppid()
    host = socket.gethostname()
    stale = [f".t.{dead}@{_slug(host)}.a1b2c3.tmp", f".t.{dead}@{_slug(host)}.a1b2c3.tmp-wal",
             f".t-1.{dead}.tmp"]  # the last: the name an older eebatch used
    kept = [f".t.{alive}@{_slug(host)}.d4e5f6.tmp", f".t.{dead}@other-host.g7h8i9.tmp"]
    for name in stale + kept:
        (directory / name).write_bytes(b"partial")
    store, _ = create_session(write_job(tmp_path, BASE_JOB))
    store.close()
    assert sorted(p.name for p in directory.iterdir()) == sorted([*kept, "t-1.sqlite"])


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "foreign"])
def test_a_damaged_file_is_a_clear_error_and_left_untouched(store: Store, tmp_path: Path,
                                                            damage: str) -> None:
    path = store.path
    store.close()
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"\x00garbage" * 64 + data[512:])
    elif damage == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # some other program's SQLite file
        path.unlink()
        other = sqlite3.connect(path)
        other.execute("CREATE TABLE notes (text)")
        other.commit()
        other.close()
    before = path.read_bytes()
    with pytest.raises(StoreError) as error:
        Store(path)
    assert isinstance(error.value, SessionDamaged), error.value
    assert str(path) in str(error.value) and "eebatch rm t-1" in str(error.value)
    assert path.read_bytes() == before  # SQLite was not let to "repair" or fill it
    sessions, problems = Store.scan_sessions()
    assert sessions == [] and [p for p, _ in problems] == [path]


def test_another_process_never_loses_this_ones_writes(tmp_path: Path) -> None:
    """The dashboard holds the session open while `eebatch status` runs in another shell.
    Opening a second Store here once read the file through a plain descriptor; closing it
    dropped every POSIX lock SQLite held in this process, the other process took itself for
    the last reader and deleted the live WAL, and every later write here went nowhere."""
    import subprocess
    import sys

    store, _ = create_session(write_job(tmp_path, BASE_JOB))
    with store.tx():
        store.log("before")
    Store(store.path).close()  # e.g. the dashboard's reader or a command opening the session
    read = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
            " print(c.execute('SELECT COUNT(*) FROM events WHERE message = ?',"
            " (sys.argv[2],)).fetchone()[0]); c.close()")
    subprocess.run([sys.executable, "-c", read, str(store.path), "before"], check=True)
    with store.tx():
        store.log("after")
    seen = subprocess.run([sys.executable, "-c", read, str(store.path), "after"], check=True,
                          capture_output=True, text=True).stdout.strip()
    assert seen == "1"
    assert Path(str(store.path) + "-wal").exists()
    store.close()
