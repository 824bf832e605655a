"""A million units (issue 15, part 3): what the worker asks every second or poll is kept by
the store as units and files change (counts per state, the learner's byte totals) or read in
the order of an index (admission's candidates). These tests hold each to what counting,
summing and sorting every row says, through a real run and on a session of schema 9."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import shapely

from core import grid
from core.engine.runner import open_backends, run_session
from core.engine.worker import Worker
from core.grid import make_tiles
from core.plan import make_plan
from core.session import create_session, load_session_spec
from core.spec import load_spec
from core.states import BACKOFF, CANCELLED, DONE, FAILED, PENDING, QUEUED, SPLIT
from core.store import MIGRATIONS, SCHEMA_VERSION, Store
from tests.conftest import BASE_JOB, write_job
from tests.engine.conftest import emulator_with, make_session

# What the store answered before schema 10, reading every row: the truth kept figures match.
COUNTS = "SELECT state, COUNT(*), SUM(est_pixels) FROM units GROUP BY state"
MEASURED = ("SELECT (SELECT COALESCE(SUM(size), 0) FROM files),"
            " (SELECT COALESCE(SUM(est_bytes), 0) FROM units"
            "  WHERE id IN (SELECT unit FROM files))")
TO_SEND = ("SELECT id FROM units NOT INDEXED WHERE route = ? AND state IN ('pending',"
           " 'backoff') AND (not_before IS NULL OR not_before <= ?)"
           " ORDER BY priority DESC, est_bytes DESC, id LIMIT ?")


def kept_and_counted(conn: sqlite3.Connection) -> tuple[dict[str, Any], dict[str, Any]]:
    """(counts and pixels the triggers kept, the same counted), in one read transaction."""
    conn.execute("BEGIN")
    try:
        kept = {r[0]: (r[1], r[2]) for r in conn.execute(
            "SELECT state, n, pixels FROM unit_counts WHERE n != 0 OR pixels != 0")}
        counted = {r[0]: (r[1], r[2]) for r in conn.execute(COUNTS)}
    finally:
        conn.execute("COMMIT")
    return kept, counted


def test_counts_match_counting_every_unit_through_a_run_with_splits_retries_and_a_cancel(
        tmp_path: Path) -> None:
    """Watched from a second connection while a worker runs a job whose tiles run out of
    memory and split, whose exports fail with "Internal error." and back off, with a unit
    cancelled and then retried: the kept counts equal a COUNT(*) at every look."""
    with emulator_with(memory_limit_pixels=400, internal_error_rate=0.3) as emu:
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 2, 1]", split_depth=1)
        victim = store.units()[-1]["id"]
        store.post_command("cancel", victim)
        looks: list[tuple[dict[str, Any], dict[str, Any]]] = []
        stop = threading.Event()

        def watch() -> None:
            conn = sqlite3.connect(store.path, isolation_level=None)
            try:
                while not stop.is_set():
                    looks.append(kept_and_counted(conn))
                    time.sleep(0.01)
            finally:
                conn.close()

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            first = run_session(store.path)
            assert first.counts.get(CANCELLED) == 1 and not first.ok
            store.post_command("retry", victim)
            assert run_session(store.path).ok
        finally:
            stop.set()
            watcher.join()
    wrong = [(kept, counted) for kept, counted in looks if kept != counted]
    assert not wrong, wrong[:3]
    assert len(looks) > 20
    kept, counted = kept_and_counted(store.conn)
    assert kept == counted and store.counts() == {s: n for s, (n, _) in counted.items()}
    assert store.pixels_to_send() == 0
    # The run went through what the triggers must follow: splits, backoffs, the cancel.
    assert store.counts()[SPLIT] > 0
    seen = {state for kept, _ in looks for state in kept}
    assert {BACKOFF, QUEUED, DONE, SPLIT, CANCELLED} <= seen
    assert store.unit(victim)["state"] in (DONE, SPLIT)  # retried: ran (and split)
    assert store.count_units_in((DONE, SPLIT)) == len(store.units())
    store.close()


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s, _ = create_session(write_job(tmp_path, BASE_JOB.replace("size = 1", "size = 0.25")))
    yield s
    s.close()


def test_admission_reads_the_same_units_in_the_same_order_from_its_index(store: Store) -> None:
    """Priorities (retries, split children), equal sizes broken by id, backed-off units due
    or not, units already sent: the index gives what sorting every unit gave."""
    ids = [r["id"] for r in store.units()]
    assert len(ids) >= 24
    now = time.time()
    with store.tx():
        for i, unit in enumerate(ids):
            fields: dict[str, Any] = {"est_bytes": (i % 3) * 100}  # ties, broken by id
            if i % 5 == 0:
                fields["priority"] = 1 + i % 2
            store.set_unit(unit, [PENDING, BACKOFF, QUEUED, PENDING][i % 4], **fields)
            if i % 8 == 1:
                store.set_unit(unit, BACKOFF, not_before=now + 3600)  # not due yet
            if i % 6 == 2:
                store.set_route(unit, "direct")  # the direct room's own queue
    for route in ("batch", "direct"):
        for limit in (1, 3, 7, 100):
            expected = [r[0] for r in store.conn.execute(TO_SEND, (route, now, limit))]
            assert expected and [r["id"] for r in store.units_to_send(now, limit, route)] == \
                expected
    # the cost guard's pixels still to send, from the same kept counts
    assert store.pixels_to_send() == store.conn.execute(
        "SELECT SUM(est_pixels) FROM units WHERE state IN ('pending', 'backoff')").fetchone()[0]
    plan = " ".join(r[3] for r in store.conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM units INDEXED BY units_to_send WHERE route = 'batch'"
        " AND state IN ('pending', 'backoff') AND (not_before IS NULL OR not_before <= ?) ORDER BY"
        " priority DESC, est_bytes DESC, id LIMIT ?", (now, 4)))
    assert "units_to_send" in plan and "TEMP B-TREE" not in plan


def test_the_learners_totals_follow_files_listed_dropped_and_resized(store: Store) -> None:
    units = [r["id"] for r in store.units()[:3]]

    class File:
        def __init__(self, n: int, size: int) -> None:
            self.id, self.title, self.size, self.md5 = f"d{n}", f"f{n}.tif", size, "x"

    def check() -> None:
        assert store.measured_and_estimated_bytes() == tuple(
            store.conn.execute(MEASURED).fetchone())

    check()
    store.record_files(units[0], None, [File(1, 500), File(2, 700)])  # a unit of two files
    store.record_files(units[1], None, [File(3, 900)])
    check()
    store.set_file(store.file_ids_of(units[1]).pop(), "verified", size=1000)
    check()
    store.drop_files(units[0], ("listed",))
    check()
    store.record_files(units[2], None, [File(4, 100)])
    check()
    assert store.measured_and_estimated_bytes()[0] == 1100


def schema_9_session(tmp_path: Path) -> Path:
    """A session file as eebatch wrote it at schema 9: MIGRATIONS[:9] applied, its units as
    that version inserted them (no layout, no change counter), some of them sent, split,
    done with their files."""
    path = tmp_path / "old-1.sqlite"
    job = write_job(tmp_path, BASE_JOB.replace("size = 1", "size = 0.5"), "old.toml")
    conn = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:9]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version=9")
    conn.execute("INSERT INTO session VALUES ('old-1', 'old', 0, ?, ?)", (str(job), BASE_JOB))
    rows = list(make_plan(load_spec(job)).unit_rows())
    conn.executemany(
        "INSERT INTO units (id, tile, row, col, period, start, end, west, south, east, north,"
        " est_pixels, est_bytes, batch, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
        " ?, 0)", rows)
    ids = [r[0] for r in rows]
    conn.execute("UPDATE units SET state = 'done' WHERE id IN (?, ?)", ids[:2])
    conn.execute("UPDATE units SET state = 'queued', priority = 1 WHERE id = ?", (ids[2],))
    conn.execute("UPDATE units SET state = 'split' WHERE id = ?", (ids[3],))
    conn.execute("INSERT INTO units (id, tile, row, col, depth, parent, period, west, south,"
                 " east, north, est_pixels, est_bytes, state, updated) SELECT id || '.0',"
                 " tile || '.0', row, col, 1, id, period, west, south, east, north,"
                 " est_pixels / 4, est_bytes / 4, 'pending', 0 FROM units WHERE id = ?",
                 (ids[3],))
    for n, unit in enumerate(ids[:3]):
        conn.execute("INSERT INTO attempts (unit, n, request_id, description, state, created,"
                     " updated) VALUES (?, 1, ?, ?, 'SUCCEEDED', 0, 0)",
                     (unit, f"r{n}", f"eebatch_old-1_{unit}_a1"))
    conn.executemany("INSERT INTO files (unit, drive_id, title, size, md5, state, updated)"
                     " VALUES (?, ?, ?, ?, '', 'deleted', 0)",
                     [(ids[0], "a", "a.tif", 111), (ids[1], "b", "b.tif", 222),
                      (ids[1], "c", "c.tif", 333)])
    conn.close()
    return path


def test_a_session_of_schema_9_migrates_and_keeps_its_figures(tmp_path: Path) -> None:
    path = schema_9_session(tmp_path)
    with sqlite3.connect(path) as conn:
        before_counts = {r[0]: r[1] for r in conn.execute(COUNTS)}
        before_measured = tuple(conn.execute(MEASURED).fetchone())
        # schema 9 has no route: every unit of it is batch
        before_send = [r[0] for r in conn.execute(
            TO_SEND.replace(" NOT INDEXED", "").replace("route = ? AND ", ""),
            (time.time(), 50))]
    store = Store(path)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 11
    assert store.counts() == before_counts
    assert store.measured_and_estimated_bytes() == before_measured
    assert [r["id"] for r in store.units_to_send(time.time(), 50)] == before_send
    assert store.unit_layout() is None and store.unit_seq() == 0
    # and it keeps working: a change is counted and numbered, a new child too
    unit = before_send[0]
    with store.tx():
        store.set_unit(unit, FAILED, error="boom")
    assert [r[0] for r in store.units_changed_after(0)] == [unit]
    kept, counted = kept_and_counted(store.conn)
    assert kept == counted and store.counts()[FAILED] == 1
    store.close()


def test_a_rectangle_gets_the_tiles_shapely_finds(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    """A rectangular region skips the shapely test of each cell: the same tiles, in the same
    order, as the test of each cell gives."""
    for bbox, size in (("[-120.3, 30.05, -110.7, 39.9]", "0.25"), ("[0, 0, 4, 2]", "0.3"),
                       ("[10.5, -3.3, 10.9, -3.1]", "0.01")):
        text = BASE_JOB.replace("bbox = [0, 0, 4, 2]", f"bbox = {bbox}").replace(
            "size = 1", f"size = {size}")
        spec = load_spec(write_job(tmp_path, text))
        fast = make_tiles(spec)
        with monkeypatch.context() as m:
            m.setattr(grid.shapely, "equals", lambda *_: False)
            slow = make_tiles(spec)
        assert fast.rows.tolist() == slow.rows.tolist() and len(fast) > 0
        assert fast.cols.tolist() == slow.cols.tolist()
    assert shapely.equals(spec.region, shapely.box(*spec.region.bounds))


def test_the_drive_quota_is_not_read_at_every_poll_for_the_users_own_files(
        tmp_path: Path) -> None:
    """The user's own files take two thirds of Drive, and none of the job's are there or on
    their way: the quota is read at the first poll, not at each."""
    with emulator_with(drive_quota=15 * 10**9, quota_other=10 * 10**9) as emu:
        store = make_session(tmp_path, emu.url, limits={"drive_budget": "15 GB",
                                                            "poll_seconds": 30})
        spec = load_session_spec(store)
        worker = Worker(store, spec, open_backends(spec, emu.url))
        try:
            for _ in range(5):
                worker.poll()
            assert worker.used_other >= 10 * 10**9
            assert emu.state()["requests"].get("GET drive about.get", 0) == 1
        finally:
            worker.pool.shutdown()
            worker.delete_pool.shutdown()
            store.close()


def test_new_stores_each_unit_as_the_plan_lists_it(tmp_path: Path) -> None:
    """`new` writes a slice's shared values once (period, dates, batch): every unit row is
    the one Plan.unit_rows gives, in its order, with [time] and [batches]."""
    text = (BASE_JOB + '\n[time]\nstart = 2023-01-01\nend = 2023-04-01\nstep = "1 month"\n'
            '\n[batches]\nby = "count"\nsize = 50\ncount = 2\n')
    job = write_job(tmp_path, text)
    store, plan = create_session(job)
    stored = [tuple(r) for r in store.conn.execute(
        "SELECT id, tile, row, col, period, start, end, west, south, east, north, est_pixels,"
        " est_bytes, batch FROM units ORDER BY rowid")]
    assert stored == list(plan.unit_rows()) and len(stored) == 8 * 3 * 2
    assert {r[13] for r in stored} == {0, 1}
    layout = store.unit_layout()
    assert layout is not None and layout.units == len(stored)
    store.close()
