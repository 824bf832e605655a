"""What the reliability parts share beyond the shape of a result (common.py): an emulator in
the part's process with a ledger of every file EE delivered into Drive and of every image its
computePixels computed (the direct route), a session of a job on it, a headless worker in its
own process (`eebatch run SESSION --headless`) to start, kill -9 and restart, read-only looks
at the session file, and the invariants a finished job must hold, read from the emulator's
records and the output dir.

The signatures here are stable: other parts import them.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.emulator.app import Emulator
from core.emulator.config import EmulatorConfig
from core.naming import file_prefix
from core.routes import PixelGrid, chunk_side, chunks, unit_grid
from core.session import load_session_spec
from tests.engine.conftest import FAST, admin, make_session, task_unit
from tests.reliability.common import Result

ROOT = Path(__file__).parents[2]
LIVE = ("PENDING", "RUNNING", "CANCELLING")  # EE task states of a task still going
DATA_SUFFIXES = (".tif", ".csv")  # what the exports write (the products add .vrt, .png, ...)


def use_home(workdir: Path) -> Path:
    """Sessions, logs and credentials of this part under `workdir/home` (never the user's
    own), for this process and every worker it starts."""
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["EEBATCH_HOME"] = str(home)
    return home


# -- the emulator and its ledger --------------------------------------------------------------

@dataclass(frozen=True)
class Served:
    """One file EE wrote into Drive, as the emulator stored it."""

    drive_id: str
    title: str
    size: int
    md5: str
    folder: str = ""  # the export folder's name, as the export gave it


# A request's grid as both sides name it: (crs, x0, y0, pixel width, pixel height, width,
# height), the floats rounded so the engine's and the emulator's spellings meet.
GridKey = tuple[str, float, float, float, float, int, int]


def grid_key(crs: str, x0: float, y0: float, dx: float, dy: float, width: int,
             height: int) -> GridKey:
    return (crs.upper(), round(x0, 9), round(y0, 9), round(dx, 12), round(abs(dy), 12),
            int(width), int(height))


def request_key(grid: PixelGrid) -> GridKey:
    """The key of the direct request the engine sends for `grid` (core.routes)."""
    a, _, c, _, e, f = grid.transform
    return grid_key(grid.crs, c, f, a, e, grid.width, grid.height)


_DATE = re.compile(r"'(\d{4}-\d{2}-\d{2})")  # a date in an expression's repr


@dataclass(frozen=True)
class Computed:
    """One image the emulator's computePixels computed and answered with (before any
    injected fault touched the bytes on their way): its grid, the dates its expression names
    (a unit's period: the months of a job share their grids), its size and MD5."""

    grid: GridKey
    dates: frozenset[str]
    size: int
    md5: str


class Ledger:
    """Every file the emulator's EE delivered into its Drive, recorded as it is stored, and
    every image its computePixels computed: what the emulator served, even after the file is
    deleted from Drive or the answer was cut or corrupted on the wire."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, Served] = {}
        self._pixels: dict[GridKey, list[Computed]] = {}
        self._answers = 0

    def add(self, served: Served) -> None:
        with self._lock:
            self._files[served.drive_id] = served

    def files(self) -> dict[str, Served]:
        with self._lock:
            return dict(self._files)

    def add_pixels(self, computed: Computed) -> None:
        with self._lock:
            self._pixels.setdefault(computed.grid, []).append(computed)
            self._answers += 1

    def answers(self) -> int:
        """How many computePixels answers the emulator computed so far (each is recorded
        before it is sent)."""
        with self._lock:
            return self._answers

    def pixels(self) -> dict[GridKey, list[Computed]]:
        """Every computePixels answer, by its grid (a grid asked again has several)."""
        with self._lock:
            return {k: list(v) for k, v in self._pixels.items()}


def attach_ledger(emu: Emulator) -> Ledger:
    """Record every file the emulator's EE adds to its Drive and every image its
    computePixels computes (the hooks EE calls, wrapped)."""
    ledger = Ledger()
    drive = emu.ee.drive
    add_file, ensure_folder = drive.add_file, drive.ensure_export_folder
    folders: dict[str, str] = {}  # folder id -> the name an export gave

    def named_folder(name: str) -> str:
        folder_id = ensure_folder(name)
        folders[folder_id] = name
        return folder_id

    def recording(parent_id: str, title: str, src: Path, mime_type: str) -> Any:
        info = add_file(parent_id, title, src, mime_type)
        ledger.add(Served(info.id, info.title, info.size, info.md5 or "",
                          folders.get(parent_id, "")))
        return info

    drive.ensure_export_folder = named_folder  # type: ignore[method-assign]
    drive.add_file = recording  # type: ignore[method-assign]

    direct = emu.ee.direct
    run = direct.run

    def computing(project: str, job: Any, compute: Any) -> tuple[bytes, str]:
        # DirectModel.run returns the bytes the HTTP layer then sends (and a fault may cut).
        data, mime = run(project, job, compute)
        g = job.grid
        ledger.add_pixels(Computed(grid_key(g.crs, g.x0, g.y0, g.dx, g.dy, g.width, g.height),
                                   frozenset(_DATE.findall(repr(job.spec.core))), len(data),
                                   hashlib.md5(data, usedforsecurity=False).hexdigest()))
        return data, mime

    direct.run = computing  # type: ignore[method-assign]
    return ledger


@contextmanager
def emulator(**config: Any) -> Iterator[tuple[Emulator, Ledger]]:
    """An emulator in this process (the engine tests' FAST knobs, then `config`) and its
    ledger; stopped at the end."""
    emu = Emulator(EmulatorConfig(**{**FAST.__dict__, **config}))
    ledger = attach_ledger(emu)
    emu.start()
    try:
        yield emu, ledger
    finally:
        emu.stop()


def state(url: str) -> dict[str, Any]:
    return admin(url, "/_emulator/state")


def faults(url: str, specs: list[dict[str, Any]]) -> None:
    """Add faults (core/emulator/faults.py): each fires `count` times after `skip`."""
    if specs:
        admin(url, "/_emulator/faults", specs)  # type: ignore[arg-type]


def clear_faults(url: str) -> None:
    admin(url, "/_emulator/faults", method="DELETE")


def outage(url: str, route: str, seconds: float, status: int = 503) -> None:
    admin(url, "/_emulator/outage", {"route": route, "seconds": seconds, "status": status})


def throttle(url: str, per_connection: float | None = None, total: float | None = None) -> None:
    admin(url, "/_emulator/throttle", {"per_connection": per_connection, "total": total})


# -- a session --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Session:
    id: str
    path: Path  # the session's SQLite file
    output_dir: Path
    job: Path
    folder: str = ""  # the Drive folder its exports write to
    spec: Any = field(default=None, compare=False, repr=False)  # its JobSpec


def new_session(workdir: Path, url: str, **job: Any) -> Session:
    """A session of a job on the emulator at `url`, created as `eebatch new` does; `job` is
    tests.engine.conftest.make_session's keywords (bbox, size, scale, max_tasks, split_depth,
    max_attempts, folder, recipe, extra, export, limits)."""
    workdir.mkdir(parents=True, exist_ok=True)
    store = make_session(workdir, url, **job)
    try:
        spec = load_session_spec(store)
        name = job.get("name", "t")
        return Session(store.id, store.path, spec.output_dir, workdir / f"{name}.toml",
                       spec.export.folder, spec)
    finally:
        store.close()


def rows(session: Session, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    """A read of the session file on a connection of its own (a worker may be writing)."""
    conn = sqlite3.connect(session.path, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def scalar(session: Session, sql: str, args: tuple[Any, ...] = ()) -> Any:
    found = rows(session, sql, args)
    return found[0][0] if found else None


def counts(session: Session) -> dict[str, int]:
    return {r[0]: r[1] for r in rows(session, "SELECT state, COUNT(*) FROM units GROUP BY state")}


# -- the worker -------------------------------------------------------------------------------

def start_worker(session: Session, log: Path, every: float = 1.0) -> subprocess.Popen[bytes]:
    """`eebatch run SESSION --headless` in its own process (and process group), its output
    appended to `log`."""
    out = log.open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "tui", "run", session.id, "--headless", "--every",
             str(every)], cwd=ROOT, env={**os.environ}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    finally:
        out.close()


def kill9(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the worker (it gets no chance to clean up) and reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def run_to_end(session: Session, log: Path, timeout: float) -> int | None:
    """A worker run to its own end: its exit code, or None when it was still running after
    `timeout` seconds (then killed)."""
    proc = start_worker(session, log)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill9(proc)
        return None


def wait_for(condition: Callable[[], Any], timeout: float,
             proc: subprocess.Popen[bytes] | None = None, every: float = 0.02) -> bool:
    """Poll `condition` until it is true (True), the deadline passes or `proc` exits
    (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc is not None and proc.poll() is not None:
            return bool(condition())
        time.sleep(every)
    return False


# -- the invariants ---------------------------------------------------------------------------

_ATTEMPT = re.compile(r"_a(\d+)$")


def job_tasks(url: str, session: Session) -> list[dict[str, Any]]:
    """The emulator's EE tasks of this session (by the description eebatch gives them)."""
    return [t for t in state(url)["ee"]["tasks"]
            if t["description"].startswith(f"eebatch_{session.id}_")]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _short(items: Any, n: int = 5) -> str:
    items = list(items)
    more = f" … and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(str(i) for i in items[:n]) + more


def check_finished_job(result: Result, url: str, ledger: Ledger, session: Session) -> None:
    """The invariants of a job that ran to its end, whatever happened on the way, each read
    from the emulator's records (its tasks, its Drive, the ledger of what it served) and the
    output dir; the session file says only which units the job has, by which route each
    went, and where files went. A unit on the direct route (core/routes.py) has no export
    and its files never were in Drive: each is checked against what computePixels computed
    for the unit's own grid (check_direct_files)."""
    everything = state(url)
    if everything["ee"]["tasks_total"] > len(everything["ee"]["tasks"]):
        result.skipped += (" the emulator lists only its newest "
                           f"{len(everything['ee']['tasks'])} tasks;")
    tasks = [t for t in everything["ee"]["tasks"]
             if t["description"].startswith(f"eebatch_{session.id}_")]
    unit_rows = rows(session, "SELECT id, state, route FROM units")
    units = {r["id"]: r["state"] for r in unit_rows}
    direct = {r["id"] for r in unit_rows if r["route"] == "direct"}

    unsettled = {u: s for u, s in units.items() if s not in ("done", "split")}
    result.check("every unit done (split ones by their parts)", not unsettled,
                 _short(f"{u}: {s}" for u, s in unsettled.items()))

    sent: dict[str, int] = {}
    succeeded: dict[str, int] = {}
    for t in tasks:
        sent[t["description"]] = sent.get(t["description"], 0) + 1
        if t["state"] == "SUCCEEDED":
            unit = task_unit(t["description"])
            succeeded[unit] = succeeded.get(unit, 0) + 1
    twice = {d: n for d, n in sent.items() if n > 1}
    result.check("no attempt exported twice (one EE task per attempt)", not twice,
                 _short(f"{d} x{n}" for d, n in twice.items()))
    done = [u for u, s in units.items() if s == "done"]
    wrong = {u: succeeded.get(u, 0) for u in done
             if succeeded.get(u, 0) != (0 if u in direct else 1)}
    wrong.update({u: n for u, n in succeeded.items() if units.get(u) != "done"})
    result.check("exactly one SUCCEEDED export per done unit, none for others" if not direct
                 else "exactly one SUCCEEDED export per done batch unit, none for direct"
                 " units or others", not wrong,
                 _short(f"{u}: {n} SUCCEEDED" for u, n in wrong.items()))

    live = [f"{t['description']} {t['state']}" for t in tasks if t["state"] in LIVE]
    result.check("no task of the job left in EE", not live, _short(live))

    # The files EE delivered for this session's exports (other sessions may share the emulator).
    served = {d: s for d, s in ledger.files().items() if s.folder == session.folder}
    files = rows(session, "SELECT unit, drive_id, title, size, md5, local_path, state"
                          " FROM files")
    fetched = [f for f in files if f["drive_id"].startswith("direct:")]
    exported = [f for f in files if not f["drive_id"].startswith("direct:")]
    bad: list[str] = []
    for f in exported:
        local = Path(f["local_path"]) if f["local_path"] else None
        origin = served.get(f["drive_id"])
        if origin is None:
            bad.append(f"{f['title']}: not a file EE delivered into {session.folder}")
        elif local is None or not local.exists():
            bad.append(f"{f['title']}: no local file ({f['state']})")
        elif md5(local) != origin.md5 or local.stat().st_size != origin.size:
            bad.append(f"{local.name}: md5 {md5(local)}, served {origin.md5}")
    if exported or len(direct) < len(units):
        result.check("every local file's MD5 and size equal what the emulator served",
                     bool(exported) and not bad,
                     _short(bad) if exported else "no files recorded")
    if direct or fetched:
        check_direct_files(result, ledger, session, fetched)

    recorded = {f["drive_id"] for f in files}
    unclaimed = [s.title for d, s in served.items() if d not in recorded]
    result.check("every file EE delivered was downloaded", not unclaimed, _short(unclaimed))
    local_paths = {Path(f["local_path"]).resolve() for f in files if f["local_path"]}
    stray = [p.name for p in session.output_dir.rglob("*") if p.is_file()
             and p.suffix in DATA_SUFFIXES and not p.name.startswith("mosaic")
             and not p.name.startswith("table") and p.name != "manifest.csv"
             and p.resolve() not in local_paths]
    result.check("no output file the job did not record", not stray, _short(stray))

    parts = [p.name for p in session.output_dir.rglob("*.part")]
    result.check("no *.part left in the output dir", not parts, _short(parts))

    in_drive = [f["title"] for f in everything["drive"]["files"] if f["id"] in served]
    result.check("Drive holds none of the job's files (trash included)", not in_drive,
                 _short(in_drive))

    result.numbers.update({
        "units": len(units), "units_split": sum(1 for s in units.values() if s == "split"),
        "ee_tasks": len(tasks),
        "ee_tasks_failed": sum(1 for t in tasks if t["state"] == "FAILED"),
        "files": len(files),
    })
    if direct:
        result.numbers["units_direct"] = sum(1 for u in direct if units[u] != "split")
        result.numbers["files_direct"] = len(fetched)


def direct_requests(session: Session, unit: str, bounds: tuple[float, float, float, float]
                    ) -> dict[str, GridKey]:
    """The requests the direct route sends for an image unit: file title -> its grid, the
    unit's batch-export grid cut as core.routes cuts it."""
    spec = session.spec
    grid = unit_grid(spec, bounds)
    prefix = file_prefix(spec.export.prefix, spec.name, unit)
    return {c.title: request_key(c.grid) for c in chunks(grid, chunk_side(spec), prefix)
            if c.grid is not None}


def check_direct_files(result: Result, ledger: Ledger, session: Session,
                       fetched: list[sqlite3.Row]) -> None:
    """A done direct unit has one file per request of its grid, each in place, and each
    one's bytes are what the emulator's computePixels computed for that request's grid (the
    ledger), not what reached the worker: an answer cut or corrupted on the wire must have
    been refused and asked again."""
    done = {r["id"]: r for r in rows(
        session, "SELECT id, west, south, east, north, start, end FROM units WHERE"
        " route = 'direct' AND state = 'done'")}
    by_unit: dict[str, list[sqlite3.Row]] = {}
    for f in fetched:
        by_unit.setdefault(f["unit"], []).append(f)
    computed = ledger.pixels()
    shape: list[str] = []
    wrong: list[str] = []
    for unit, row in sorted(done.items()):
        want = direct_requests(session, unit, (row["west"], row["south"], row["east"],
                                               row["north"]))
        period = {row["start"], row["end"]} - {None}
        have = [f["title"] for f in by_unit.get(unit, [])]
        if sorted(have) != sorted(want):
            shape.append(f"{unit}: files {sorted(have)}, requests {sorted(want)}")
        for f in by_unit.get(unit, []):
            local = Path(f["local_path"]) if f["local_path"] else None
            if local is None or not local.exists():
                shape.append(f"{f['title']}: no local file ({f['state']})")
                continue
            answers = {(c.md5, c.size) for c in computed.get(want.get(f["title"], ()), [])
                       if period <= c.dates}
            got = (md5(local), local.stat().st_size)
            if len(answers) > 1:
                wrong.append(f"{f['title']}: the emulator computed {len(answers)} different"
                             " images for one grid and period")
            elif got not in answers:
                wrong.append(f"{local.name}: md5 {got[0]} ({got[1]} bytes), computed "
                             + (f"{next(iter(answers))[0]}" if answers else "never"))
            elif f["md5"] != got[0] or f["size"] != got[1]:
                wrong.append(f"{local.name}: the session says md5 {f['md5']}, the file is"
                             f" {got[0]}")
    strays = sorted(set(by_unit) - set(done))
    shape += [f"{u}: files recorded for a unit not done by the direct route" for u in strays]
    result.check("every direct unit has one local file per request of its grid",
                 bool(done) and not shape, _short(shape) if done else "no direct unit done")
    result.check("every direct file's bytes are what computePixels computed for its grid",
                 bool(fetched) and not wrong, _short(wrong) if fetched else "no direct files")


def attempt_number(description: str) -> int:
    """The attempt number in one of eebatch's task descriptions (`..._aN`)."""
    match = _ATTEMPT.search(description)
    return int(match.group(1)) if match else 0


def tail(log: Path, n: int = 1500) -> str:
    """The end of a log file (a worker's output), for a failed check's evidence."""
    try:
        return log.read_text(errors="replace")[-n:]
    except FileNotFoundError:
        return ""
