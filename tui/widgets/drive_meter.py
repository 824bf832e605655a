"""The Drive pane: quota used and total, the job's budget as a line on the bar, bytes exported
but not yet downloaded, the download rate and the files waiting in the export folder. Figures
come from the worker's status in the store; the UI never asks Drive itself.

Once every unit is settled the pane says what the job made instead: where the files are, how
many, their size, what they cost, and what of the session is still in Drive."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from tui.reader import Outcome
from tui.widgets.common import duration, size


class DriveMeter(Widget):
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "drivemeter--used", "drivemeter--waiting", "drivemeter--free", "drivemeter--budget",
        "drivemeter--over", "drivemeter--label"}
    DEFAULT_CSS = """
    DriveMeter { height: auto; text-wrap: nowrap; text-overflow: ellipsis; }
    DriveMeter > .drivemeter--used { color: $primary; }
    DriveMeter > .drivemeter--waiting { color: $secondary; }
    DriveMeter > .drivemeter--free { color: $foreground 25%; }
    DriveMeter > .drivemeter--budget { color: $warning; text-style: bold; }
    DriveMeter > .drivemeter--over { color: $error; }
    DriveMeter > .drivemeter--label { color: $text-muted; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.status: dict[str, Any] | None = None
        self.budget: int | None = None
        self.outcome: Outcome | None = None

    def update_status(self, status: dict[str, Any] | None, budget: int | None) -> None:
        if (status, budget) != (self.status, self.budget):
            self.status, self.budget = status, budget
            self.refresh(layout=True)

    def show_outcome(self, outcome: Outcome | None) -> None:
        if outcome != self.outcome:
            self.outcome = outcome
            self.refresh(layout=True)

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(f"drivemeter--{name}", partial=True)

    def render(self) -> Text:
        width = max(10, self.size.width)
        status = self.status
        label = self._style("label")
        budget = self.budget
        if self.outcome is not None:
            return self._outcome_text(self.outcome)
        if not status:
            text = Text()
            text.append("no worker has reported yet\n", label)
            text.append("Drive figures appear once a worker runs", label)
            if budget:
                text.append(f"\nbudget {size(budget)}")
            return text
        used = int(status.get("drive_used") or 0)
        total = status.get("drive_total")
        waiting = int(status.get("waiting_bytes") or 0)
        scale = float(total) if total else max(budget or 0, used + waiting, 1) * 1.25
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append_text(self._bar(width, used, waiting, budget, scale))
        text.append("\n")
        over = budget is not None and used > budget
        text.append("used ", label)
        text.append(size(used), self._style("over") if over else Style())
        text.append(f" of {size(total)}" if total else " · quota unlimited")
        if total:
            text.append(f" ({100 * used / total:.0f}%)", label)
        trash = int(status.get("drive_trash") or 0)
        if trash:
            text.append(f"  trash {size(trash)}", label)
        text.append("\n")
        text.append("│", self._style("budget"))
        text.append("budget ", label)
        text.append(size(budget) if budget else "—")
        text.append("  ▒", self._style("waiting"))
        text.append("waiting ", label)
        text.append(size(waiting))
        text.append("\n")
        files = int(status.get("files_waiting") or 0)
        text.append(f"{files:,} file{'s' * (files != 1)} waiting", label)
        text.append("  ↓ ", label)
        text.append(f"{size(float(status.get('download_rate') or 0))}/s")
        return text

    def _outcome_text(self, outcome: Outcome) -> Text:
        t, label = outcome.totals, self._style("label")
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"✓ {t.files:,} file{'s' * (t.files != 1)}", self._style("used"))
        text.append(f", {size(t.bytes)}")
        text.append(f" · {duration(t.wall_seconds)}\n", label)
        text.append(_tail(_home(outcome.where), self.size.width) if outcome.where
                    else "in the job's output_dir")
        text.append("\n")
        text.append(f"{t.eecu_seconds / 3600:,.2f} EECU-h")
        text.append(f" · {t.retries:,} retries · {t.splits:,} splits\n", label)
        files, nbytes = outcome.left_in_drive
        if files:
            text.append(f"{files:,} file{'s' * (files != 1)} ({size(nbytes)}) still in Drive",
                        self._style("over"))
        else:
            text.append("nothing of this job left in Drive", label)
        return text

    def _bar(self, width: int, used: int, waiting: int, budget: int | None,
             scale: float) -> Text:
        def cells(n: float) -> int:
            return min(width, max(0, round(n / scale * width)))

        u = cells(used)
        w = cells(used + waiting) - u
        bar = ["█"] * u + ["▒"] * w + ["░"] * (width - u - w)
        styles = ["used"] * u + ["waiting"] * w + ["free"] * (width - u - w)
        if budget:
            b = min(width - 1, cells(budget))
            bar[b], styles[b] = "│", "budget"
        text = Text()
        for glyph, style in zip(bar, styles, strict=True):
            text.append(glyph, self._style(style))
        return text


def _home(path: Path) -> str:
    """~/… for a folder under the user's home: shorter, and what they would type."""
    try:
        return f"~/{path.relative_to(Path.home())}"
    except ValueError:
        return str(path)


def _tail(text: str, width: int) -> str:
    """A long path cut at its start: the folder's own name is the part that tells."""
    return text if len(text) <= width else "…" + text[len(text) - width + 1:]
