"""v : what the session has made. Per period (and batch) its mosaic: where it is, the tiles in
it, and its quicklook drawn in the terminal; a table job's merged table: where, how many rows,
the first of them; and the periods still missing tiles.

Read in a thread when the screen opens (and on ctrl+r): the store's verified files through
`core.assembly.preview`, the pictures and tables from disk."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import DataTable, Static

from core.assembly.preview import MosaicView, Results, TableView, collect, read_quicklook
from core.session import load_session_spec
from core.store import Store
from tui.widgets.quicklook import Quicklook

PICTURE = (240, 160)  # pixels read of each quicklook; the widget fits them to the width


def short(path: Path) -> str:
    """The path with the home folder as ~."""
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home):] if home != "/" and text.startswith(home + "/") else text


def period_label(period: str) -> str:
    """20230701 → 2023-07-01 (and anything else as it is)."""
    if len(period) == 8 and period.isdigit():
        return f"{period[:4]}-{period[4:6]}-{period[6:]}"
    return period


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def load(session: Path) -> tuple[Results, dict[Path, np.ndarray | None]]:
    """The results and their pictures (any thread: opens its own store connection)."""
    store = Store(session)
    try:
        results = collect(store, load_session_spec(store))
    finally:
        store.close()
    pictures = {m.quicklook: read_quicklook(m.quicklook, *PICTURE)
                for m in results.mosaics if m.made}
    return results, pictures


class ResultsScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    ResultsScreen { align: center middle; }
    ResultsScreen > Vertical { width: 95%; max-width: 140; height: 95%; border: round $accent;
        background: $surface; padding: 0 1; }
    ResultsScreen #hint { dock: bottom; height: 1; color: $text-muted; }
    ResultsScreen .product { margin-top: 1; text-style: bold; }
    ResultsScreen .about { color: $text-muted; }
    ResultsScreen .missing { color: $warning; }
    ResultsScreen Quicklook { margin: 0 0 0 2; }
    ResultsScreen DataTable { height: auto; max-height: 9; margin: 0 0 0 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,v", "dismiss", "Close"),
        Binding("ctrl+r", "reload", "Read again"),
    ]

    def __init__(self, session: Path, title: str = "Results") -> None:
        super().__init__()
        self.session = session
        self.title_text = title
        self.results: Results | None = None
        self.lines: list[str] = []  # what it says, as text (tests, copying)
        self.loads = 0
        self._widgets: list[Widget] = []
        self._lines: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.title_text
            yield Static("↑↓ scroll · ctrl+r read again · esc close", id="hint")
            with VerticalScroll(id="results"):
                yield Static("reading the session's products…", classes="about")

    def on_mount(self) -> None:
        self.query_one("#results", VerticalScroll).focus()
        self._load()

    def action_reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="results", exit_on_error=False,
          description="read the session's products")
    def _load(self) -> None:
        try:
            results, pictures = load(self.session)
        except Exception as exc:  # a store or file that cannot be read: said, not raised
            self.app.call_from_thread(self._failed, f"{type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self._show, results, pictures)

    def _failed(self, why: str) -> None:
        self.loads += 1
        self._replace([Static(Text(f"could not read the products: {why}", "red"))],
                      [f"could not read the products: {why}"])

    def _say(self, text: str, classes: str = "") -> None:
        self._widgets.append(Static(Text(text), classes=classes))
        self._lines.append(text)

    def _show(self, results: Results, pictures: dict[Path, np.ndarray | None]) -> None:
        self.results = results
        self.loads += 1
        self._widgets, self._lines = [], []
        say = self._say
        open_periods = {m.period for m in results.missing}
        table_job = results.kind == "table"
        if results.empty:
            say("no product yet: " + ("the merged table is made when every unit is done"
                                      if table_job else "the mosaic of each period is "
                                      "assembled when its tiles are done"), "product")
        for m in results.mosaics:
            if m.made:
                self._mosaic(m, pictures.get(m.quicklook))
            elif m.period not in open_periods:
                say(f"{period_label(m.label)}  mosaic of {_count(m.files, 'file')}: being "
                    "assembled", "product")
        if results.table is not None:
            self._table(results.table)
        if results.missing:
            say("still missing", "product")
            after = "table" if table_job else "mosaic"
            for p in results.missing:
                say(f"{period_label(p.period)}: {p.done:,} of {_count(p.total, 'tile')} done, "
                    f"{after} after the rest", "missing")
        self._replace(self._widgets, self._lines)

    def _mosaic(self, m: MosaicView, picture: np.ndarray | None) -> None:
        self._say(f"{period_label(m.label)}  mosaic  {short(m.vrt)}", "product")
        about = [_count(m.tiles, "tile") + (f" and {_count(m.parts, 'split part')}"
                                            if m.parts else "")]
        if m.size is not None:
            about.append(f"{m.size[0]:,}×{m.size[1]:,} px")
        about.append(f"quicklook {m.quicklook.name}")
        if m.cog is not None:
            about.append(f"COG {m.cog.name}")
        self._say(" · ".join(about), "about")
        if picture is None or picture.size == 0:
            self._say("(no quicklook to show)", "about")
        else:
            self._widgets.append(Quicklook(picture, classes="quicklook"))
            if self.app.no_color:
                self._say("(grey: NO_COLOR is set)", "about")

    def _table(self, t: TableView) -> None:
        if not t.made:
            if t.note:
                self._say(f"table: {t.note}", "product")
            return
        also = f" and {t.parquet.name}" if t.parquet is not None else ""
        self._say(f"table  {short(t.csv)}{also}", "product")
        self._say(f"{_count(t.rows, 'row')} · {_count(len(t.columns), 'column')} · from "
                  f"{_count(t.files, 'file')}" + (f" · first {len(t.head)}" if t.head else ""),
                  "about")
        if t.note:
            self._say(t.note, "about")
        if t.head:
            grid: DataTable[str] = DataTable(zebra_stripes=True, cursor_type="none",
                                             show_cursor=False)
            grid.add_columns(*t.columns)
            grid.add_rows(t.head)
            self._widgets.append(grid)
            self._lines.extend("  ".join(row) for row in (t.columns, *t.head))

    def _replace(self, widgets: list[Widget], lines: list[str]) -> None:
        box = self.query_one("#results", VerticalScroll)
        with self.app.batch_update():
            box.remove_children()
            box.mount_all(widgets)
        self.lines = lines
