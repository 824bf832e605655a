"""What the job's EE work has cost and what the rest will (core/engine/costs.py): EECU-seconds
as EE reports them per operation (batchEecuUsageSeconds), per unit and for the job, learned per
pixel from the units that finished; and what its failures taught (core/engine/memory.py).
Mixed into Store (one connection, one owner of the schema).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from core.states import (
    A_SUBMITTING,
    BACKOFF,
    DONE,
    DOWNLOADING,
    EE_CANCELLING,
    EE_LIVE,
    EE_RUNNING,
    EE_SUCCEEDED,
    EXPORTED,
    PENDING,
    RUNNING,
    SPLIT,
)
from core.store.units import marks

EXPORTED_ON = (EXPORTED, DOWNLOADING, DONE)  # EE exported it
STRAGGLER_PREFIX = "straggler:"  # how a straggler's cancelled attempt's error begins


@dataclass(frozen=True)
class Spend:
    """The job's EECU: used so far, and what finished exports teach about the rest."""

    used: float  # EECU-seconds of every attempt, finished or running (EE's figure so far)
    learned_per_pixel: float | None  # EECU-seconds per estimated pixel of succeeded exports
    live_units: int  # exports EE may still run
    live_pixels: int  # their estimated pixels
    live_used: float  # what they have used so far


class CostOps:
    conn: sqlite3.Connection

    def spend(self) -> Spend:
        used, ok_eecu, ok_pixels = self.conn.execute(
            "SELECT COALESCE(SUM(a.eecu_seconds), 0),"
            " SUM(CASE WHEN a.state = ? AND a.eecu_seconds > 0 THEN a.eecu_seconds END),"
            " SUM(CASE WHEN a.state = ? AND a.eecu_seconds > 0 THEN u.est_pixels END)"
            " FROM attempts a JOIN units u ON u.id = a.unit", (EE_SUCCEEDED, EE_SUCCEEDED)
        ).fetchone()
        live = (A_SUBMITTING, *EE_LIVE)
        n, pixels, live_used = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(u.est_pixels), 0), COALESCE(SUM(a.eecu_seconds), 0)"
            f" FROM attempts a JOIN units u ON u.id = a.unit WHERE a.state IN ({marks(live)})",
            live).fetchone()
        per_pixel = ok_eecu / ok_pixels if ok_eecu and ok_pixels else None
        return Spend(float(used), per_pixel, int(n), int(pixels), float(live_used))

    def pixels_to_send(self) -> int:
        """Estimated pixels of the units not sent yet (pending or backed off), as the
        triggers of schema v10 keep them per state: summed over the units, it read every
        pending unit at each poll (0.9 s at a million)."""
        return int(self.conn.execute(
            "SELECT COALESCE(SUM(pixels), 0) FROM unit_counts WHERE state IN (?, ?)",
            (PENDING, BACKOFF)).fetchone()[0])

    def running_attempts(self) -> list[sqlite3.Row]:
        """The latest attempts EE runs now, with their unit's estimated pixels."""
        return self.conn.execute(
            "SELECT a.id, a.unit, a.operation, a.started, u.est_pixels FROM attempts a"
            " JOIN units u ON u.id = a.unit WHERE a.state = ? AND u.state = ?",
            (EE_RUNNING, RUNNING)).fetchall()

    def unit_was_straggler(self, unit: str) -> bool:
        return bool(self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM attempts WHERE unit = ? AND error LIKE ?)",
            (unit, STRAGGLER_PREFIX + "%")).fetchone()[0])

    def straggler_resent(self, attempt_id: int, unit: str, why: str) -> None:
        """The attempt is being cancelled in EE as a straggler; the unit goes back to be sent
        again, first (a new attempt, a new requestId; no try counted)."""
        self.conn.execute("UPDATE attempts SET state = ?, error = ?, updated = ? WHERE id = ?",
                          (EE_CANCELLING, why, time.time(), attempt_id))
        self.conn.execute("UPDATE units SET state = ?, priority = MAX(priority, 1),"
                          " not_before = NULL, updated = ? WHERE id = ?",
                          (PENDING, time.time(), unit))

    # -- what failures taught (core/engine/memory.py) ------------------------------------------

    def memory_failures(self, text: str) -> list[sqlite3.Row]:
        """(tile, period, est_pixels) of the units split because EE ran out of memory."""
        return self.conn.execute(
            "SELECT tile, period, est_pixels FROM units WHERE state = ? AND error LIKE ?",
            (SPLIT, f"%{text}%")).fetchall()

    def largest_exported(self) -> dict[str, int]:
        """Period -> the most estimated pixels of a unit EE exported."""
        return {r[0]: int(r[1]) for r in self.conn.execute(
            f"SELECT period, MAX(est_pixels) FROM units WHERE state IN ({marks(EXPORTED_ON)})"
            " GROUP BY period", EXPORTED_ON)}
