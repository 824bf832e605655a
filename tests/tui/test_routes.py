"""The dashboard shows each unit's route (issue 16): the details say direct or batch (and
why a unit moved from direct to batch), a direct unit's files are local; the header counts
the direct requests in flight; the tile line names a route that is not batch; the Job form
edits export.route and limits.direct_requests by the job file's own rules. Sessions run to
their end by the real worker against the emulator."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import Select, Static

from core.emulator.clock import ManualClock
from core.engine.runner import run_session, start_worker
from tests.engine.conftest import emulator_with, make_session
from tests.tui.test_app import header_text, quit_app, ready, wait_for
from tests.tui.test_job import problem, settle, type_into
from tui.app import EEBatchApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.details import DetailsScreen
from tui.widgets.job_form import JobForm, field_id
from tui.widgets.tasks_pane import TasksPane
from tui.widgets.tile_map import TileMap


def tile_line(app: EEBatchApp) -> str:
    return str(app.query_one("#tile-line").render())


async def details_of_cursor_tile(app: EEBatchApp, pilot: Pilot[object]) -> str:
    """Open the details of the tile under the map's cursor, as the user does (enter)."""
    app.query_one(TileMap).focus()
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, DetailsScreen), "details")
    assert isinstance(app.screen, DetailsScreen)
    return app.screen.plain


async def test_a_direct_unit_says_direct_and_its_files_are_local(tmp_path: Path) -> None:
    with emulator_with() as emu:
        store = make_session(tmp_path, emu.url, export={"route": "direct"})
        summary = run_session(store.path)
        assert summary.ok, summary.failed
    app = EEBatchApp(store.path, poll_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert "direct" in tile_line(app)
        text = await details_of_cursor_tile(app, pilot)
        assert "route direct (computePixels)" in text, text
        files = [line for line in text.splitlines() if line.strip().startswith("file ")]
        assert files and all("verified, fetched directly from EE" in f for f in files), text
        assert "Drive" not in text.replace("fetched directly from EE", ""), text
        assert "EE state" not in text  # no task: nothing of the batch route's attempts
    store.close()


async def test_a_unit_auto_moved_to_batch_says_so_and_why(tmp_path: Path) -> None:
    # Interactive requests get less memory than any tile needs: each unit fails direct with
    # EE's text and goes by batch (tests/engine/test_direct.py).
    with emulator_with(direct_memory_limit_pixels=1) as emu:
        store = make_session(tmp_path, emu.url, export={"route": "auto"})
        before = EEBatchApp(store.path, poll_interval=None)
        async with before.run_test(size=(120, 30)) as pilot:
            await ready(pilot)
            assert "direct" in tile_line(before)  # auto starts these units direct
            text = await details_of_cursor_tile(before, pilot)
            assert "route direct (computePixels)" in text and "not fetched yet" in text, text
        summary = run_session(store.path)
        assert summary.ok, summary.failed
    app = EEBatchApp(store.path, poll_interval=None)
    async with app.run_test(size=(120, 30)) as pilot:
        await ready(pilot)
        assert "direct" not in tile_line(app)  # every unit went by batch
        text = " ".join((await details_of_cursor_tile(app, pilot)).split())
        assert re.search(r"route batch \(export via Drive\), moved from direct: EE could not"
                         r" compute it directly \(.*User memory limit exceeded\.\)", text), text
        assert "verified, removed from Drive" in text and "SUCCEEDED" in text, text
    store.close()


async def test_the_tile_line_counts_an_auto_tiles_units_still_direct(tmp_path: Path) -> None:
    store = make_session(tmp_path, "http://127.0.0.1:9", export={"route": "auto"},
                         extra='[time]\nstart = 2023-06-01\nend = 2023-09-01\n'
                               'step = "1 month"\n')
    app = EEBatchApp(store.path, poll_interval=None)
    async with app.run_test(size=(120, 30)) as pilot:
        await ready(pilot)
        tile_map = app.query_one(TileMap)
        model = tile_map.model
        i = tile_map.selected_tile()
        assert model is not None and i is not None and len(model.periods) == 3
        assert tile_line(app).split(" · ")[-1] == "direct", tile_line(app)
        # what the worker does when EE cannot compute a unit interactively
        july = next(u["id"] for u in store.units_of_tile(model.tile_ids[i])
                    if u["period"] == model.periods[1])
        with store.tx():
            store.set_route(july, "batch")
            store.set_unit(july, "pending", error="User memory limit exceeded.")
        app.poll_now()
        await pilot.pause()
        assert tile_line(app).split(" · ")[-1] == "2 of 3 direct", tile_line(app)
        tile_map.focus()
        await pilot.press("t", "t")  # July alone: all batch, nothing said
        assert tile_map.period == 1
        assert "direct" not in tile_line(app), tile_line(app)
    store.close()


async def test_the_header_counts_direct_requests_in_flight_at_80_columns(
        tmp_path: Path) -> None:
    with emulator_with() as emu:
        # Requests are timed by a clock only the test moves: the worker's 3 stay in flight
        # until the header has been read, however slow the machine.
        clock, emu.ee.direct.clock = emu.ee.direct.clock, ManualClock()
        store = make_session(tmp_path, emu.url, export={"route": "direct"},
                             limits={"direct_requests": 3})
        worker = start_worker(store.path, emulator_url=emu.url)
        try:
            app = EEBatchApp(store.path, poll_interval=0.2, worker=worker)
            async with app.run_test(size=(80, 24)) as pilot:
                await ready(pilot)
                await wait_for(pilot, lambda: re.search(r"direct [1-3]/3", header_text(app)),
                               "counting requests in flight",
                               seen=lambda: header_text(app))
                head = header_text(app)
                # a direct job sends no export task: its requests take the tasks' place
                assert "tasks" not in head and len(head) <= 78, head  # nothing cut off
                await pilot.press("plus")  # nor has it task slots to set
                assert app.header_state.max_tasks is None and "tasks" not in header_text(app)
                # Its Tasks pane is empty, and says why and where the requests show instead.
                pane = app.query_one(TasksPane)
                assert pane.has_class("-no-tasks") and not pane.table.row_count
                says = pane.query_one("#no-tasks", Static)
                assert says.region.height >= 2 and "No export tasks" in pane.empty_text
                assert "computePixels" in pane.empty_text
                emu.ee.direct.clock = clock  # the real clock: every request is over
                await wait_for(pilot, lambda: app.counts.get("done") == 8, "done",
                               timeout=120, seen=lambda: app.counts)
                await quit_app(pilot)
        finally:
            worker.stop()
            worker.join(60)
    store.close()


async def test_the_job_form_sets_the_route_and_refuses_a_bad_request_limit(
        tmp_path: Path) -> None:
    with emulator_with() as emu:
        store = make_session(tmp_path, emu.url)
    job = store.job_path
    original = job.read_text(encoding="utf-8")
    app = EEBatchApp(store.path, poll_interval=None)
    async with app.run_test(size=(160, 50)) as pilot:
        await ready(pilot)
        await pilot.press("e")
        await settle(pilot)
        form = app.query_one(JobForm)
        assert "route" not in form.build()  # the default is not written in
        await type_into(pilot, form, "limits.direct_requests", "99")
        form.query_one("#" + field_id("export.route"), Select).value = "auto"
        await settle(pilot)
        assert problem(form, "limits.direct_requests") == "must be between 1 and 40, got 99"
        assert "direct requests" in str(form.query_one("#status").render())
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)  # nothing starts
        assert job.read_text(encoding="utf-8") == original  # and nothing is written
        await type_into(pilot, form, "limits.direct_requests", "12")
        await settle(pilot)
        assert form.valid and not problem(form, "limits.direct_requests")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # the file is saved; no session needed
        await pilot.pause()
    written = tomllib.loads(job.read_text(encoding="utf-8"))
    assert written["export"]["route"] == "auto" and written["limits"]["direct_requests"] == 12
    store.close()


async def test_a_direct_route_the_job_cannot_take_is_refused_under_the_route(
        tmp_path: Path) -> None:
    with emulator_with() as emu:
        store = make_session(tmp_path, emu.url,
                             export={"destination": "gcs", "bucket": "my-bucket"})
    app = EEBatchApp(store.path, poll_interval=None)
    async with app.run_test(size=(160, 50)) as pilot:
        await ready(pilot)
        await pilot.press("e")
        await settle(pilot)
        form = app.query_one(JobForm)
        assert form.valid
        form.query_one("#" + field_id("export.route"), Select).value = "direct"
        await settle(pilot)
        assert "cannot serve this job" in problem(form, "export.route")
        assert not form.valid and form.query_one("#start").disabled
    store.close()


async def test_a_batch_jobs_empty_tasks_pane_says_nothing_of_the_direct_route(
        tmp_path: Path) -> None:
    with emulator_with() as emu:
        store = make_session(tmp_path, emu.url)
    app = EEBatchApp(store.path, poll_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        pane = app.query_one(TasksPane)
        assert not pane.table.row_count and not pane.empty_text
        assert not pane.has_class("-no-tasks")
        assert pane.query_one("#no-tasks", Static).region.height == 0
    store.close()
