"""The header line: session, progress, throughput, ETA, task slots, who runs the worker and
why it waits, if it does."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual.widgets import Static

from core.routes import BATCH, DIRECT
from core.states import COUNTED, DONE, FAILED, IN_EE
from tui.widgets.common import duration


@dataclass
class HeaderState:
    session: str = ""
    counts: dict[str, int] | None = None
    settings: dict[str, Any] | None = None
    status: dict[str, Any] | None = None  # the worker's last status (core/store worker_status)
    worker: str = "unknown"  # here / attached / none / finished / stopped / error
    commands_pending: int = 0
    max_tasks: int | None = None  # what the user asked for (may not be applied yet)
    paused: bool | None = None
    route: str = BATCH  # the job's export.route (core/routes.py)


SERVICE_LABEL = {"ee": "EE", "drive": "Drive", "direct": "EE direct"}
WORKER_LABEL = {
    "here": ("● worker", "header--ok"),
    "attached": ("● worker elsewhere", "header--ok"),
    "none": ("○ no worker", "header--warn"),
    "finished": ("✓ finished", "header--ok"),  # no worker, none needed
    "stopped": ("○ worker stopped", "header--warn"),
    "error": ("✗ worker failed", "header--bad"),
    "unknown": ("… worker", "header--dim"),
}


def eta_text(seconds: float | None, paused: bool) -> str:
    """Paused, no ETA (the clock stops with the work). Under a minute the worker's estimate
    (units left / recent rate) says nothing useful: the last tasks take as long as they take."""
    if paused:
        return "paused"
    if seconds is None:
        return "—"
    if seconds < 60:
        return "< 1m"
    return duration(seconds)


class StatusHeader(Static):
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "header--ok", "header--warn", "header--bad", "header--dim", "header--name",
        "header--bar", "header--paused"}
    DEFAULT_CSS = """
    StatusHeader { dock: top; height: 1; background: $panel; color: $foreground;
                   padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    StatusHeader > .header--name { text-style: bold; color: $accent; }
    StatusHeader > .header--bar { color: $success; }
    StatusHeader > .header--ok { color: $success; }
    StatusHeader > .header--warn { color: $warning; }
    StatusHeader > .header--bad { color: $error; text-style: bold; }
    StatusHeader > .header--dim { color: $text-muted; }
    StatusHeader > .header--paused { color: $warning; text-style: bold reverse; }
    """

    def show(self, state: HeaderState) -> None:
        self.update(self.compose_text(state))

    def _s(self, name: str):  # type: ignore[no-untyped-def]
        return self.get_component_rich_style(name, partial=True)

    def _eecu(self, text: Text, status: dict[str, Any]) -> None:
        """EECU-hours used (of the cap, if the job has one; core/engine/costs.py): always
        with a cap, else where there is room (100 columns)."""
        used, cap = status.get("eecu_used"), status.get("eecu_cap")
        if used is None or (cap is None and self.size.width < 100):
            return
        chip = f"  EECU {used / 3600:.2g}" + (f"/{cap / 3600:.3g}h" if cap else "h")
        forecast = status.get("eecu_forecast")
        if forecast is not None and self.size.width >= 120:
            chip += f" (~{forecast / 3600:.2g}h in all)"
        near = cap is not None and used >= 0.9 * cap
        text.append(chip, self._s("header--warn" if near else "header--dim"))

    def _direct(self, text: Text, status: dict[str, Any], alive: bool) -> None:
        """Direct-route requests in flight of their limit (core/engine/direct.py), for a job
        whose route is direct or auto, once its worker has said; none once it is gone."""
        if not status.get("direct_limit"):
            return
        in_flight = int(status.get("direct_in_flight") or 0) if alive else 0
        text.append(f"  direct {in_flight}/{status['direct_limit']}",
                    self._s("header--ok" if in_flight else "header--dim"))

    def compose_text(self, st: HeaderState) -> Text:
        counts = st.counts or {}
        settings = st.settings or {}
        status = st.status or {}
        total = sum(n for s, n in counts.items() if s in COUNTED)
        done = counts.get(DONE, 0)
        active = sum(counts.get(s, 0) for s in IN_EE)
        text = Text()
        text.append(st.session, self._s("header--name"))
        label, style = WORKER_LABEL.get(st.worker, WORKER_LABEL["unknown"])
        text.append("  ")
        text.append(label, self._s(style))
        for service, since in sorted((status.get("down") or {}).items()):
            # First, as the one thing the user must know: nothing moves, and nothing is lost.
            text.append(f"  ✗ {SERVICE_LABEL.get(service, service)} unreachable since "
                        f"{time.strftime('%H:%M', time.localtime(since))}",
                        self._s("header--bad"))
        if status.get("restricted"):
            text.append("  EE restricted mode", self._s("header--warn"))
        # Floored: 263 of 264 is 99%, and the bar fills only when all is done.
        pct = 100 * done // total if total else 0
        text.append("  ")
        if self.size.width >= 100:
            filled = 10 * done // total if total else 0
            text.append("█" * filled, self._s("header--bar"))
            text.append("░" * (10 - filled) + " ", self._s("header--dim"))
        text.append(f"{done:,}/{total:,} {pct}%")
        failed = counts.get(FAILED, 0)
        if failed:
            text.append(f"  ✗ {failed:,} failed", self._s("header--bad"))
        rate = status.get("units_per_hour")
        paused = st.paused if st.paused is not None else settings.get("paused")
        if status:
            if self.size.width >= 100:  # at 80 columns the rate would push the task slots off
                per_hour = "—" if not rate else f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}"
                text.append(f"  {per_hour}/h", self._s("header--dim"))
            if done == total and total:
                if st.worker != "finished":  # the worker label says it already
                    text.append("  finished", self._s("header--ok"))
            else:
                text.append(f"  ETA {eta_text(status.get('eta_seconds'), bool(paused))}")
        max_tasks = st.max_tasks if st.max_tasks is not None else settings.get("max_tasks")
        if st.route != DIRECT:  # a direct job sends no export task
            text.append(f"  tasks {active}/{max_tasks}")
        if st.route != BATCH and not (done == total and total):
            self._direct(text, status, st.worker in ("here", "attached"))
        self._eecu(text, status)
        if paused:
            text.append("  ")
            text.append(" PAUSED ", self._s("header--paused"))
        waiting = status.get("waiting")
        if waiting and not (done == total and total):
            # Why the worker holds work back (Drive or disk full): every wait says why.
            text.append(f"  ⏳ {waiting}", self._s("header--warn"))
        if st.commands_pending:
            text.append(f"  {st.commands_pending} cmd waiting", self._s("header--warn"))
        return text
