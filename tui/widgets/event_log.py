"""The Log pane: the worker's events, newest last, each with its level."""

from __future__ import annotations

from collections import deque
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import RichLog

from tui.reader import EventRow
from tui.widgets.common import clock

MAX_EVENTS = 2000
# A tag per level, so the level reads without colour too.
TAGS = {"debug": "dbg", "info": "inf", "warning": "WRN", "error": "ERR"}


class EventLog(RichLog):
    ALLOW_MAXIMIZE = True
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "eventlog--debug", "eventlog--info", "eventlog--warning", "eventlog--error",
        "eventlog--time", "eventlog--unit"}
    DEFAULT_CSS = """
    EventLog { scrollbar-size: 1 1; }
    EventLog > .eventlog--debug { color: $text-disabled; }
    EventLog > .eventlog--info { color: $text-muted; }
    EventLog > .eventlog--warning { color: $warning; text-style: bold; }
    EventLog > .eventlog--error { color: $error; text-style: bold; }
    EventLog > .eventlog--time { color: $text-muted; }
    EventLog > .eventlog--unit { color: $accent; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("G,end", "follow", "Follow", show=False),
        Binding("g,home", "scroll_home", "Top", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=MAX_EVENTS, wrap=True, markup=False,
                         auto_scroll=True, min_width=20)
        self.events: deque[EventRow] = deque(maxlen=MAX_EVENTS)
        self._wrapped_at = 0

    def add_events(self, events: list[EventRow]) -> None:
        self.events.extend(events)
        self._write(events)

    def on_resize(self) -> None:
        # RichLog wraps a line once, when written: wrap again for the new width.
        if self.size.width != self._wrapped_at and self.events:
            self._wrapped_at = self.size.width
            self.clear()
            self._write(list(self.events))

    def _write(self, events: list[EventRow]) -> None:
        for e in events:
            level = e.level if e.level in TAGS else "info"
            line = Text(no_wrap=False)
            line.append(clock(e.ts), self.get_component_rich_style("eventlog--time",
                                                                   partial=True))
            line.append(" ")
            line.append(TAGS[level], self.get_component_rich_style(f"eventlog--{level}",
                                                                  partial=True))
            line.append(" ")
            if e.unit:
                line.append(e.unit, self.get_component_rich_style("eventlog--unit",
                                                                 partial=True))
                line.append(" ")
            line.append(e.message, self.get_component_rich_style(f"eventlog--{level}",
                                                                partial=True)
                        if level in ("warning", "error") else "")
            self.write(line)

    def action_follow(self) -> None:
        self.auto_scroll = True
        self.scroll_end(animate=False)
