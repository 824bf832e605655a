"""The dashboard's reader at a million units (issue 15, part 3): it reads units by the store's
change counter (exactly what changed, never the whole session again), draws its first picture
from the layout `new` stored, and its first read of tasks is what the Tasks table shows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.states import FINISHED
from core.store import Store
from tests.tui.fixtures import T0, make_session, populate, set_state
from tui.reader import FINISHED_KEPT, StoreReader, TileIds


def test_an_idle_poll_after_new_reads_no_unit(tmp_path: Path) -> None:
    """After `eebatch new` every unit has one time stamp: the reader re-read all of them at
    each poll until a worker ran. Now a poll with nothing changed reads none."""
    store = make_session(tmp_path, size=0.5)
    reader = StoreReader(store.path)
    read: list[int] = []
    changed_after = reader.store.units_changed_after

    def counting(seq: int) -> list[tuple[object, ...]]:
        rows = changed_after(seq)
        read.append(len(rows))
        return rows

    reader.store.units_changed_after = counting  # type: ignore[method-assign]
    try:
        reader.poll()
        quiet = reader.poll()
        assert read == [0] and len(quiet.unit_changes) == 0 and quiet.counts is None
        unit = store.units()[5]["id"]
        set_state(store, unit, "running", ts=T0 + 5, attempt="new")
        assert len(reader.poll().unit_changes) == 1 and read[-1] == 1
        reader.poll()
        assert read[-1] == 0
    finally:
        reader.close()
        store.close()


def test_a_change_committed_late_with_an_old_time_stamp_is_seen(tmp_path: Path) -> None:
    """A unit's `updated` is taken before its transaction commits: a write that commits long
    after its time stamp (a transaction that waited on the lock) is still on the map, once.
    (Attempts are still read by time, 5 s back: a poll sees few of them.)"""
    store = make_session(tmp_path)
    reader = StoreReader(store.path)
    try:
        reader.poll()
        units = [r["id"] for r in store.units()]
        set_state(store, units[0], "running", ts=T0 + 100, attempt="new")
        assert len(reader.poll().unit_changes) == 1
        set_state(store, units[1], "failed", ts=T0 - 500, attempt="FAILED", error="late")
        late = reader.poll()
        assert len(late.unit_changes) == 1 and late.counts == {"pending": 70, "running": 1,
                                                               "failed": 1}
        assert len(reader.poll().unit_changes) == 0
    finally:
        reader.close()
        store.close()


@pytest.mark.parametrize("months", [False, True])
def test_the_first_picture_from_the_layout_is_the_one_from_every_unit(
        tmp_path: Path, months: bool) -> None:
    """Done, running, failed, split with children in every state, several periods: the map
    drawn from the stored layout and the state index equals the one drawn from every unit
    (a session made before the layout was stored)."""
    store = make_session(tmp_path, months=months)
    populate(store)
    assert store.unit_layout() is not None
    from_layout = StoreReader(store.path).poll()
    store.conn.execute("DELETE FROM unit_layout")
    from_units = StoreReader(store.path).poll()
    a, b = from_layout.map_init, from_units.map_init
    assert a is not None and b is not None
    assert list(a.tile_ids) == list(b.tile_ids) and a.periods == b.periods
    assert (a.rows == b.rows).all() and (a.cols == b.cols).all()
    assert (a.base == b.base).all() and len(set(a.base.ravel().tolist())) >= 5
    assert a.column_batch == b.column_batch and a.grid == b.grid
    ca, cb = from_layout.unit_changes, from_units.unit_changes
    assert sorted(ca.children) == sorted(cb.children) and len(ca.children) == 4
    store.close()


def test_the_first_read_of_tasks_is_what_the_table_shows(tmp_path: Path) -> None:
    """A session late in its run (hundreds of units done, each with its task): the first poll
    reads the unfinished units' tasks and the latest FINISHED_KEPT finished ones, and the
    reader keeps no more than it shows as the session goes on."""
    store = make_session(tmp_path, size=0.25)
    units = [r["id"] for r in store.units()]
    assert len(units) > FINISHED_KEPT + 50
    for i, unit in enumerate(units[:FINISHED_KEPT + 40]):
        set_state(store, unit, "done", ts=T0 + i, attempt="SUCCEEDED", progress=1.0)
    running = units[FINISHED_KEPT + 40:FINISHED_KEPT + 44]
    for unit in running:
        set_state(store, unit, "running", ts=T0 + 1000, attempt="RUNNING", progress=0.5)
    retried = units[FINISHED_KEPT + 44]
    set_state(store, retried, "failed", ts=T0 + 1001, attempt="FAILED", error="x")
    store.conn.execute("UPDATE units SET state = 'pending', priority = 1 WHERE id = ?",
                       (retried,))  # retried: waits to be sent again, first
    reader = StoreReader(store.path)
    try:
        first = reader.poll()
        shown = {t.unit for t in first.tasks}
        newest = set(units[40:FINISHED_KEPT + 40])  # the 500 finished last
        assert shown == newest | set(running) | {retried}
        assert sum(t.state in FINISHED for t in first.tasks) == FINISHED_KEPT
        for unit in running:  # they finish: older finished tasks leave the table and memory
            set_state(store, unit, "done", ts=T0 + 2000, attempt="SUCCEEDED", progress=1.0)
        later = reader.poll()
        assert set(later.tasks_removed) == set(units[40:44])
        assert len(reader.tasks) == FINISHED_KEPT + 1 and len(reader.unit_state) <= 501
    finally:
        reader.close()
        store.close()


def test_tile_ids_are_made_from_rows_and_columns(session: Store) -> None:
    ids = TileIds(np.array([3, 3, 17]), np.array([-4, 40, 5]))
    assert list(ids) == ["r3c-4", "r3c40", "r17c5"] and ids[1:] == ["r3c40", "r17c5"]
    assert ids.index("r17c5") == 2 and "r3c40" in ids
    with pytest.raises(ValueError):
        ids.index("r3c41")
    snap = StoreReader(session.path).poll()
    assert snap.map_init is not None
    tiles = {r["tile"] for r in session.units() if r["depth"] == 0}
    assert set(snap.map_init.tile_ids) == tiles
