"""The dashboard driven with Pilot on real session files: each flow ends in the store (the
command table the worker reads), and the panes show what the store holds."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from core.store import Store
from tests.tui.fixtures import T0, commands, set_state
from tui.app import EEBatchApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.details import DetailsScreen
from tui.widgets.common import CODE
from tui.widgets.drive_meter import DriveMeter
from tui.widgets.header import StatusHeader
from tui.widgets.tasks_pane import TasksPane, TaskTable
from tui.widgets.tile_map import TileMap

ROOT = Path(__file__).parents[2]


def unit_ids(store: Store) -> list[str]:
    return [r["id"] for r in store.units() if r["depth"] == 0]


async def wait_for(pilot: Pilot[object], condition: Callable[[], object], what: str,
                   timeout: float = 60.0, seen: Callable[[], object] = lambda: "") -> None:
    """Let the app run until `condition()` holds; fail saying `what` (and what was `seen`)
    after `timeout` seconds. Never a fixed wait: on a loaded machine the worker and the
    polling thread take their time, and a state asserted too early or too late is a flake."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still not {what} after {timeout:.0f} s {seen()}".rstrip())
        await pilot.pause(0.05)


async def ready(pilot: Pilot[object]) -> None:
    app = pilot.app
    assert isinstance(app, EEBatchApp)
    await wait_for(pilot, lambda: app.polls, "polled once (the first poll never happened)")
    await pilot.pause()


async def quit_app(pilot: Pilot[object]) -> None:
    """Quit as the user does and wait until the app's message loop has ended. Left running,
    run_test tears the screen down while the loop still handles messages: a snapshot the
    polling thread posted meanwhile then finds no panes (NoMatches) and fails the test."""
    from tui.screens.quit import QuitScreen

    app = pilot.app
    await pilot.press("q")
    await pilot.pause()
    if isinstance(app.screen, QuitScreen):  # the worker has tasks in EE: stop it
        await pilot.press("s")
    deadline = time.monotonic() + 30
    while app.is_running:
        if time.monotonic() > deadline:
            pytest.fail("the app did not quit within 30 s")
        await asyncio.sleep(0.02)
    assert app.return_code == 0


async def sent(pilot: Pilot[object], store: Store) -> list[tuple[str, str | None, object]]:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    return commands(store)


async def tasks_focused(pilot: Pilot[object], unit: str) -> TaskTable:
    table = pilot.app.query_one(TaskTable)
    table.focus()
    table.move_cursor(row=table.get_row_index(unit))
    await pilot.pause()
    return table


def header_text(app: EEBatchApp) -> str:
    return str(app.query_one(StatusHeader).render())


async def test_at_80_columns_the_header_keeps_progress_eta_and_task_slots(
        session: Store) -> None:
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        head = header_text(app)
        assert "31/75" in head and "ETA 5h 12m" in head and "tasks " in head
        assert "/h" not in head  # the rate gives way first
        assert len(head) <= 78, head  # inside the header's padding: nothing cut off


# -- tasks: cancel, retry, bulk, filter, sort ----------------------------------------------------


async def test_cancel_asks_first_and_reaches_the_command_table(session: Store) -> None:
    running = unit_ids(session)[30]
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        await tasks_focused(pilot, running)
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert await sent(pilot, session) == []
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        assert await sent(pilot, session) == [("cancel", running, None)]


async def test_retry_applies_only_to_failed_or_cancelled_tasks(session: Store) -> None:
    ids = unit_ids(session)
    failed, running = ids[37], ids[30]
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        table = await tasks_focused(pilot, running)
        assert table.check_action("retry", ()) is None  # greyed in the footer
        await pilot.press("r")
        assert await sent(pilot, session) == []
        table = await tasks_focused(pilot, failed)
        assert table.check_action("retry", ()) is True
        assert table.check_action("cancel", ()) is None
        await pilot.press("r")
        assert await sent(pilot, session) == [("retry", failed, None)]


async def test_marked_rows_are_cancelled_together(session: Store) -> None:
    ids = unit_ids(session)
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        table = await tasks_focused(pilot, ids[30])
        await pilot.press("space")  # marks, moves down
        table.move_cursor(row=table.get_row_index(ids[34]))
        await pilot.press("space")
        assert table.marks == {ids[30], ids[34]}
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        assert sorted(await sent(pilot, session)) == [("cancel", ids[30], None),
                                                      ("cancel", ids[34], None)]
        assert table.marks == set()


async def test_filter_shows_matching_tasks_and_esc_clears(session: Store) -> None:
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        table = app.query_one(TaskTable)
        everything = table.row_count
        table.focus()
        await pilot.press("slash", *"not found")
        await pilot.pause()
        assert table.row_count == 1
        assert table.get_row_at(0)[1] == unit_ids(session)[37]
        await pilot.press("enter")  # keeps the filter, back to the table
        assert app.focused is table and table.row_count == 1
        await pilot.press("slash", "escape")
        await pilot.pause()
        assert table.row_count == everything


async def test_sort_by_column_keeps_the_cursor_on_its_task(session: Store) -> None:
    ids = unit_ids(session)
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        table = await tasks_focused(pilot, ids[40])
        first = table.get_row_at(0)[1]
        assert first == ids[37]  # most urgent first: the failed task
        await pilot.press("s")  # by unit id
        await pilot.pause()
        assert table.sort_by == "unit"
        assert [table.get_row_at(i)[1] for i in range(3)] == sorted(table.tasks)[:3]
        assert table.current_key() == ids[40]


async def test_live_update_is_a_diff_and_the_cursor_stays(session: Store) -> None:
    ids = unit_ids(session)
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        table = await tasks_focused(pilot, ids[31])
        set_state(session, ids[31], "exported", ts=T0 + 10, attempt="SUCCEEDED", progress=1.0)
        set_state(session, ids[5], "running", ts=T0 + 11, attempt="new")
        app.poll_now()
        await pilot.pause()
        assert table.current_key() == ids[31]
        assert "exported" in str(table.get_row(ids[31])[2])
        assert ids[5] in table.tasks


# -- pause, limits, command results --------------------------------------------------------------


async def test_pause_resume_and_max_tasks(session: Store) -> None:
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        await pilot.press("p")
        assert await sent(pilot, session) == [("pause", None, None)]
        assert "PAUSED" in header_text(app)
        session.set_setting("paused", True)  # what the worker does with the command
        app.poll_now()
        await pilot.press("p")
        assert (await sent(pilot, session))[-1] == ("resume", None, None)
        await pilot.press("plus", "plus", "minus")
        cmds = (await sent(pilot, session))[2:]
        assert [c[2]["value"] for c in cmds] == [7, 8, 7]  # type: ignore[index]
        assert all(c[0] == "set" and c[2]["key"] == "max_tasks" for c in cmds)  # type: ignore[index]
        assert "tasks 8/7" in header_text(app)


async def test_minus_stops_at_one_task(session: Store) -> None:
    session.set_setting("max_tasks", 1)
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        assert app.check_action("max_tasks", (-1,)) is None
        await pilot.press("minus")
        assert await sent(pilot, session) == []


async def test_a_failed_command_shows_its_reason(session: Store) -> None:
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        await pilot.press("p")
        await sent(pilot, session)
        (cid,) = [r[0] for r in session.conn.execute("SELECT id FROM commands")]
        session.finish_command(cid, False, "the worker is shutting down")
        app.poll_now()
        await pilot.pause()
        errors = [n for n in app._notifications if n.severity == "error"]
        assert errors and "shutting down" in errors[-1].message


async def test_a_command_the_store_refuses_is_shown(session: Store) -> None:
    done = unit_ids(session)[0]
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        app.send_command("cancel", [done])
        assert await sent(pilot, session) == []
        errors = [n for n in app._notifications if n.severity == "error"]
        assert errors and "nothing to cancel" in errors[-1].message


# -- tiles: states, zoom, failed, details -------------------------------------------------------


async def test_map_places_every_tile_and_draws_split_tiles_as_children(session: Store) -> None:
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        tile_map = app.query_one(TileMap)
        model = tile_map.model
        assert model is not None and (model.R, model.C) == (8, 9)
        split = unit_ids(session)[42]
        i = model.tile_ids.index(split)
        # NW done, NE running, SW pending, SE failed
        assert model.quads[i, 0].tolist() == [CODE["done"], CODE["running"], CODE["pending"],
                                              CODE["failed"]]
        tile_map.set_zoom(0)  # 4 x 2 characters a tile: the quadrants show
        await pilot.pause()
        r, c = int(model.r[i]), int(model.c[i])
        top = tile_map._line(2 * r).text[4 * c:4 * c + 4]
        bottom = tile_map._line(2 * r + 1).text[4 * c:4 * c + 4]
        assert (top, bottom) == ("██▒▒", "··✗✗")
        legend = str(app.query_one("#legend").render())
        assert "failed 2" in legend and "done 31" in legend


async def test_zoom_out_shows_the_most_urgent_state_of_a_cell(session: Store) -> None:
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        tile_map = app.query_one(TileMap)
        tile_map.focus()
        tile_map.set_zoom(1)
        await pilot.pause()
        assert tile_map._levels.shape == (8, 18)
        await pilot.press("o", "o", "o")
        await pilot.pause()
        assert tile_map.zoom == 4 and tile_map._levels.shape == (1, 3)
        # every tile under one cell: failed wins over everything
        assert "✗" in tile_map._line(0).text
        await pilot.press("i")
        assert tile_map.zoom == 3
        await pilot.press("0")  # fit
        assert tile_map.auto_fit and tile_map.zoom == tile_map.fit_zoom()


async def test_next_failed_and_tile_details(session: Store) -> None:
    ids = unit_ids(session)
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        tile_map = app.query_one(TileMap)
        tile_map.focus()
        tile_map.set_zoom(1)
        await pilot.press("f")
        model = tile_map.model
        assert model is not None
        first = tile_map.selected_tile()
        assert first is not None and model.tile_ids[first] == ids[37]
        assert ids[37] in str(app.query_one("#tile-line").render())
        await pilot.press("f")
        second = tile_map.selected_tile()
        assert second is not None and model.tile_ids[second] == ids[42]  # a failed child
        await pilot.press("f")
        assert tile_map.selected_tile() == first  # wraps around
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailsScreen)
        body = app.screen.plain
        assert "not found" in body and "FAILED" in body and ids[37] in body
        await pilot.press("r")  # retry from the details
        assert await sent(pilot, session) == [("retry", ids[37], None)]


async def test_unit_details_from_the_task_table_show_files(session: Store) -> None:
    done = unit_ids(session)[0]
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        await tasks_focused(pilot, done)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailsScreen)
        body = app.screen.plain
        assert f"{done}.tif" in body and "removed from Drive" in body and "SUCCEEDED" in body


# -- the other panes, sizes, attaching -----------------------------------------------------------


async def test_drive_meter_and_header_read_the_worker_status(session: Store) -> None:
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        meter = str(app.query_one(DriveMeter).render())
        assert "2.1 GB of 15.0 GB" in meter and "budget 5.0 GB" in meter
        assert "waiting 900.0 MB" in meter and "3 files waiting" in meter
        assert "12.5 MB/s" in meter
        assert "│" in meter.splitlines()[0]  # the budget line on the bar
        head = header_text(app)
        assert "31/75" in head and "ETA 5h 12m" in head and "42.5/h" in head
        assert "no worker" in head
        status = session.worker_status()
        session.set_worker_status({**status, "drive_total": None})
        app.poll_now()
        await pilot.pause()
        assert "quota unlimited" in str(app.query_one(DriveMeter).render())


async def test_before_any_worker_the_drive_pane_says_so(tmp_path: Path) -> None:
    from tests.tui.fixtures import make_session

    store = make_session(tmp_path, name="fresh")
    app = EEBatchApp(store.path, poll_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert "no worker has reported yet" in str(app.query_one(DriveMeter).render())
    store.close()


async def test_resize_to_80x24_stacks_the_panes(session: Store) -> None:
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        assert not app.screen.has_class("-narrow")
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert app.screen.has_class("-narrow")
        tiles = app.query_one("#tiles-pane").region
        tasks = app.query_one(TasksPane).region
        assert tasks.y >= tiles.bottom and tasks.width == 80  # tasks below, full width
        tile_map = app.query_one(TileMap)
        assert tile_map.zoom == tile_map.fit_zoom()  # refitted to the smaller pane
        for pane in ("#tiles-pane", "#drive-pane", "#log", "#tasks-pane"):
            region = app.query_one(pane).region
            assert region.width > 10 and region.height >= 4, pane


async def test_polling_thread_picks_up_changes(session: Store) -> None:
    ids = unit_ids(session)
    app = EEBatchApp(session.path, poll_interval=0.05)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        polls = app.polls
        set_state(session, ids[1], "failed", ts=T0 + 100, attempt="FAILED", error="boom")
        table = app.query_one(TaskTable)

        def shown_failed() -> bool:
            task = table.tasks.get(ids[1])
            return app.polls > polls and task is not None and task.state == "failed"

        await wait_for(pilot, shown_failed, f"showing {ids[1]} failed")
        assert app.counts["failed"] == 3  # read in the same snapshot as the task
        await quit_app(pilot)


async def test_attaches_to_a_worker_in_another_process(session: Store) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from core.store import Store
            s = Store({str(session.path)!r}); s.acquire_worker()
            print("locked", flush=True); time.sleep(60)
        """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        running = unit_ids(session)[30]
        app = EEBatchApp(session.path, poll_interval=None)
        async with app.run_test(size=(140, 40)) as pilot:
            await ready(pilot)
            assert "worker elsewhere" in header_text(app)
            await tasks_focused(pilot, running)
            await pilot.press("x", "y")
            assert await sent(pilot, session) == [("cancel", running, None)]
            # the other process's worker answers through the store
            (cid,) = [r[0] for r in session.conn.execute("SELECT id FROM commands")]
            session.finish_command(cid, True, f"cancelled {running}")
            set_state(session, running, "cancelled", ts=T0 + 50, attempt="CANCELLED")
            app.poll_now()
            await pilot.pause()
            assert app.query_one(TaskTable).tasks[running].state == "cancelled"
            assert any(f"cancelled {running}" in n.message for n in app._notifications)
    finally:
        holder.kill()
        holder.wait()


async def test_q_quits_and_reopening_shows_the_same_picture(session: Store) -> None:
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        first = app.query_one(TileMap)._levels.copy()
        await pilot.press("q")
    assert app.return_code == 0
    again = EEBatchApp(session.path, poll_interval=None)
    async with again.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        assert (again.query_one(TileMap)._levels == first).all()


async def test_hundred_thousand_tiles_are_shown_and_steered(tmp_path: Path) -> None:
    """How fast is tests/bench/bench_scale.py's business (first paint, full repaint), never a
    wall-clock assert here: CI runs on a loaded 2-core machine."""
    from tests.tui.fixtures import make_session

    store = make_session(tmp_path, name="big", bbox="[-124, 30, -84, 55]", size=0.1)
    ids = [r[0] for r in store.conn.execute("SELECT id FROM units ORDER BY rowid")]
    assert len(ids) == 100_000
    app = EEBatchApp(store.path, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        tile_map = app.query_one(TileMap)
        with store.tx() as conn:
            conn.executemany("UPDATE units SET state = 'done', updated = ? WHERE id = ?",
                             [(T0 + 1, u) for u in ids[::50]])
        app.poll_now()
        await wait_for(pilot, lambda: int((tile_map.model.base == CODE["done"]).sum()) == 2_000,
                       "2,000 tiles done on the map")
        tile_map.focus()
        for zoom in (0, 1, 2, 6):
            tile_map.set_zoom(zoom)
            await pilot.pause()
        start = tile_map.cursor
        await pilot.press("right", "down")
        row, col = tile_map.cursor  # a step is a cell's worth of tiles at this zoom
        assert row > start[0] and col > start[1], (start, tile_map.cursor)
    store.close()


# -- with a real worker in the app's process ---------------------------------------------------


async def test_a_worker_that_cannot_start_is_shown_with_its_reason(session: Store) -> None:
    from core.engine.runner import start_worker

    # A job stored without the emulator's URL (sessions made before backend.url was required):
    # the worker stops at once, naming the key.
    with session.tx() as conn:
        conn.execute("UPDATE session SET job_text = replace(job_text,"
                     " 'url = \"http://127.0.0.1:8787\"', '')")
    worker = start_worker(session.path)
    worker.join(30)
    app = EEBatchApp(session.path, poll_interval=None, worker=worker)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        assert "worker failed" in header_text(app)
        errors = [n for n in app._notifications if n.severity == "error"]
        assert errors and "backend.url" in errors[-1].message


def map_glyphs(tile_map: TileMap) -> Counter[str]:
    """The glyphs the map draws (every line, scrolled into view or not)."""
    return Counter("".join(tile_map._line(y).text for y in range(tile_map._levels.shape[0])))


async def test_demo_tiles_go_from_pending_to_done() -> None:
    """The README's first command, `eebatch demo`, as the app runs it: the emulator and a
    worker thread in this process, the dashboard polling the store from its own thread."""
    from core.demo import prepare_demo
    from core.engine.runner import start_worker

    emulator, path = prepare_demo()
    # A worker submits within about a second of starting, and the dashboard's first paint
    # may come later than that on a loaded machine. Paused, the worker starts and touches no
    # unit (it sends nothing until resumed), so the first paint is the demo before any work
    # whatever the load; the user then resumes it with `p`.
    store = Store(path)
    store.set_setting("paused", True)
    worker = start_worker(path, emulator_url=emulator.url)
    try:
        app = EEBatchApp(path, poll_interval=0.2, worker=worker)
        async with app.run_test(size=(120, 40)) as pilot:
            await ready(pilot)
            tile_map = app.query_one(TileMap)
            model = tile_map.model
            assert model is not None
            tile_map.set_zoom(1)  # a tile is 2 characters: a cell never mixes two tiles
            await pilot.pause()
            assert (model.base == CODE["pending"]).all()
            first = map_glyphs(tile_map)
            assert first["·"] >= 2 * len(model.tile_ids) and set(first) <= {"·", " "}
            assert "● worker" in header_text(app) and "PAUSED" in header_text(app)
            await pilot.press("p")  # resume
            await wait_for(pilot, lambda: ("resume", None, None) in commands(store),
                           "sending resume")

            def three_done() -> bool:
                return (app.counts.get("done", 0) >= 3
                        and int((model.base == CODE["done"]).sum()) >= 3
                        and map_glyphs(tile_map)["█"] >= 2 * 3)

            await wait_for(pilot, three_done, "showing 3 tiles done on the map", timeout=120,
                           seen=lambda: (f"(done: {app.counts.get('done', 0)} counted,"
                                         f" {int((model.base == CODE['done']).sum())} in the"
                                         f" map's model, {map_glyphs(tile_map)['█']} cells"
                                         " drawn)"))
            assert any(t.state == "done" for t in app.query_one(TaskTable).tasks.values())
            await quit_app(pilot)
    finally:
        worker.stop()
        worker.join(60)
        emulator.stop()
        store.close()


@pytest.mark.parametrize("key", ["ctrl+p", "colon"])
async def test_both_keys_open_the_command_palette(session: Store, key: str) -> None:
    from textual.command import CommandPalette

    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press(key)
        await wait_for(pilot, lambda: CommandPalette.is_open(app), f"{key} opening the palette")


async def test_marked_rows_hold_their_order_and_x_says_when_it_does_nothing(
        session: Store) -> None:
    ids = unit_ids(session)
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        table = await tasks_focused(pilot, ids[30])
        await pilot.press("space")  # marks ids[30], the cursor moves down a row
        order = [str(r.key.value) for r in table.ordered_rows]
        # a running task finishes: sorted by urgency it would move to the bottom
        set_state(session, ids[31], "done", ts=T0 + 100, attempt="SUCCEEDED", progress=1.0)
        app.poll_now()
        await pilot.pause()
        assert [str(r.key.value) for r in table.ordered_rows] == order
        await pilot.press("space", "r")  # two running tasks marked: nothing to retry
        await pilot.pause()
        assert any("nothing to retry" in n.message for n in app._notifications)
        assert await sent(pilot, session) == []
        await pilot.press("a", "a")  # clear the marks: the table sorts again
        table.clear_marks()
        await pilot.pause()
        assert [str(r.key.value) for r in table.ordered_rows] != order


async def test_help_scrolls_with_the_keys_at_once(session: Store) -> None:
    from textual.containers import VerticalScroll

    from tui.screens.help import HelpScreen

    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "showing help")
        box = app.screen.query_one(VerticalScroll)
        await pilot.press("pagedown", "down")
        await wait_for(pilot, lambda: box.scroll_y > 0, "scrolling the help")


async def test_header_floors_the_percentage_and_eta_says_paused(session: Store) -> None:
    from tui.widgets.header import HeaderState

    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        header = app.query_one(StatusHeader)
        state = HeaderState(session="s", counts={"done": 263, "running": 1}, worker="here",
                            status={"units_per_hour": 90.0, "eta_seconds": 3.0})
        text = header.compose_text(state).plain
        assert "263/264 99%" in text and "█" * 10 not in text, text
        assert "ETA < 1m" in text, text  # not a "3s" that lasts as long as the last task
        state.paused = True
        assert "ETA paused" in header.compose_text(state).plain


async def test_map_cursor_reads_without_colour_and_zoom_1_is_labelled(session: Store) -> None:
    from tui.widgets.tiles_pane import TilesPane

    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        tile_map = app.query_one(TileMap)
        tile_map.set_zoom(1)
        await pilot.pause()
        assert app.query_one(TilesPane).border_subtitle == "zoom 1"
        model = tile_map.model
        assert model is not None and int(model.base[0, 0]) == CODE["done"]
        tile_map.set_cursor(int(model.r[0]), int(model.c[0]))
        await pilot.pause()
        x0, x1, y0, _ = tile_map.cursor_cell()
        strip = tile_map.render_line(y0 - int(tile_map.scroll_offset.y))
        cell = list(strip.crop(x0 - int(tile_map.scroll_offset.x),
                               x1 - int(tile_map.scroll_offset.x)))
        text = "".join(seg.text for seg in cell)
        assert text and "▓" not in text and "█" not in text, text  # ▓ is "exported"
        assert all(seg.style is not None and seg.style.reverse for seg in cell)


async def test_unit_details_say_where_the_tile_is_and_where_its_file_went(
        session: Store) -> None:
    done = unit_ids(session)[0]
    row = session.unit(done)
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        await tasks_focused(pilot, done)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailsScreen), "details")
        text = app.screen.plain
        assert f"W {row['west']:.4f}  S {row['south']:.4f}" in text, text
        assert "verified, removed from Drive" in text and "deleted" not in text, text
        assert "123.5 MB" in text and "estimated" not in text, text  # the real size
