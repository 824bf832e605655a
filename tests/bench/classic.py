"""The classic loop eebatch replaces, written honestly with the real clients.

This is the script people run today: start exports until 10 tasks are
RUNNING or READY — counted in `str(ee.batch.Task.list())`, the idiom of countless notebooks —
sleep a minute, list the Drive folder with pydrive2, download each file with GetContentFile,
one after the other, and Delete it. No requestIds of its own, no MD5 check, no parallelism.

It builds the very same ee.Image per unit as eebatch's composite recipe (core.recipes.build),
so both loops give the emulator identical work; only the control loop differs.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FOLDER_MIME = "application/vnd.google-apps.folder"


@dataclass
class ClassicResult:
    started_wall: float = 0.0  # first export sent
    finished_wall: float = 0.0  # last file downloaded and deleted
    iterations: int = 0
    exports: int = 0
    files: int = 0
    bytes: int = 0
    download_seconds: float = 0.0
    per_iteration_listing: list[int] = field(default_factory=list)


def classic_queue_loop(url: str, project: str, spec: Any, units: list[Any], out_dir: Path,
                       speed: float, *, max_active: int = 10,
                       sleep_seconds: float = 60.0) -> ClassicResult:
    """Run every unit the classic way. `sleep_seconds` is simulated: the loop sleeps
    sleep_seconds / speed on the wall clock, like the emulator's queue runs `speed` times
    faster than real time."""
    import ee

    from core.connect import init_ee, make_drive
    from core.recipes.build import UnitWork, build, tile_geometry

    init_ee(url, project)
    drive = make_drive(url)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = ClassicResult()
    todo = deque(units)
    folder_id: str | None = None
    export = spec.export
    while True:
        result.iterations += 1
        listing = str(ee.batch.Task.list())
        active = listing.count("RUNNING") + listing.count("READY")
        while todo and active < max_active:
            row = todo.popleft()
            work = UnitWork(row["id"], (row["west"], row["south"], row["east"], row["north"]),
                            row["start"], row["end"])
            _, image = build(spec, work)
            task = ee.batch.Export.image.toDrive(
                image, description=f"classic_{row['id']}", folder=export.folder,
                fileNamePrefix=f"{spec.name}_{row['id']}",
                region=tile_geometry(spec, work.bounds), scale=export.scale, crs=export.crs,
                maxPixels=export.max_pixels)
            task.start()
            if not result.started_wall:
                result.started_wall = time.time()
            result.exports += 1
            active += 1
        finished = not todo and active == 0  # every export has ended: one last sweep
        time.sleep(sleep_seconds / speed)
        if folder_id is None:
            found = drive.ListFile({"q": f"title = '{export.folder}' and mimeType = "
                                         f"'{FOLDER_MIME}' and trashed = false"}).GetList()
            folder_id = found[0]["id"] if found else None
        files = [] if folder_id is None else drive.ListFile(
            {"q": f"'{folder_id}' in parents and trashed = false"}).GetList()
        result.per_iteration_listing.append(len(files))
        for f in files:
            path = out_dir / f["title"]
            start = time.perf_counter()
            f.GetContentFile(str(path))
            result.download_seconds += time.perf_counter() - start
            f.Delete()
            result.files += 1
            result.bytes += path.stat().st_size
            path.unlink()  # keep the benchmark's disk use bounded (not timed above)
            result.finished_wall = time.time()
        if finished:
            return result


def serial_downloads(drive: Any, folder_id: str, out_dir: Path,
                     limit: int | None = None) -> tuple[int, int, float]:
    """The classic download step on its own: list the folder, then GetContentFile each file
    one after the other. Returns (files, bytes, seconds). Files are removed locally after
    each download (disk), never checked (the classic loop does not)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    files = drive.ListFile({"q": f"'{folder_id}' in parents and trashed = false"}).GetList()
    files = sorted(files, key=lambda f: f["title"])[:limit]
    total = 0
    for f in files:
        path = out_dir / f["title"]
        f.GetContentFile(str(path))
        total += path.stat().st_size
        path.unlink()
    return len(files), total, time.perf_counter() - start
