"""The Job form (inline validation by the job file's own rules, live plan, Start; the
essential fields first, the rest under "more", the plan in sight) and the session picker of
plain `eebatch`."""

from __future__ import annotations

import contextlib
import time
import tomllib
from pathlib import Path

import pytest
import tomlkit
from textual.app import App
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Collapsible, Input, Static
from textual.worker import WorkerCancelled

from core.plan import make_plan
from core.problems import Problem
from core.spec import parse_spec
from core.store import Store
from tests.tui.test_app import ready
from tui.app import EEBatchApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.job import JobScreen
from tui.screens.picker import PickerApp
from tui.widgets.job_form import DEBOUNCE, JobForm, field_id, plan_summary, save_job


async def settle(pilot: Pilot[object]) -> None:
    """Until each job form on the screen has checked what its fields say (past the debounce
    and the check and plan thread), then the repaint. It waits for that, not for a time: on a
    loaded machine a change can reach the form after the debounce would have run out."""
    await pilot.pause(DEBOUNCE + 0.1)
    deadline = time.monotonic() + 60
    while not all(form.caught_up for form in pilot.app.screen.query(JobForm)):
        assert time.monotonic() < deadline, "the job form did not finish its check in 60 s"
        await pilot.pause(0.05)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def session_created(app: App[object]) -> None:
    """The session is created in a worker thread that ends by exiting the app with it; the
    exit may cancel that worker between its call and its return (seen on a loaded machine), so
    the test waits for the workers without counting that as a failure and then asserts the
    app's result."""
    with contextlib.suppress(WorkerCancelled):
        await app.workers.wait_for_complete()


def problem(form: JobForm, key: str) -> str:
    box = form.query_one("#" + field_id(key) + "-problem", Static)
    return str(box.render()) if box.has_class("-shown") else ""


def in_sight(widget: Widget, rows: int = 1) -> bool:
    """Its first `rows` lines are on the screen now: not scrolled away, not covered."""
    region = widget.region
    return bool(region) and all(
        widget.screen.get_widget_at(region.x, region.y + dy)[0] is widget
        for dy in range(rows))


async def type_into(pilot: Pilot[object], form: JobForm, key: str, text: str) -> None:
    """Type the last character as a key press; set the rest at once (keeps tests quick)."""
    box = form.query_one("#" + field_id(key), Input)
    box.focus()
    await pilot.pause()  # focus selects the text: set it after that
    box.value = text[:-1]
    box.cursor_position = len(box.value)
    await pilot.press(text[-1])


async def test_problems_show_under_their_fields_and_block_start(session: Store) -> None:
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(160, 50)) as pilot:
        await ready(pilot)
        await pilot.press("e")
        await settle(pilot)
        form = app.query_one(JobForm)
        assert form.valid and "Units    72" in str(form.query_one("#preview").render())
        await type_into(pilot, form, "job.name", "bad name")
        await type_into(pilot, form, "grid.size", "-1")
        await settle(pilot)
        assert "letters, digits" in problem(form, "job.name")
        assert "must be > 0" in problem(form, "grid.size")
        assert form.query_one("#start").disabled
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)  # nothing starts with problems
        await type_into(pilot, form, "grid.size", "abc")
        await settle(pilot)
        assert "expected" in problem(form, "grid.size")
        await pilot.press("escape")  # leaves the form
        assert not app.query_one("#job-pane").display


async def test_a_problem_marks_the_field_its_key_names(session: Store) -> None:
    """By the problem's key, not by reading its line: a file elsewhere, with ': ' in its
    name, or a message with ': ' in it, still lands under the right field."""
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(160, 50)) as pilot:
        await ready(pilot)
        await pilot.press("e")
        await settle(pilot)
        form = app.query_one(JobForm)
        elsewhere = Path("/jobs: old/job.toml")
        form._show_problems([Problem(elsewhere, "grid.size", "must be > 0: got -1", 9),
                             Problem(elsewhere, "[time]", "section is missing"),
                             Problem(elsewhere, "", "not valid TOML: x (at line 1, column 2)")])
        await pilot.pause()
        assert problem(form, "grid.size") == "must be > 0: got -1"
        # a section's problem shows under its first field, naming the section
        assert problem(form, "time.start") == "[time]: section is missing"
        general = form.query_one("#general", Static)
        assert str(general.render()) == "not valid TOML: x (at line 1, column 2)"
        assert "3 problems to fix before Start: tile size, start" in str(
            form.query_one("#status").render())


async def test_start_saves_the_job_file_and_opens_the_new_session(session: Store) -> None:
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(160, 50)) as pilot:
        await ready(pilot)
        await pilot.press("e")
        await settle(pilot)
        form = app.query_one(JobForm)
        await type_into(pilot, form, "job.name", "second")
        await type_into(pilot, form, "limits.max_tasks", "3")
        await settle(pilot)
        assert form.valid
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await session_created(app)
        await pilot.pause()
    new = app.return_value
    assert new is not None and new.name == "second-1.sqlite"
    job = tomllib.loads(session.job_path.read_text(encoding="utf-8"))
    assert job["job"]["name"] == "second" and job["limits"]["max_tasks"] == 3
    assert job["recipe"]["name"] == "composite"  # what the form does not show is kept
    assert session.job_path.with_suffix(".toml.bak").exists()
    created = Store(new)
    assert created.name == "second" and created.setting("max_tasks") == 3
    created.close()


async def test_on_a_narrow_terminal_the_job_form_is_a_modal(session: Store) -> None:
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, JobScreen)
        assert not app.query_one("#job-pane").display
        await settle(pilot)
        assert app.screen.query_one(JobForm).valid
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, JobScreen)


async def test_picker_opens_a_session(session: Store) -> None:
    app = PickerApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
    assert app.return_value == session.path


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_picker_sets_up_a_new_job_from_a_typed_path(tmp_path: Path,
                                                          size: tuple[int, int]) -> None:
    job = tmp_path / "fresh.toml"
    app = PickerApp()
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        assert isinstance(app.focused, Input)  # no session yet: the path box
        app.query_one(Input).value = str(job)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, JobScreen)
        await settle(pilot)
        form = app.screen.query_one(JobForm)
        assert "is required" in problem(form, "backend.project")  # the template asks
        assert form.query_one("#more", Collapsible).collapsed  # and it is not under "more"
        await type_into(pilot, form, "backend.project", "my-project")
        await type_into(pilot, form, "job.name", "fresh")
        await settle(pilot)
        assert form.valid
        await pilot.press("ctrl+s")
        await session_created(app)
        await pilot.pause()
    assert app.return_value is not None and app.return_value.name == "fresh-1.sqlite"
    assert tomllib.loads(job.read_text(encoding="utf-8"))["backend"]["project"] == "my-project"


COMMENTED_JOB = """\
# the team's test job: keep these notes
[job]
name = "commented"  # names the session and the files

[region]
# a small box
bbox = [0, 0, 4, 2]

[grid]
size = 1  # degrees

[recipe]
name = "composite"
max_cloud = 30.0  # written as a float

# the local emulator, for now
[backend]
kind = "emulator"
url = "http://127.0.0.1:8787"
"""


async def test_saving_keeps_the_job_files_comments_and_layout(tmp_path: Path) -> None:
    """A job file with comments, opened in the form, one field changed, Start: the comments
    and every line the user wrote are still there, and the changed value is written."""
    job = tmp_path / "commented.toml"
    job.write_text(COMMENTED_JOB, encoding="utf-8")
    app = PickerApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        path = app.query_one("#job-path", Input)
        path.value = str(job)
        path.focus()
        await pilot.press("enter")
        await settle(pilot)
        form = app.screen.query_one(JobForm)
        assert form.valid
        await type_into(pilot, form, "grid.size", "2")
        await settle(pilot)
        assert form.valid
        await pilot.press("ctrl+s")
        await session_created(app)
        await pilot.pause()
    assert app.return_value is not None
    saved = job.read_text(encoding="utf-8")
    # the user's text, the one value changed in place (its comment kept); what the form adds
    # (the destination its select shows) comes after
    assert saved.startswith(COMMENTED_JOB.replace("size = 1  #", "size = 2  #")), saved
    assert tomllib.loads(saved)["grid"]["size"] == 2
    assert job.with_suffix(".toml.bak").read_text(encoding="utf-8") == COMMENTED_JOB


def test_an_unchanged_job_file_is_not_rewritten(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text("# my notes\n[job]\nname = \"a\"  # the name\n", encoding="utf-8")
    assert save_job(job, tomlkit.dumps({"job": {"name": "a"}})) == ""
    assert job.read_text(encoding="utf-8").startswith("# my notes")
    assert "previous version" in save_job(job, tomlkit.dumps({"job": {"name": "b"}}))
    assert job.with_suffix(".toml.bak").read_text(encoding="utf-8").startswith("# my notes")


# what a newcomer fills in, in this order (the composite recipe has no required parameter)
ESSENTIAL_IDS = [field_id(key) for key in (
    "region", "grid.size", "time.start", "time.end", "time.step", "recipe.name", "job.name",
    "export.destination", "export.folder", "export.scale", "save", "backend.kind",
    "backend.project", "backend.url")]


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_plan_is_in_sight_without_scrolling(session: Store,
                                                      size: tuple[int, int]) -> None:
    """In the dashboard (a modal at 80x24, a pane at 120x40) the plan's summary line stays on
    top of the fields, wherever the form is scrolled to."""
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        await pilot.press("e")
        await settle(pilot)
        form = app.screen.query_one(JobForm)
        summary = form.query_one("#summary", Static)
        assert form.valid and str(summary.render()).startswith("Plan  72 units")
        assert in_sight(summary) and in_sight(form.query_one("#start"))
        form.query_one("#" + field_id("save"), Input).focus()  # the last essential field
        await pilot.pause()
        assert in_sight(form.query_one("#" + field_id("save")))
        assert in_sight(summary)


async def test_a_wide_form_shows_the_whole_plan_beside_the_fields(session: Store) -> None:
    """The picker's modal at 120x40 has room for the plan beside the fields."""
    app = PickerApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        path = app.query_one("#job-path", Input)
        path.value = str(session.job_path)
        path.focus()
        await pilot.press("enter")
        await settle(pilot)
        form = app.screen.query_one(JobForm)
        preview = form.query_one("#preview", Static)
        assert form.valid and "Units    " in str(preview.render())
        assert in_sight(preview, rows=12)  # its summary lines, beside the first fields
        assert in_sight(form.query_one("#" + field_id("region")))


async def test_essential_fields_come_first_and_the_rest_is_under_more(session: Store) -> None:
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("e")
        await settle(pilot)
        form = app.screen.query_one(JobForm)
        ids = [w.id for w in form.query("Input, Select")]
        assert ids[:len(ESSENTIAL_IDS)] == ESSENTIAL_IDS
        assert app.focused is form.query_one("#" + field_id("region"))  # the first one
        more = form.query_one("#more", Collapsible)
        max_tasks = form.query_one("#" + field_id("limits.max_tasks"), Input)
        assert more.collapsed and not in_sight(max_tasks)
        # a problem under "more" is never hidden: it opens
        max_tasks.value = "0"
        await settle(pilot)
        assert not more.collapsed and "max tasks" in str(form.query_one("#status").render())
        assert problem(form, "limits.max_tasks")


async def test_defaults_are_placeholders_and_hints_show_under_the_focused_field(
        session: Store) -> None:
    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("e")
        await settle(pilot)
        form = app.screen.query_one(JobForm)

        def box(key: str) -> Input:
            return form.query_one("#" + field_id(key), Input)

        def hint(key: str) -> Static:
            return box(key).parent.parent.query_one(".hint", Static)

        # an empty field reads as what it means; what to type is a hint, not a placeholder
        assert box("time.step").placeholder == "one period"
        assert box("export.crs").placeholder == "EPSG:4326"
        assert box("region").placeholder == ""
        assert "west, south, east, north" in str(hint("region").render())
        assert in_sight(hint("region")) and not in_sight(hint("grid.size"))
        box("grid.size").focus()
        await pilot.pause()
        assert in_sight(hint("grid.size")) and not in_sight(hint("region"))
        assert box("grid.size").tooltip == str(hint("grid.size").render())


def test_the_summary_line_carries_the_plans_warnings(session: Store) -> None:
    plan = make_plan(parse_spec(session.job_text, session.job_path))
    lines = ["Units    72", "warning: grid.size: tiles of about 22×22 pixels", "Drive    …"]
    summary = plan_summary(plan, lines).plain
    assert summary.splitlines() == ["Plan  72 units (72 tiles × 1 period) · ~4.7 GB",
                                    "⚠ grid.size: tiles of about 22×22 pixels"]


async def test_the_recipe_hint_is_the_chosen_recipes_help(session: Store) -> None:
    from textual.widgets import Select

    from core.recipes import RECIPES

    app = EEBatchApp(session.path, poll_interval=None)
    async with app.run_test(size=(160, 50)) as pilot:
        await ready(pilot)
        await pilot.press("e")
        await settle(pilot)
        form = app.screen.query_one(JobForm)
        select = form.query_one("#" + field_id("recipe.name"), Select)

        def hint() -> str:
            return str(select.parent.parent.query_one(".hint", Static).render())

        assert hint() == RECIPES["composite"].help == select.tooltip
        select.value = "python"
        await settle(pilot)
        assert hint() == RECIPES["python"].help == select.tooltip
        assert form.query_one("#" + field_id("recipe.function"), Input)  # its required one
