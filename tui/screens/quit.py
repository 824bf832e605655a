"""Quitting while the worker in this app has tasks in EE or downloads under way: keep it
running headless, stop it, or stay."""

from __future__ import annotations

from typing import ClassVar, Literal

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

QuitChoice = Literal["detach", "stop"] | None


class QuitScreen(ModalScreen[QuitChoice]):
    DEFAULT_CSS = """
    QuitScreen { align: center middle; }
    QuitScreen > Vertical { width: 72; max-width: 95%; height: auto; max-height: 90%;
        border: thick $warning 60%; background: $surface; padding: 1 2; }
    QuitScreen #question { text-style: bold; }
    QuitScreen .detail { color: $text-muted; margin-top: 1; }
    QuitScreen Horizontal { height: auto; margin-top: 1; align-horizontal: right; }
    QuitScreen Button { margin-left: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("k,d", "choose('detach')", "Keep running"),
        Binding("s", "choose('stop')", "Stop"),
        Binding("c,escape,n", "choose(None)", "Cancel"),
    ]

    def __init__(self, live: int, session: str, can_detach: bool) -> None:
        super().__init__()
        self.live = live
        self.session = session
        self.can_detach = can_detach

    def compose(self) -> ComposeResult:
        tasks = f"{self.live} task{'s' * (self.live != 1)}"
        with Vertical():
            yield Static(f"The worker has {tasks} in Earth Engine or downloading. Quit?",
                         id="question", markup=False)
            if self.can_detach:
                yield Static("Keep running: a headless worker (eebatch run "
                             f"{self.session} --headless) takes over and goes on after this "
                             f"terminal closes; `eebatch open {self.session}` attaches to it.",
                             classes="detail", markup=False)
            else:
                yield Static("This session's emulator lives in this app: it cannot go on "
                             "without it.", classes="detail", markup=False)
            yield Static("Stop: the EE tasks keep running in Earth Engine; the next worker on "
                         f"this session (eebatch open {self.session}) adopts them and "
                         "downloads what they wrote.", classes="detail", markup=False)
            with Horizontal():
                if self.can_detach:
                    yield Button("Keep running (k)", variant="primary", id="detach")
                yield Button("Stop (s)", variant="warning", id="stop")
                yield Button("Cancel (c)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "choose" and parameters[0] == "detach":
            return self.can_detach
        return True

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        choice = event.button.id
        self.dismiss(choice if choice in ("detach", "stop") else None)  # type: ignore[arg-type]

    def action_choose(self, choice: QuitChoice) -> None:
        self.dismiss(choice)
