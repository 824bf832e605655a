"""What every pane shares: how a unit state looks (glyph + colour class) and how numbers read."""

from __future__ import annotations

import time

import humanize

# Map states from least to most urgent: a cell covering several tiles (zoomed out, or all
# periods at once) shows the most urgent among them, so a problem is visible at every zoom.
# A cell is 'done' only when everything under it is done.
URGENCY = ("done", "pending", "queued", "submitting", "exported", "downloading", "running",
           "cancelled", "backoff", "failed")
EMPTY = 0  # no tile there (outside the region)
CODE = {state: i + 1 for i, state in enumerate(URGENCY)}
SPLIT_CODE = 200  # replaced by children; never drawn itself
STATE_OF_CODE = {v: k for k, v in CODE.items()}

# One glyph per state, so the map reads without colour (NO_COLOR, 16 colours, screenshots).
GLYPH = {
    "pending": "·", "submitting": "+", "queued": "░", "running": "▒", "exported": "▓",
    "downloading": "↓", "done": "█", "backoff": "~", "failed": "✗", "cancelled": "-",
    "split": "╬",
}
# The legend's order: the way a unit goes, then the ways it can go wrong.
LEGEND_ORDER = ("pending", "submitting", "queued", "running", "exported", "downloading", "done",
                "backoff", "failed", "cancelled", "split")
FINISHED = ("done", "split")
# A unit whose files are downloading is moments from done: the worker refuses to cancel it.
CANCELLABLE = ("pending", "submitting", "queued", "running", "exported", "backoff")
RETRYABLE = ("failed", "cancelled")

# Colour per state, as theme variables so every theme (and NO_COLOR) works.
STATE_CSS = {
    "pending": "$foreground 45%", "submitting": "$primary-lighten-2", "queued": "$primary",
    "running": "$accent", "exported": "$secondary", "downloading": "$secondary-lighten-1",
    "done": "$success", "backoff": "$warning", "failed": "$error", "cancelled": "$warning-darken-2",
    "split": "$foreground 60%",
}


def size(n: float | None) -> str:
    if n is None:
        return "—"
    return humanize.naturalsize(n, binary=False, format="%.1f")


def duration(seconds: float | None) -> str:
    """'45s', '12m 05s', '3h 20m', '2d 04h': short and stable in width."""
    if seconds is None:
        return "—"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def clock(ts: float | None) -> str:
    if ts is None:
        return "—"
    return time.strftime("%H:%M:%S", time.localtime(ts))


def stamp(ts: float | None) -> str:
    if ts is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
