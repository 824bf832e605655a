"""Simulated time for the batch model.

The emulator's queue runs on a clock that passes `speed` simulated seconds per wall-clock second,
so a demo can live through hours of EE queue in minutes while every timestamp it reports still
looks like a real UTC time. Tests inject a `ManualClock` and step it by hand.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Simulated time as POSIX seconds."""
        ...


class SimClock:
    """Starts at the current wall time and runs `speed` times faster than it."""

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._origin_sim = time.time() if start is None else start
        self._origin_wall = time.monotonic()  # monotonic: immune to wall-clock jumps

    def now(self) -> float:
        return self._origin_sim + (time.monotonic() - self._origin_wall) * self.speed

    def wall_seconds(self, sim_seconds: float) -> float:
        """How long a simulated interval takes on the wall clock."""
        return sim_seconds / self.speed


class ManualClock:
    """A clock that only moves when told to (unit tests)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._t = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._t

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._t += seconds

    def wall_seconds(self, sim_seconds: float) -> float:
        return 0.0


def rfc3339(t: float) -> str:
    """UTC with exactly 6 fractional digits and a Z: the only form earthengine-api parses
    (`%Y-%m-%dT%H:%M:%S.%fZ`); nanoseconds or +00:00 make it raise ValueError."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
