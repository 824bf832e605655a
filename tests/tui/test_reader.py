"""The store reader sends only what changed, and places split children in their quadrants."""

from __future__ import annotations

from core.store import Store
from tests.tui.fixtures import T0, set_state
from tui.reader import StoreReader, quadrant_path


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
