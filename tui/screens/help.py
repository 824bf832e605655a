"""? : what the panes show, what the glyphs mean, and every key."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from tui.widgets.common import GLYPH, LEGEND_ORDER

HELP = """\
# eebatch dashboard

The worker (in this app, or headless in another process: `eebatch run`) does the work; this
screen reads the session's store and sends your commands through it. Quitting loses nothing:
reopen with `eebatch open SESSION`.

## Keys everywhere

| key | does |
|---|---|
| `q` | quit; with tasks in EE, asks: keep running headless, stop, or stay |
| `?` | this help |
| `p` | pause or resume submitting new tasks (running tasks go on) |
| `+` / `-` | one more / one less task at once (max_tasks) |
| `e` | the Job pane: the job file as a form, its plan, and Start for a new session |
| `v` | results: each period's mosaic and its quicklook, the merged table, what is missing |
| `tab` `1` `2` `3` | next pane / Tiles / Tasks / Log |
| `z` | maximise the focused pane (`esc` restores) |
| `ctrl+r` | read the store now |
| `ctrl+p` `:` | command palette: everything else |

## Tiles

| key | does |
|---|---|
| arrows, `hjkl` | move the cursor |
| `enter` | details of the tile: periods, attempts, errors, files |
| `i` / `o` / `0` | zoom in / out / fit: zoomed out, a cell shows its most urgent tile |
| `f` / `F` | next / previous failed tile |
| `t` / `T` | next / previous period (or all periods at once) |

## Tasks

| key | does |
|---|---|
| `x` | cancel (asks first) |
| `r` | retry a failed or cancelled task |
| `space` / `a` | mark a row / all rows; `x` and `r` then act on the marked rows |
| `/` | filter by unit, state or error (`enter` keeps it, `esc` clears) |
| `s` / `S` | sort by the next / previous column (or click a header) |
| `enter` | details |

Keys that do not apply to the selected task are greyed in the footer.

## States

{states}
"""


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; max-width: 100; height: 90%; border: round $accent;
        background: $surface; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,f1", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        states = "\n".join(f"| `{GLYPH[s]}` | {s} |" for s in LEGEND_ORDER)
        with VerticalScroll() as box:
            box.border_title = "Help"
            yield Markdown(HELP.format(states="| glyph | state |\n|---|---|\n" + states))

    def on_mount(self) -> None:
        # Focused, the scroll takes ↓, PgDn, Home and End at once (no Tab first).
        self.query_one(VerticalScroll).focus()
