"""What the direct-route parts (part_direct_*.py) share: the jobs they run, the emulator they
run them on, and the looks at a session they all take.

A direct job is the batch parts' (1° tiles at 2 km around 44-48°N) on export.route "direct":
a direct request of a southern tile runs out of memory (EE's text) and splits in four.

An auto job needs tiles of two sizes: auto sends the biggest first, and once one fails for
memory it sends every unit within 10 % of it by batch without trying (core/engine), so a job
of near-equal tiles goes all by batch. Its region is two boxes, 1° tiles at 56-60°N and at
40-44°N (a third more pixels each): the northern ones come direct, the southern ones fail a
direct request, move to the batch route, and there pass or (the southernmost) split.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.session import create_session, load_session_spec
from tests.jobs import job_text
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
AUTO_BOXES = ((0.2, 56.0, 3.8, 60.0), (0.2, 40.0, 1.8, 44.0))  # 16 tiles, 8 tiles
# Work of a direct request: ~1,600-1,800 in the north, ~2,300-2,450 in the south.
AUTO_MEMORY = {"direct_memory_limit_pixels": 2000, "memory_limit_pixels": 2400}


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


def new_auto_session(workdir: Path, url: str, months: int, *, name: str = "t",
                     limits: dict[str, Any] | None = None) -> h.Session:
    """A session of an auto job over AUTO_BOXES (h.new_session's job, its region a GeoJSON
    file of two boxes), created as `eebatch new` does."""
    workdir.mkdir(parents=True, exist_ok=True)
    boxes = [[[[w, s], [e, s], [e, n], [w, n], [w, s]]] for w, s, e, n in AUTO_BOXES]
    (workdir / "region.geojson").write_text(json.dumps(
        {"type": "Feature", "properties": {},
         "geometry": {"type": "MultiPolygon", "coordinates": boxes}}))
    path = workdir / f"{name}.toml"
    path.write_text(job_text(
        name, output_dir="out", region={"file": "region.geojson"}, grid={"size": 1.0},
        recipe={"name": "composite"},
        export={"folder": "eebatch-test", "scale": 2000, "route": "auto"},
        limits={"max_tasks": 4, "poll_seconds": 0.2, "max_attempts": 10, "split_depth": 2,
                "download_workers": 3, **(limits or {})},
        emulator=url) + (MONTHS.format(end=_months_on(months)) if months > 1 else ""))
    store, _ = create_session(path)
    try:
        spec = load_session_spec(store)
        return h.Session(store.id, store.path, spec.output_dir, path, spec.export.folder, spec)
    finally:
        store.close()


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
