"""Details of a tile or a unit: its periods, attempts (EE tasks), errors and files.

Read through the store's named queries on the UI's own connection when the screen opens (WAL
readers never wait for the worker)."""

from __future__ import annotations

import io
from typing import ClassVar

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from core.states import (
    BACKOFF,
    CANCELLABLE,
    CANCELLED,
    DELETED,
    DOWNLOADING,
    FAILED,
    LOCAL,
    PENDING,
    RETRYABLE,
    SPLIT,
    VERIFIED,
)
from core.store import Row, Store
from tui.messages import CommandRequest
from tui.routes import BATCH, DIRECT, job_route, moved_text, unit_route_text
from tui.widgets.common import GLYPH, URGENCY, clock, duration, size, stamp
from tui.widgets.tiles_pane import batch_states

# A file's state in the store says where it is in Drive; beside a local path, say it whole.
FILE_STATE = {DELETED: "verified, removed from Drive", VERIFIED: "verified, still in Drive",
              LOCAL: "verified, fetched directly from EE"}
TROUBLE = (FAILED, BACKOFF, CANCELLED)  # a batch in one of these is named with its error


def batch_lines(units: list[Row]) -> list[Text]:
    """A tile's batches at a glance, a line per period ("20230601  b0 done, b1 failed"), then
    each batch in trouble with its error ("b1 failed: <error>"). A split batch counts as its
    most urgent leaf. Nothing for a tile without batches."""
    leaves: dict[tuple[str, int], list[Row]] = {}
    for u in units:
        if u["batch"] is not None and u["state"] != SPLIT:
            leaves.setdefault((u["period"], u["batch"]), []).append(u)
    if not leaves:
        return []
    lines: list[Text] = []
    periods = sorted({p for p, _ in leaves})
    for period in periods:
        worst = {b: max(rows, key=lambda u: URGENCY.index(u["state"])
                        if u["state"] in URGENCY else -1)
                 for (p, b), rows in leaves.items() if p == period}
        label = "batches" if len(periods) == 1 else f"{period}"
        lines.append(Text.assemble((f"{label}  ", "bold"),
                                   batch_states({b: u["state"] for b, u in worst.items()},
                                                most=8)))
        for b in sorted(worst):
            u = worst[b]
            if u["state"] in TROUBLE:
                error = u["error"] or ""
                lines.append(Text(f"  b{b} {u['state']}{': ' + error if error else ''}",
                                  "red" if u["state"] == FAILED else "yellow"))
    lines.append(Text(""))
    return lines


def unit_routes(store: Store, units: list[Row]) -> dict[str, Text]:
    """unit -> its route in words, when the job's route is direct or auto (a batch job's units
    all go by batch: nothing to say). A unit on batch in an auto job says whether it moved
    there from direct, and why: from the event that moved it or the unit it was split from."""
    job = store.job_text
    if job_route(job) == BATCH:
        return {}
    known = {u["id"]: u for u in units}
    lineage: dict[str, list[str]] = {}  # a batch unit -> itself, then its ancestors
    for u in units:
        if u["route"] != DIRECT:
            chain, row = [u["id"]], u
            while row is not None and row["parent"]:
                chain.append(row["parent"])
                row = known.get(row["parent"]) or store.unit(row["parent"])
            lineage[u["id"]] = chain
    moves = store.route_moves(sorted({i for chain in lineage.values() for i in chain}))
    out: dict[str, Text] = {}
    for u in units:
        text = Text.assemble("  route ", (unit_route_text(u["route"], job), "bold"))
        moved = next((i for i in lineage.get(u["id"], []) if i in moves), None)
        if moved is not None:
            text.append(moved_text(moves[moved], moved, u["id"]), "yellow")
        out[u["id"]] = text
    return out


def render_units(store: Store, units: list[Row], *, tile: bool = False) -> Group:
    """Each unit with its route (unless the job's is batch), attempts, errors and files; a
    tile's begin with its batches."""
    ids = [u["id"] for u in units]
    attempts = store.attempts_of(ids)
    files = store.files_of(ids)
    routes = unit_routes(store, units)
    parts: list[Text | Table] = [*batch_lines(units)] if tile else []
    for u in units:
        head = Text()
        head.append(f"{GLYPH.get(u['state'], '?')} ", "bold")
        head.append(u["id"], "bold")
        head.append(f"  {u['state']}")
        if u["start"]:
            head.append(f"  {u['start']} → {u['end']}", "dim")
        got = sum(f["size"] for f in files.get(u["id"], []))
        # the real size once files are known; the plan's estimate is only a guess
        head.append(f"  {size(got)}" if got else f"  estimated ~{size(u['est_bytes'])}",
                    "dim")
        if u["depth"]:
            head.append(f"  split child (depth {u['depth']}, of {u['parent']})", "dim")
        parts.append(head)
        # On a line of its own: wrapped inside the line above, "W" was cut from its number.
        parts.append(Text(f"  W {u['west']:.4f}  S {u['south']:.4f}  E {u['east']:.4f}"
                          f"  N {u['north']:.4f}", "dim"))
        if u["id"] in routes:
            parts.append(routes[u["id"]])
        if u["error"]:
            parts.append(Text(f"  error: {u['error']}", "red"))
        if u["state"] == BACKOFF and u["not_before"]:
            parts.append(Text(f"  retry not before {clock(u['not_before'])}", "dim"))
        tries = attempts.get(u["id"], [])
        if tries:
            table = Table(box=None, show_header=True, header_style="dim", padding=(0, 1),
                          pad_edge=False)
            for name in ("try", "EE state", "progress", "started", "runtime", "EECU-s"):
                table.add_column(name, no_wrap=True)
            for a in tries:
                runtime = a["updated"] - a["started"] if a["started"] else None
                table.add_row(str(a["n"]), a["state"], f"{100 * (a['progress'] or 0):.0f}%",
                              stamp(a["started"]) if a["started"] else "—", duration(runtime),
                              f"{a['eecu_seconds']:,.0f}" if a["eecu_seconds"] else "—")
            parts.append(table)
            for a in tries:
                if a["error"] and a["error"] != u["error"]:
                    parts.append(Text(f"  try {a['n']}: {a['error']}", "red"))
        elif u["state"] == PENDING:
            parts.append(Text("  not fetched yet" if u["route"] == DIRECT
                              else "  not submitted yet", "dim"))
        elif u["state"] == DOWNLOADING and u["route"] == DIRECT:
            parts.append(Text("  its pixels are being fetched from EE", "dim"))
        for f in files.get(u["id"], []):
            where = f["local_path"] or "(not downloaded)"
            state = FILE_STATE.get(f["state"], f["state"])
            parts.append(Text(f"  file {f['title']}  {size(f['size'])}  {state}  {where}",
                              "dim" if f["state"] == DELETED else ""))
        parts.append(Text(""))
    if not units:
        parts.append(Text("no units"))
    return Group(*parts)


class DetailsScreen(ModalScreen[None]):
    """A tile's or a unit's details; x cancels and r retries what applies."""

    DEFAULT_CSS = """
    DetailsScreen { align: center middle; }
    DetailsScreen > Vertical { width: 90%; max-width: 140; height: 85%; border: round $accent;
        background: $surface; padding: 0 1; }
    DetailsScreen #hint { dock: bottom; height: 1; color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,enter", "dismiss", "Close"),
        Binding("x", "command('cancel')", "Cancel"),
        Binding("r", "command('retry')", "Retry"),
    ]

    def __init__(self, title: str, store: Store, *, tile: str | None = None,
                 unit: str | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.store = store
        self.tile = tile
        self.unit = unit
        self.units: list[Row] = []
        self.plain = ""

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.title_text
            yield Static("x cancel · r retry (what applies) · esc close", id="hint")
            with VerticalScroll():
                yield Static(id="body")

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        if self.tile is not None:
            # per period and batch (b2 before b10): the planned unit, then its split
            # children in quadrant order
            self.units = sorted(self.store.units_of_tile(self.tile),
                                key=lambda u: (u["period"], -1 if u["batch"] is None
                                               else u["batch"], u["depth"] > 0, u["tile"]))
        elif self.unit is not None:
            self.units = self.store.units_by_id([self.unit])
        body = render_units(self.store, self.units, tile=self.tile is not None)
        self.query_one("#body", Static).update(body)
        console = Console(width=120, file=io.StringIO(), record=True, color_system=None)
        console.print(body)
        self.plain = console.export_text()  # what the screen says, as text (tests, copying)
        self.refresh_bindings()

    def _targets(self, verb: str) -> list[str]:
        allowed = CANCELLABLE if verb == "cancel" else RETRYABLE
        return [u["id"] for u in self.units if u["state"] in allowed]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "command":
            return True if self._targets(str(parameters[0])) else None
        return True

    def action_command(self, verb: str) -> None:
        units = self._targets(verb)
        if units:
            self.dismiss()
            self.app.post_message(CommandRequest(verb, units, confirm=verb == "cancel"))
