"""Messages between the dashboard's parts: the store poller posts snapshots, panes ask for
commands; the App turns the latter into rows of the store's command table."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from tui.reader import Snapshot


class SnapshotReady(Message):
    """What changed in the store since the last poll (posted from the poll thread)."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class PollFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class CommandRequest(Message):
    """A pane asks the worker to do something: cancel/retry units, pause, resume, set."""

    def __init__(self, verb: str, units: list[str] | None = None, arg: Any = None,
                 confirm: bool = False) -> None:
        super().__init__()
        self.verb = verb
        self.units = units or []
        self.arg = arg
        self.confirm = confirm


class ShowUnit(Message):
    """Open the details of a unit (from the task table) or a tile (from the map)."""

    def __init__(self, unit: str | None = None, tile: int | None = None,
                 period: int | None = None) -> None:
        super().__init__()
        self.unit = unit
        self.tile = tile
        self.period = period
