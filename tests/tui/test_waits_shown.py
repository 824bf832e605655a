"""Every wait says why: what the worker writes as the reason it holds work back (a full Drive
or disk) is on the dashboard's header and on the headless status line."""

from __future__ import annotations

import time
from pathlib import Path

from textual.app import App, ComposeResult

from core.session import create_session
from tests.conftest import BASE_JOB, write_job
from tui.cli import _status_line
from tui.widgets.header import HeaderState, StatusHeader

WHY = ("output disk full: 524 kB free in /data/out, the next download needs 394 kB; free "
       "space there — downloads and exports wait and resume by themselves")


class HeaderOnly(App[None]):
    def compose(self) -> ComposeResult:
        yield StatusHeader()


async def test_the_header_says_why_the_worker_waits() -> None:
    app = HeaderOnly()
    async with app.run_test(size=(200, 3)):
        header = app.query_one(StatusHeader)
        state = HeaderState(session="s-1", counts={"pending": 3, "done": 1},
                            settings={"max_tasks": 4}, status={"waiting": WHY})
        assert f"⏳ {WHY}" in header.compose_text(state).plain
        state.status = {"waiting": None}
        assert "⏳" not in header.compose_text(state).plain


def test_the_headless_status_line_says_why_the_worker_waits(tmp_path: Path) -> None:
    store, _ = create_session(write_job(tmp_path, BASE_JOB))
    with store.tx():
        store.set_worker_status({"waiting": WHY, "drive_used": 0})
    assert _status_line(store, time.time()).endswith(f"| {WHY}")


def test_the_headless_line_says_under_a_minute_not_a_count_of_seconds(tmp_path: Path) -> None:
    # Near the end the estimate is no measure: "ETA 7 seconds" stayed for 20 s in a demo.
    store, _ = create_session(write_job(tmp_path, BASE_JOB))
    with store.tx():
        store.set_worker_status({"units_per_hour": 5000.0, "eta_seconds": 7.0})
    assert ", ETA under a minute |" in _status_line(store, time.time())
    with store.tx():
        store.set_worker_status({"units_per_hour": 50.0, "eta_seconds": 7200.0})
    assert ", ETA 2 hours |" in _status_line(store, time.time())


async def test_an_unreachable_service_and_restricted_mode_lead_the_header_at_80_columns() -> None:
    """During an outage nothing moves and nothing fails: the header says so first, with since
    when, where an 80-column terminal still shows it."""
    since = time.mktime((2026, 12, 1, 14, 2, 0, 0, 0, -1))
    app = HeaderOnly()
    async with app.run_test(size=(80, 3)):
        header = app.query_one(StatusHeader)
        state = HeaderState(session="california-summer-2023-1",
                            counts={"pending": 3, "done": 1}, settings={"max_tasks": 4},
                            worker="here", status={"down": {"ee": since}, "restricted": True})
        text = header.compose_text(state).plain
        assert text.index("✗ EE unreachable since 14:02") + 30 < 80, text
        assert "EE restricted mode" in text
        state.status = {"down": None, "restricted": False}
        text = header.compose_text(state).plain
        assert "unreachable" not in text and "restricted" not in text


def test_the_headless_status_line_says_what_is_unreachable(tmp_path: Path) -> None:
    store, _ = create_session(write_job(tmp_path, BASE_JOB))
    why = ("Earth Engine unreachable since 14:02:00 (The service is currently unavailable.); "
           "nothing fails meanwhile, retrying")
    with store.tx():
        store.set_worker_status({"down": {"ee": 0.0}, "down_why": why, "drive_used": 0})
    assert f"| {why}" in _status_line(store, time.time())


async def test_the_header_shows_the_eecu_used_of_the_cap_at_80_columns() -> None:
    app = HeaderOnly()
    async with app.run_test(size=(80, 3)):
        header = app.query_one(StatusHeader)
        state = HeaderState(session="s-1", counts={"pending": 3, "done": 1},
                            settings={"max_tasks": 4},
                            status={"eecu_used": 1.8 * 3600, "eecu_cap": 2 * 3600.0})
        text = header.compose_text(state).plain
        assert "EECU 1.8/2h" in text and len(text) <= 80
        state.status = {"eecu_used": 1800.0, "eecu_cap": None}  # no cap: no room at 80
        assert "EECU" not in header.compose_text(state).plain
    wide = HeaderOnly()
    async with wide.run_test(size=(140, 3)):
        header = wide.query_one(StatusHeader)
        state.status = {"eecu_used": 1800.0, "eecu_forecast": 7200.0}
        assert "EECU 0.5h (~2h in all)" in header.compose_text(state).plain
