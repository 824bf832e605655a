"""What the direct-route parts (part_direct_*.py) share: the jobs they run, the emulator they
run them on, and the looks at a session they all take.

The jobs are the batch parts' (1° tiles at 2 km around 44-48°N), on export.route "direct" or
"auto". The emulator's memory limits cut them as a real job is cut: a direct request of a
southern tile runs out of memory (EE's text), so on the direct route it splits in four; on
auto it moves to the batch route, whose task has the memory for some of them and splits the
rest.
"""

from __future__ import annotations

from typing import Any

from tests.reliability import harness as h

MONTHS = '\n[time]\nstart = "2023-06-01"\nend = "{end}"\nstep = "1 month"\n'
QUICK_BBOX = "[0.2, 44, 1.8, 48]"  # 8 tiles
FULL_BBOX = "[0.2, 43, 3.8, 48]"  # 20 tiles
# Work (pixels x content) of a tile's direct request is ~2,100-2,300 here, more to the
# south; above DIRECT_MEMORY a request fails "User memory limit exceeded.", above
# BATCH_MEMORY an export does (auto's units between the two go by batch unsplit).
DIRECT_MEMORY = 2200
BATCH_MEMORY = 2250
PIXELS = "ee image.computePixels"  # the emulator's name of the direct route's requests


def job(route: str, bbox: str, months: int, **more: Any) -> dict[str, Any]:
    """new_session's keywords of a job of `months` months over `bbox` by `route`."""
    return {"bbox": bbox, "size": 1.0, "scale": 2000, "max_tasks": 4, "split_depth": 2,
            "max_attempts": 10, "export": {"route": route},
            **({"extra": MONTHS.format(end=_months_on(months))} if months > 1 else {}),
            **more}


def _months_on(months: int) -> str:
    """The first day `months` months after 2023-06-01."""
    n = 5 + months  # months since January 2023
    return f"{2023 + n // 12}-{n % 12 + 1:02d}-01"


def emulator_config(seed: int, **more: Any) -> dict[str, Any]:
    """The emulator the direct parts run on (h.emulator's keywords)."""
    return {"speed": 20.0, "task_overhead_seconds": 20.0, "slots": 4, "seed": seed,
            "memory_limit_pixels": BATCH_MEMORY, "direct_memory_limit_pixels": DIRECT_MEMORY,
            **more}


def routes(session: h.Session) -> dict[str, int]:
    """Units (split ones left out) per route."""
    return {r[0]: r[1] for r in h.rows(session, "SELECT route, COUNT(*) FROM units WHERE"
                                                " state != 'split' GROUP BY route")}


def moved(session: h.Session) -> int:
    """Units auto moved from the direct route to batch (the worker logs each move)."""
    return h.scalar(session, "SELECT COUNT(DISTINCT unit) FROM events WHERE message LIKE"
                             " 'EE could not compute it directly%'") or 0


def split_direct(session: h.Session) -> int:
    """Units split on the direct route."""
    return h.scalar(session, "SELECT COUNT(*) FROM units WHERE state = 'split' AND"
                             " route = 'direct'") or 0


def tries(session: h.Session) -> dict[str, int]:
    """Each done direct unit's tries, as the session counts them (limits.max_attempts)."""
    return {r[0]: r[1] for r in h.rows(session, "SELECT id, attempts FROM units WHERE"
                                                " route = 'direct' AND state = 'done'")}
