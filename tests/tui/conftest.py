"""Dashboard tests run headless (Pilot) on real session files, with fixed data and time:
the app polls the store only when a test asks (poll_interval=None), so nothing races."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.store import Store
from tests.tui.fixtures import make_session, populate


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """Times on screen are local: pin the zone so snapshots match anywhere."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Store]:
    """A 9 x 8 tile session part-way through (see fixtures.populate)."""
    store = make_session(tmp_path)
    populate(store)
    yield store
    store.close()
