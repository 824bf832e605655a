"""The Tasks pane: the session's EE tasks (latest attempt per unit) in a DataTable kept up to
date by diff, so the cursor and the scroll position never jump; / filters, s sorts, x cancels,
r retries, space marks rows for a bulk cancel or retry."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.events import Key
from textual.widgets import DataTable, Input, Static
from textual.widgets.data_table import RowDoesNotExist

from core.states import A_SUBMITTING, CANCELLABLE, RETRYABLE
from tui.messages import CommandRequest, ShowUnit
from tui.reader import TaskRow
from tui.widgets.common import GLYPH, STATE_CSS, URGENCY, duration

COLUMNS = (("mark", " "), ("unit", "unit"), ("state", "state"), ("progress", "prog"),
           ("runtime", "runtime"), ("eecu", "EECU-s"), ("attempt", "try"), ("error", "error"))
SORTS = ("urgency", "unit", "state", "progress", "runtime", "eecu", "attempt", "error")


def _urgency(state: str) -> int:
    return URGENCY.index(state) if state in URGENCY else -1


def sort_key(row: TaskRow, column: str) -> Any:
    if column == "urgency":
        return (-_urgency(row.state), row.unit)
    if column == "state":
        return (row.state, row.unit)
    value = {"unit": row.unit, "progress": row.progress, "runtime": row.runtime or 0.0,
             "eecu": row.eecu or 0.0, "attempt": row.attempt, "error": row.error}[column]
    return (value, row.unit)


class TaskTable(DataTable[Any]):
    COMPONENT_CLASSES: ClassVar[set[str]] = {f"tasktable--{s}" for s in STATE_CSS}
    DEFAULT_CSS = "\n".join(
        f"TaskTable > .tasktable--{s} {{ color: {c}; }}" for s, c in STATE_CSS.items())
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("x", "cancel", "Cancel"),
        Binding("r", "retry", "Retry"),
        Binding("space", "mark", "Mark"),
        Binding("a", "mark_all", "Mark all", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort(1)", "Sort", show=False),
        Binding("S", "sort(-1)", "Sort back", show=False),
        Binding("enter", "select_cursor", "Details", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.tasks: dict[str, TaskRow] = {}
        self.cells: dict[str, tuple[Any, ...]] = {}  # what each shown row displays
        self.marks: set[str] = set()
        self.filter = ""
        self.sort_by = "urgency"
        self.reverse = False
        self._sorted: tuple[str, bool] | None = None  # None: rows may be out of order
        self._keys_state: tuple[bool | None, ...] = ()

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    # -- data ----------------------------------------------------------------------------------

    def sync(self, changed: list[TaskRow], removed: list[str]) -> None:
        for uid in removed:
            self.tasks.pop(uid, None)
            self.marks.discard(uid)
        for row in changed:
            self.tasks[row.unit] = row
        self._show()

    def _matches(self, row: TaskRow) -> bool:
        if not self.filter:
            return True
        needle = self.filter.lower()
        return any(needle in text.lower() for text in (row.unit, row.state, row.ee_state,
                                                        row.error))

    def _cells(self, row: TaskRow) -> tuple[Any, ...]:
        style = self.get_component_rich_style(f"tasktable--{row.state}", partial=True)
        progress = f"{row.progress * 100:.0f}%" if row.ee_state != A_SUBMITTING else ""
        error = row.error.splitlines()[0][:60] if row.error else ""  # all of it: enter
        return ("●" if row.unit in self.marks else " ", row.unit,
                Text(f"{GLYPH.get(row.state, '?')} {row.state}", style=style), progress,
                duration(row.runtime) if row.runtime is not None else "",
                f"{row.eecu:,.0f}" if row.eecu is not None else "", str(row.attempt), error)

    def _show(self) -> None:
        """Bring the table to the wanted rows by diff: remove, update cells, add, sort."""
        # The cursor follows its task while someone works the table; otherwise it stays at
        # its row, so an unattended table shows the most urgent tasks at the top.
        keep = self.current_key() if self.has_focus or self.marks else None
        want = {uid: row for uid, row in self.tasks.items() if self._matches(row)}
        with self.app.batch_update():
            for uid in [k for k in self.cells if k not in want]:
                del self.cells[uid]
                self.remove_row(uid)
            moved = False
            for uid, row in want.items():
                cells = self._cells(row)
                old = self.cells.get(uid)
                if old is None:
                    self.add_row(*cells, key=uid)
                    moved = True
                elif old != cells:
                    for (key, _), before, after in zip(COLUMNS, old, cells, strict=True):
                        if before != after:
                            self.update_cell(uid, key, after, update_width=True)
                    moved = True
                self.cells[uid] = cells
            if moved:
                self._sorted = None
            # While rows are marked the order holds still: space must mark the row the
            # user sees under the cursor, not one a re-sort just moved there.
            if not self.marks and self._sorted != (self.sort_by, self.reverse):
                self._sort()
            if keep is not None and keep in self.cells:
                self.move_cursor(row=self.get_row_index(keep), animate=False, scroll=False)
        self._subtitle()
        self._update_keys()

    def _update_keys(self) -> None:
        """Grey or ungrey x, r, space in the footer, only when that changes (the footer
        rebuilds itself on each refresh)."""
        keys = tuple(self.check_action(a, ()) for a in ("cancel", "retry", "mark"))
        if keys != self._keys_state:
            self._keys_state = keys
            self.refresh_bindings()

    def _sort(self) -> None:
        self._sorted = (self.sort_by, self.reverse)
        tasks = self.tasks
        self.sort("unit", key=lambda unit: sort_key(tasks[str(unit)], self.sort_by),
                  reverse=self.reverse)

    def _subtitle(self) -> None:
        pane = self.parent
        if not isinstance(pane, TasksPane):
            return
        pane.show_empty(not self.tasks)
        parts = [f"{len(self.cells):,}" + (f" of {len(self.tasks):,}" if self.filter else "")]
        if self.filter:
            parts.append(f"filter “{self.filter}”")
        if self.marks:
            parts.append(f"{len(self.marks)} marked")
        parts.append(f"sort {self.sort_by}{' ↑' if self.reverse else ''}")
        pane.border_subtitle = " · ".join(parts)

    def set_filter(self, text: str) -> None:
        self.filter = text.strip()
        self._show()

    def current_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except RowDoesNotExist:
            return None
        return key

    def targets(self) -> list[str]:
        """Marked rows if any, else the row under the cursor."""
        if self.marks:
            return sorted(self.marks)
        key = self.current_key()
        return [key] if key is not None else []

    # -- actions -------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Grey out what does not apply to the selected (or marked) tasks."""
        if action in ("cancel", "retry"):
            allowed = CANCELLABLE if action == "cancel" else RETRYABLE
            ok = any(self.tasks[u].state in allowed for u in self.targets() if u in self.tasks)
            return True if ok else None
        if action in ("mark", "select_cursor"):
            return True if self.current_key() is not None else None
        return True

    def _act(self, verb: str, allowed: tuple[str, ...]) -> None:
        units = [u for u in self.targets() if u in self.tasks and self.tasks[u].state in allowed]
        if units:
            self.post_message(CommandRequest(verb, units, confirm=verb == "cancel"))
        else:
            self._did_nothing(verb)

    def _did_nothing(self, verb: str) -> None:
        allowed = CANCELLABLE if verb == "cancel" else RETRYABLE
        which = "marked task" if self.marks else "selected task"
        self.notify(f"nothing to {verb}: no {which} is {' or '.join(allowed)}",
                    severity="warning", timeout=4)

    def on_key(self, event: Key) -> None:
        # A greyed key is not bound: it comes here, and says why it does nothing.
        verb = {"x": "cancel", "r": "retry"}.get(event.key)
        if verb is not None and self.check_action(verb, ()) is None:
            event.stop()
            self._did_nothing(verb)

    def action_cancel(self) -> None:
        self._act("cancel", CANCELLABLE)

    def action_retry(self) -> None:
        self._act("retry", RETRYABLE)

    def clear_marks(self) -> None:
        if self.marks:
            self.marks.clear()
            self._show()

    def action_mark(self) -> None:
        key = self.current_key()
        if key is None:
            return
        self.marks ^= {key}
        self._show()
        self.action_cursor_down()

    def action_mark_all(self) -> None:
        shown = set(self.cells)
        self.marks = set() if shown <= self.marks else shown
        self._show()

    def action_sort(self, delta: int) -> None:
        self.sort_by = SORTS[(SORTS.index(self.sort_by) + delta) % len(SORTS)]
        self.reverse = False
        self._show()
        if self.marks:
            self.notify("sorted once the marks are cleared (x, r or a)", timeout=3)

    def action_filter(self) -> None:
        pane = self.parent
        if isinstance(pane, TasksPane):
            pane.open_filter()

    @on(DataTable.HeaderSelected)
    def _header(self, event: DataTable.HeaderSelected) -> None:
        column = str(event.column_key.value)
        if column == "mark":
            return
        if self.sort_by == column:
            self.reverse = not self.reverse
        else:
            self.sort_by, self.reverse = column, False
        self._show()

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self._update_keys()

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(ShowUnit(unit=str(event.row_key.value)))


class TasksPane(Vertical):
    ALLOW_MAXIMIZE = True
    DEFAULT_CSS = """
    TasksPane #filter { display: none; height: 1; border: none; padding: 0 1; }
    TasksPane.-filtering #filter { display: block; }
    TasksPane #no-tasks { display: none; height: auto; padding: 0 1; color: $text-muted; }
    TasksPane.-no-tasks #no-tasks { display: block; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close_filter(True)", "Clear filter", show=False),
    ]

    empty_text = ""  # what the pane says while it has no task (a direct job's)

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter: unit, state or error text (enter keeps, esc clears)",
                    id="filter")
        yield Static(id="no-tasks")
        yield TaskTable(id="tasks")

    def on_mount(self) -> None:
        self.border_title = "Tasks"

    def set_route(self, route_text: str | None) -> None:
        """A direct job's units have no export task: while the table is empty, the pane says
        so and where they show instead (`route_text` names EE's call; None for batch)."""
        self.empty_text = "" if route_text is None else (
            f"No export tasks: this job's units come {route_text}, with no batch task and "
            "no Drive. The header counts the requests in flight (direct n/N), the map marks "
            "them ↓, and a tile's details (enter) say how each came.")
        self.query_one("#no-tasks", Static).update(self.empty_text)
        self.show_empty(not self.table.tasks)

    def show_empty(self, empty: bool) -> None:
        self.set_class(empty and bool(self.empty_text), "-no-tasks")

    @property
    def table(self) -> TaskTable:
        return self.query_one(TaskTable)

    def open_filter(self) -> None:
        self.add_class("-filtering")
        box = self.query_one("#filter", Input)
        box.value = self.table.filter
        box.focus()

    def action_close_filter(self, clear: bool) -> None:
        if clear:
            self.query_one("#filter", Input).value = ""
            self.table.set_filter("")
        self.remove_class("-filtering")
        self.table.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "close_filter":
            return self.has_class("-filtering") or bool(self.table.filter)
        return True

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.table.set_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.remove_class("-filtering")
        self.table.focus()
