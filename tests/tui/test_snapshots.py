"""Snapshots of the dashboard's main states at 80x24 and 140x40, on fixed session data (no
clock, no thread: the app polls once when told). Update with `pytest --snapshot-update` only
after looking at snapshot_report.html."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from core.store import Store
from tests.tui.fixtures import make_session, populate
from tests.tui.test_app import ready
from tests.tui.test_job import settle
from tui.app import EEBatchApp
from tui.widgets.tasks_pane import TaskTable


def app_for(store: Store) -> EEBatchApp:
    return EEBatchApp(store.path, poll_interval=None)


@pytest.mark.parametrize("size", [(80, 24), (140, 40)])
def test_dashboard(snap_compare, session: Store, size: tuple[int, int]) -> None:
    assert snap_compare(app_for(session), terminal_size=size, run_before=ready)


def test_tile_details(snap_compare, session: Store) -> None:
    assert snap_compare(app_for(session), terminal_size=(80, 24), run_before=ready,
                        press=["f", "enter"])


def test_cancel_confirmation(snap_compare, session: Store) -> None:
    running = [r["id"] for r in session.units()][30]

    async def on_running_task(pilot: Pilot[object]) -> None:
        await ready(pilot)
        table = pilot.app.query_one(TaskTable)
        table.focus()
        table.move_cursor(row=table.get_row_index(running))

    assert snap_compare(app_for(session), terminal_size=(80, 24), run_before=on_running_task,
                        press=["x"])


def test_tasks_filtered(snap_compare, session: Store) -> None:
    assert snap_compare(app_for(session), terminal_size=(140, 40), run_before=ready,
                        press=["2", "slash", *"fail", "enter"])


def test_periods_zoomed_out(snap_compare, tmp_path: Path) -> None:
    store = make_session(tmp_path, name="months", months=True)
    populate(store)
    assert snap_compare(app_for(store), terminal_size=(140, 40), run_before=ready,
                        press=["t", "o", "o"])
    store.close()


def test_help(snap_compare, session: Store) -> None:
    assert snap_compare(app_for(session), terminal_size=(80, 24), run_before=ready,
                        press=["question_mark"])


def test_job_pane(snap_compare, session: Store, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    # a relative job path, so the form shows no temporary directory
    monkeypatch.chdir(tmp_path)
    session.conn.execute("UPDATE session SET job_path = ?", (session.job_path.name,))

    async def form_open(pilot: Pilot[object]) -> None:
        await ready(pilot)
        await pilot.press("e")
        for box in pilot.app.query(Input):
            box.cursor_blink = False
        await settle(pilot)

    assert snap_compare(app_for(session), terminal_size=(160, 45), run_before=form_open)
