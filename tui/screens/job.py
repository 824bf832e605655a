"""The Job form as a modal (narrow terminals, and the session picker)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen
from textual.widgets import Footer

from tui.widgets.job_form import JobForm


class JobScreen(ModalScreen[Path | None]):
    """Dismissed with the saved job file's path when Start is pressed, else None."""

    DEFAULT_CSS = """
    JobScreen { align: center middle; }
    JobScreen JobForm { width: 100%; max-width: 110; height: 1fr; border: round $accent;
        background: $surface; border-title-style: bold; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Close")]

    def __init__(self, text: str, path: Path) -> None:
        super().__init__()
        self.text = text
        self.path = path

    def compose(self) -> ComposeResult:
        form = JobForm(self.text, self.path, id="job-form")
        form.border_title = f"Job · {self.path.name}"
        yield form
        yield Footer()

    @on(JobForm.Close)
    def _close(self, event: JobForm.Close) -> None:
        event.stop()
        self.dismiss(None)

    @on(JobForm.Start)
    def _start(self, event: JobForm.Start) -> None:
        event.stop()
        self.dismiss(event.path)
