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
