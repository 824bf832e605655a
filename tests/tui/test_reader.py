"""The store reader sends only what changed, and places split children in their quadrants."""

from __future__ import annotations

from core.store import Store
from tests.tui.fixtures import T0, set_state, split
from tui.reader import StoreReader, quadrant_path
from tui.widgets.common import CODE
from tui.widgets.tile_map import TileModel


def test_quadrant_paths_from_tile_ids_or_unit_ids() -> None:
    assert quadrant_path("r1c2_20230601", "r1c2", 0) == ()
    assert quadrant_path("r1c2.3_20230601", "r1c2.3", 1) == (3,)  # the worker's naming
    assert quadrant_path("r1c2.3.1_20230601", "r1c2.3.1", 2) == (3, 1)
    assert quadrant_path("r1c2_20230601.2", "r1c2", 1) == (2,)  # PARENT.q naming


def test_second_poll_sends_only_changes(session: Store) -> None:
    reader = StoreReader(session.path)
    try:
        first = reader.poll()
        assert first.first and first.map_init is not None and first.counts
        assert len(first.tasks) == 43 and first.events and first.settings
        quiet = reader.poll()
        assert quiet.empty or (len(quiet.unit_changes) == 0 and quiet.tasks == []
                               and quiet.events == [])
        unit = session.units()[2]["id"]
        set_state(session, unit, "running", ts=T0 + 5, attempt="new")
        session.log("hello")
        later = reader.poll()
        assert [t.unit for t in later.tasks] == [unit]
        assert len(later.unit_changes) == 1 and later.counts is not None
        assert [e.message for e in later.events] == ["hello"]
    finally:
        reader.close()


def test_the_map_model_follows_each_poll_tiles_and_split_children(session: Store) -> None:
    reader = StoreReader(session.path)
    try:
        first = reader.poll()
        assert first.map_init is not None
        model = TileModel(first.map_init)
        model.apply(first.unit_changes)
        units = [u for u in session.units() if u["depth"] == 0 and u["state"] == "pending"]
        whole, halves = units[0], units[1]
        set_state(session, whole["id"], "running", ts=T0 + 5, attempt="new")
        split(session, halves["id"], ts=T0 + 6, states=("done", "failed", "pending", "done"))
        model.apply(reader.poll().unit_changes)
        i = model.tile_ids.index(whole["tile"])
        assert model.quads[i, 0].tolist() == [CODE["running"]] * 4
        j = model.tile_ids.index(halves["tile"])
        assert model.quads[j, 0].tolist() == [CODE["done"], CODE["failed"], CODE["pending"],
                                              CODE["done"]]
    finally:
        reader.close()


def test_the_map_says_where_each_tile_is(session: Store) -> None:
    """The cursor's line names the tile's centre: the map model derives it from the grid."""
    snap = StoreReader(session.path).poll()
    assert snap.map_init is not None
    model = TileModel(snap.map_init)
    for i, tile in enumerate(model.tile_ids):
        u = session.conn.execute("SELECT * FROM units WHERE tile = ? AND depth = 0 LIMIT 1",
                                 (tile,)).fetchone()
        x, y = (u["west"] + u["east"]) / 2, (u["south"] + u["north"]) / 2
        assert model.where(i) == f"{abs(y):.2f}°N {abs(x):.2f}°W", tile


def test_a_retried_unit_shows_no_old_progress_or_error(session: Store) -> None:
    """After `r` the unit waits to be sent again: its row is pending, at 0%, without the old
    attempt's error (which stays in the details), not the failed task as it was."""
    unit = session.units()[0]["id"]
    set_state(session, unit, "failed", ts=T0, error="Image.select: no band 'SR_B9'",
              attempt="FAILED", progress=0.6, eecu=12.0)
    reader = StoreReader(session.path)
    reader.poll()
    row = reader.tasks[unit]
    assert row.state == "failed" and "SR_B9" in row.error and row.progress == 0.6
    with session.tx() as conn:  # what the worker's retry does to the unit
        conn.execute("UPDATE units SET state = 'pending', error = NULL, attempts = 0,"
                     " updated = ? WHERE id = ?", (T0 + 5, unit))
    reader.poll()
    row = reader.tasks[unit]
    assert (row.state, row.progress, row.error, row.eecu) == ("pending", 0.0, "", None)
