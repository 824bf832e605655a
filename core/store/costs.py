"""What the job's EE work has cost and what the rest will (core/engine/costs.py): EECU-seconds
as EE reports them per operation (batchEecuUsageSeconds), per unit and for the job, learned per
pixel from the units that finished. Mixed into Store (one connection, one owner of the schema).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from core.states import BACKOFF, EE_LIVE, EE_SUCCEEDED, PENDING
from core.store.units import marks


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
        live = ("submitting", *EE_LIVE)
        n, pixels, live_used = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(u.est_pixels), 0), COALESCE(SUM(a.eecu_seconds), 0)"
            f" FROM attempts a JOIN units u ON u.id = a.unit WHERE a.state IN ({marks(live)})",
            live).fetchone()
        per_pixel = ok_eecu / ok_pixels if ok_eecu and ok_pixels else None
        return Spend(float(used), per_pixel, int(n), int(pixels), float(live_used))

    def pixels_to_send(self) -> int:
        """Estimated pixels of the units not sent yet (pending or backed off)."""
        return int(self.conn.execute(
            "SELECT COALESCE(SUM(est_pixels), 0) FROM units WHERE state IN (?, ?)",
            (PENDING, BACKOFF)).fetchone()[0])
