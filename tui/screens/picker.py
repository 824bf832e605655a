"""Plain `eebatch`: pick a session to open, or type a job file's path to set up a new one."""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Footer, Input, Static

from core.store import Store
from tui.new_session import create_or_notify
from tui.screens.job import JobScreen
from tui.widgets.job_form import TEMPLATE


def job_text(path: Path) -> tuple[str, str]:
    """The job file's text, or a template for a file that does not exist yet (and why)."""
    if path.is_dir():
        return TEMPLATE, f"{path} is a folder; starting from a template"
    if not path.exists():
        return TEMPLATE, f"{path} does not exist yet: Start writes it"
    try:
        return path.read_text(encoding="utf-8"), ""
    except (OSError, UnicodeDecodeError) as exc:
        return TEMPLATE, f"cannot read {path}: {exc}; starting from a template"


class PickerApp(App[Path | None]):
    """Exits with the path of the session to open (an existing one, or one just created)."""

    TITLE = "eebatch"
    CSS = """
    #box { padding: 0 1; }
    #title { text-style: bold; color: $accent; padding: 1 0; }
    #sessions { height: 1fr; border: round $primary 50%; }
    #sessions:focus { border: round $accent; }
    #new { height: auto; padding-top: 1; }
    #new Input { width: 1fr; }
    #hint { color: $text-muted; height: auto; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("n", "new_job", "New job"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="box"):
            yield Static("eebatch — open a session, or set up a job", id="title")
            table: DataTable[str] = DataTable(id="sessions", cursor_type="row")
            table.border_title = "Sessions"
            yield table
            with Horizontal(id="new"):
                yield Input(placeholder="job file to set up, e.g. examples/california.toml",
                            id="job-path")
                yield Button("Set up", id="setup")
            yield Static("enter opens the highlighted session · n or the box above sets up a "
                         "new job from a file (or a template) · q quits", id="hint")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#sessions", DataTable)
        for key, label in (("id", "session"), ("name", "job"), ("created", "created"),
                           ("progress", "progress")):
            table.add_column(label, key=key)
        sessions = Store.list_sessions()
        for s in reversed(sessions):  # newest first
            pct = f"{100 * s.done / s.total:.0f}%" if s.total else "—"
            table.add_row(s.id, s.name, time.strftime("%Y-%m-%d %H:%M",
                                                      time.localtime(s.created)),
                          f"{s.done:,}/{s.total:,} {pct}", key=str(s.path))
        if sessions:
            table.focus()
        else:
            table.border_subtitle = "none yet"
            self.query_one("#job-path", Input).focus()

    @on(DataTable.RowSelected, "#sessions")
    def _open(self, event: DataTable.RowSelected) -> None:
        self.exit(Path(str(event.row_key.value)))

    def action_new_job(self) -> None:
        self.query_one("#job-path", Input).focus()

    @on(Input.Submitted, "#job-path")
    @on(Button.Pressed, "#setup")
    def _setup(self) -> None:
        raw = self.query_one("#job-path", Input).value.strip() or "job.toml"
        path = Path(raw).expanduser()
        if path.is_dir():
            path = path / "job.toml"
        text, note = job_text(path)
        if note:
            self.notify(note, timeout=6)
        self.push_screen(JobScreen(text, path), self._started)

    def _started(self, path: Path | None) -> None:
        if path is not None:
            self._create(path)

    @work(thread=True, exclusive=True, exit_on_error=False, description="create the session")
    def _create(self, path: Path) -> None:
        session = create_or_notify(self, path)
        if session is not None:
            self.call_from_thread(self.exit, session)
