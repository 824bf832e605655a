"""What every pane shares: how a unit state looks (glyph + colour class) and how numbers read."""

from __future__ import annotations

import time

import humanize

from core.states import (
    BACKOFF,
    CANCELLED,
    DONE,
    DOWNLOADING,
    EXPORTED,
    FAILED,
    PENDING,
    QUEUED,
    RUNNING,
    SPLIT,
    SUBMITTING,
)

# Map states from least to most urgent: a cell covering several tiles (zoomed out, or all
# periods at once) shows the most urgent among them, so a problem is visible at every zoom.
# A cell is 'done' only when everything under it is done.
URGENCY = (DONE, PENDING, QUEUED, SUBMITTING, EXPORTED, DOWNLOADING, RUNNING, CANCELLED, BACKOFF,
           FAILED)
EMPTY = 0  # no tile there (outside the region)
CODE = {state: i + 1 for i, state in enumerate(URGENCY)}
SPLIT_CODE = 200  # replaced by children; never drawn itself
STATE_OF_CODE = {v: k for k, v in CODE.items()}

# One glyph per state, so the map reads without colour (NO_COLOR, 16 colours, screenshots).
GLYPH = {
    PENDING: "·", SUBMITTING: "+", QUEUED: "░", RUNNING: "▒", EXPORTED: "▓",
    DOWNLOADING: "↓", DONE: "█", BACKOFF: "~", FAILED: "✗", CANCELLED: "-", SPLIT: "╬",
}
# The legend's order: the way a unit goes, then the ways it can go wrong.
LEGEND_ORDER = (PENDING, SUBMITTING, QUEUED, RUNNING, EXPORTED, DOWNLOADING, DONE, BACKOFF, FAILED,
                CANCELLED, SPLIT)

# Colour per state, as theme variables so every theme (and NO_COLOR) works.
STATE_CSS = {
    PENDING: "$foreground 45%", SUBMITTING: "$primary-lighten-2", QUEUED: "$primary",
    RUNNING: "$accent", EXPORTED: "$secondary", DOWNLOADING: "$secondary-lighten-1",
    DONE: "$success", BACKOFF: "$warning", FAILED: "$error", CANCELLED: "$warning-darken-2",
    SPLIT: "$foreground 60%",
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
