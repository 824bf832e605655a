"""What "User memory limit exceeded." teaches admission, so no EE slot is spent on a failure
that can be foreseen (issue 15's benchmark: each costs 300 s or more of a slot).

Two lessons, both read back from the store at a start (the split units keep EE's message):

* the same tile, in any other period or batch: what made it run out of memory (its content,
  where it lies) is there in every period;
* a bigger tile of the same period: one with more pixels than the smallest that ran out of
  memory, *and* more than the largest that succeeded. Tiles of one size differ in content, so
  a failure says nothing of its equals (splitting every tile as big as a failed one split 83
  tiles where 15 needed it, +22 EE hours, in the benchmark).
"""

from __future__ import annotations

from typing import Any

from core.store import Store

MEMORY_TEXT = "User memory limit exceeded"


class MemoryLessons:
    def __init__(self, store: Store) -> None:
        self.failed_tiles: set[str] = set()
        self.fewest_failed: dict[str, int] = {}  # period -> pixels
        for row in store.memory_failures(MEMORY_TEXT):
            self._failed(row)
        self.most_succeeded = store.largest_exported()  # period -> pixels

    def failed(self, unit: Any) -> None:
        """`unit` (a units row) ran out of memory in EE."""
        self._failed(unit)

    def _failed(self, unit: Any) -> None:
        self.failed_tiles.add(unit["tile"])
        period, pixels = unit["period"], int(unit["est_pixels"])
        self.fewest_failed[period] = min(pixels, self.fewest_failed.get(period, pixels))

    def succeeded(self, unit: Any) -> None:
        period, pixels = unit["period"], int(unit["est_pixels"])
        self.most_succeeded[period] = max(pixels, self.most_succeeded.get(period, 0))

    def foresee(self, unit: Any) -> str | None:
        """Why `unit` will run out of memory too, or None."""
        if unit["tile"] in self.failed_tiles:
            return "foreseen: this tile ran out of memory in EE in another period or batch"
        fewest = self.fewest_failed.get(unit["period"])
        pixels = int(unit["est_pixels"])
        if fewest is None or pixels <= fewest or pixels <= self.most_succeeded.get(
                unit["period"], 0):
            return None
        return (f"foreseen: a tile of {fewest:,} pixels of this period ran out of memory in EE, "
                f"this one has {pixels:,}, and none as big has succeeded")
