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
