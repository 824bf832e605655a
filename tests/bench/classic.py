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


# -- the realistic benchmark's loops (bench_realistic.py) --------------------------------------
#
# Both run one "pass" over a list of units, as a user's script does, and report what reached
# the disk; a user who finds units missing starts another pass on them by hand (the pass driver
# in bench_realistic.py). Unlike eebatch, neither retries, checks an MD5, or looks at Drive
# space. Files are named like eebatch's (`export.prefix`), so the same tiles give the same files.


@dataclass
class PassResult:
    started_wall: float = 0.0  # first export sent
    finished_wall: float = 0.0  # last file downloaded, or the last check when none came
    exports: int = 0
    task_lists: int = 0  # ee.batch.Task.list() calls (each reads every page)
    downloaded: dict[str, tuple[Path, str]] = field(default_factory=dict)  # unit -> (file, md5)
    errors: dict[str, str] = field(default_factory=dict)  # unit -> EE's error, as listed


class _Script:
    """What both scripts share: export one unit as eebatch's composite recipe would, count the
    active tasks in `str(ee.batch.Task.list())`, and empty the Drive folder into `out_dir`."""

    def __init__(self, url: str, project: str, spec: Any, out_dir: Path) -> None:
        from core.connect import init_ee, make_drive

        init_ee(url, project)
        self.drive = make_drive(url)
        self.spec = spec
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.folder_id: str | None = None
        self.result = PassResult()
        self.units_by_title: dict[str, str] = {}

    def submit(self, row: dict[str, Any]) -> None:
        import ee

        from core.naming import file_prefix
        from core.recipes.build import UnitWork, build, tile_geometry

        spec, export = self.spec, self.spec.export
        work = UnitWork(row["id"], (row["west"], row["south"], row["east"], row["north"]),
                        row["start"], row["end"])
        _, image = build(spec, work)
        prefix = file_prefix(export.prefix, spec.name, row["id"])
        self.units_by_title[f"{prefix}.tif"] = row["id"]
        task = ee.batch.Export.image.toDrive(
            image, description=f"classic_{prefix}", folder=export.folder,
            fileNamePrefix=prefix, region=tile_geometry(spec, work.bounds), scale=export.scale,
            crs=export.crs, maxPixels=export.max_pixels)
        task.start()
        if not self.result.started_wall:
            self.result.started_wall = time.time()
        self.result.exports += 1

    def active(self) -> int:
        import ee

        self.result.task_lists += 1
        listing = str(ee.batch.Task.list())
        return listing.count("RUNNING") + listing.count("READY")

    def download_all(self) -> None:
        """List the folder, GetContentFile each file, Delete it: no size or MD5 check."""
        export = self.spec.export
        if self.folder_id is None:
            found = self.drive.ListFile({"q": f"title = '{export.folder}' and mimeType = "
                                              f"'{FOLDER_MIME}' and trashed = false"}).GetList()
            self.folder_id = found[0]["id"] if found else None
        if self.folder_id is None:
            return
        files = self.drive.ListFile(
            {"q": f"'{self.folder_id}' in parents and trashed = false"}).GetList()
        for f in files:
            path = self.out_dir / f["title"]
            f.GetContentFile(str(path))
            f.Delete()
            unit = self.units_by_title.get(f["title"])
            if unit is not None:
                self.result.downloaded[unit] = (path, f["md5Checksum"])
            self.result.finished_wall = time.time()

    def read_errors(self, units: set[str]) -> None:
        """The error of each failed export of this pass, as the task list shows it."""
        import ee

        by_description = {f"classic_{t[:-4]}": u for t, u in self.units_by_title.items()}
        for op in ee.data.listOperations():
            unit = by_description.get(op.get("metadata", {}).get("description", ""))
            if unit in units and op.get("error"):
                self.result.errors[unit] = op["error"].get("message", "")


def course_loop(url: str, project: str, spec: Any, rows: list[dict[str, Any]], out_dir: Path,
                speed: float, *, max_active: int = 10,
                sleep_seconds: float = 60.0) -> PassResult:
    """The loop as courses write it: for each unit, while 10 or more tasks are RUNNING or READY
    (counted in `str(ee.batch.Task.list())`), sleep a minute and empty the Drive folder; then
    submit the unit's export. Once all are sent, the same until no task is active, and a last
    sweep. `sleep_seconds` is simulated (sleep_seconds / speed on the wall clock)."""
    script = _Script(url, project, spec, out_dir)
    for row in rows:
        while script.active() >= max_active:
            time.sleep(sleep_seconds / speed)
            script.download_all()
        script.submit(row)
    while script.active() > 0:
        time.sleep(sleep_seconds / speed)
        script.download_all()
    script.download_all()
    script.read_errors({r["id"] for r in rows})
    script.result.finished_wall = script.result.finished_wall or time.time()
    return script.result


def submit_all_loop(url: str, project: str, spec: Any, rows: list[dict[str, Any]],
                    out_dir: Path, speed: float, *, check_seconds: float = 600.0) -> PassResult:
    """What users of geemap's export helpers do: submit every export at once (EE queues them),
    look at the task list every `check_seconds` (simulated) until none is active, then
    download everything from the Drive folder."""
    script = _Script(url, project, spec, out_dir)
    for row in rows:
        script.submit(row)
    while script.active() > 0:
        time.sleep(check_seconds / speed)
    script.download_all()
    script.read_errors({r["id"] for r in rows})
    script.result.finished_wall = script.result.finished_wall or time.time()
    return script.result
