"""Resources: a Drive with room for less than one output, a full local output disk, and tiles
too big for EE's memory split down to split_depth (and failed, saying so, past it).

What must hold: a job that cannot go on waits and says why (in the worker's status, which the
dashboard and the headless progress line show, and in its log), fails no unit and sends no
export in a loop meanwhile, and finishes by itself once there is room; a tile over EE's limit
is cut into four until its parts fit or split_depth is reached, the parts tile it exactly, and
a part still too big at split_depth fails with EE's message and the depth. Everything else is
the harness's invariants of a finished job, read from the emulator and the disk.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.connect import make_drive
from core.emulator.app import Emulator
from tests.reliability.common import Result
from tests.reliability.harness import (
    Ledger,
    Session,
    check_finished_job,
    emulator,
    job_tasks,
    kill9,
    new_session,
    rows,
    run_to_end,
    scalar,
    start_worker,
    state,
    throttle,
    use_home,
    wait_for,
)

TIMEOUT = 180.0
DRIVE_FULL_LIKE = "The user's Drive storage quota has been exceeded%"
MEMORY = "User memory limit exceeded"
TIMED_OUT = "Computation timed out"


def _status(session: Session) -> dict[str, Any]:
    text = scalar(session, "SELECT status FROM worker_status")
    return json.loads(text) if text else {}


def _events(session: Session) -> list[str]:
    return [r["message"] for r in rows(session, "SELECT message FROM events ORDER BY id")]


def _finish(worker: subprocess.Popen[bytes]) -> int | None:
    try:
        return worker.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        kill9(worker)
        return None


def _merge(result: Result, finished: Result, where: str) -> None:
    """The harness's invariants of a finished job as one check (its failures named)."""
    bad = [f"{c.name}: {c.detail}" for c in finished.checks if not c.held]
    result.check(f"{where}: the finished job's {len(finished.checks)} invariants hold (every "
                 "unit done, one export per attempt, MD5s as served, nothing left in Drive or "
                 "as *.part)", not bad, "; ".join(bad[:3]))


# -- Drive with room for less than one output --------------------------------------------------

def _output_size(emu: Emulator, ledger: Ledger, workdir: Path) -> int:
    """What one unit's output weighs on this emulator: a one-unit job run first."""
    probe = new_session(workdir / "probe", emu.url, name="probe", bbox="[0, 0, 0.5, 0.5]",
                        folder="probe")
    run_to_end(probe, workdir / "probe" / "worker.log", TIMEOUT)
    return max((s.size for s in ledger.files().values()), default=0)


def _drive_too_small(result: Result, quick: bool, seed: int, workdir: Path) -> None:
    quota = 2_000_000
    rooms = ["half an output"] if quick else ["half an output", "half the estimate"]
    with emulator(drive_quota=quota, seed=seed) as (emu, ledger):
        (workdir / "probe").mkdir(parents=True)
        size = _output_size(emu, ledger, workdir)
        drive = make_drive(emu.url)
        for room in rooms:
            folder = workdir / room.replace(" ", "-")
            folder.mkdir(parents=True)
            session = new_session(folder, emu.url, name="d", bbox="[0, 0, 1, 1]",
                                  max_attempts=2, folder=room.replace(" ", "-"))  # 4 units
            estimate = min(r["est_bytes"] for r in rows(session, "SELECT est_bytes FROM units"))
            free = size // 2 if room == "half an output" else estimate // 2
            used = int(state(emu.url)["drive"]["quota"]["used"])
            thesis = drive.CreateFile({"title": "thesis.pdf"})
            thesis.content = io.BytesIO(os.urandom(quota - used - free))
            thesis.Upload()
            _drive_wait(result, emu, ledger, session, folder, room, thesis)
        result.numbers["output_bytes"] = size


def _drive_wait(result: Result, emu: Emulator, ledger: Ledger, session: Session, folder: Path,
                room: str, thesis: Any) -> None:
    where = f"Drive with room for {room}"
    log = folder / "worker.log"
    worker = start_worker(session, log, every=0.5)
    said = wait_for(lambda: "waiting for Drive space" in (_status(session).get("waiting") or ""),
                    TIMEOUT, worker)
    result.check(f"{where}: the worker waits and its status says why", said,
                 f"status {_status(session).get('waiting')!r}; {log.read_text()[-300:]}")
    event = next((e for e in _events(session) if "waiting for Drive space" in e), "")
    result.check(f"{where}: its log says what to do", "free space in Drive or raise "
                 "drive_budget" in event, repr(event))
    full = scalar(session, "SELECT COUNT(*) FROM attempts WHERE error LIKE ?", (DRIVE_FULL_LIKE,))
    # No loop: a few more seconds of polls (0.2 s each; the status is written every second)
    # send no other export into the full Drive.
    later = time.time() + 3
    wait_for(lambda: (scalar(session, "SELECT updated FROM worker_status") or 0) > later,
             TIMEOUT, worker)
    again = scalar(session, "SELECT COUNT(*) FROM attempts WHERE error LIKE ?",
                   (DRIVE_FULL_LIKE,))
    failed = scalar(session, "SELECT COUNT(*) FROM units WHERE state = 'failed'")
    limit = 0 if room == "half the estimate" else 4 + 1  # the first wave, and one alone
    result.check(f"{where}: no unit failed and no export sent in a loop while it waits",
                 failed == 0 and again == full <= limit,
                 f"{failed} failed; {full} then {again} exports failed for Drive full "
                 f"(at most {limit})")
    shown = wait_for(lambda: "waiting for Drive space" in log.read_text("utf-8", "replace"),
                     TIMEOUT, worker)
    result.check(f"{where}: the headless progress line says it too", shown,
                 log.read_text()[-300:])
    thesis.Delete()  # the user makes room
    code = _finish(worker)
    result.check(f"{where}: the job finishes by itself once there is room (exit 0)", code == 0,
                 f"exit {code}: {log.read_text()[-300:]}")
    result.check(f"{where}: its log says Drive has room again",
                 "Drive has room again: exports resume" in _events(session))
    finished = Result("resources", "")
    check_finished_job(finished, emu.url, ledger, session)
    _merge(result, finished, where)


# -- a full local disk -------------------------------------------------------------------------

@contextmanager
def small_disk(path: Path, size: str) -> Iterator[str]:
    """A tmpfs of `size` at `path`, or the reason there is none here (yielded as text, empty
    when mounted)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        yield ("a full disk needs a small tmpfs, which only root can mount here (eebatch has "
               "no setting that lowers its disk-space guard to test it without one)")
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        yield f"cannot mount a small tmpfs here: {done.stderr.strip()}"
        return
    try:
        yield ""
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _disk_full(result: Result, quick: bool, seed: int, workdir: Path) -> None:
    with emulator(seed=seed) as (emu, ledger):
        folder = workdir / "disk"
        folder.mkdir(parents=True)
        session = new_session(folder, emu.url, name="k", bbox="[0, 0, 2, 1]", max_tasks=2,
                              folder="disk")  # 8 units
        with small_disk(session.output_dir, "16m") as why_not:
            if why_not:
                result.skipped += f" full disk: {why_not};"
                return
            out = session.output_dir
            filler = out / "someone-elses-big-file"
            filler.write_bytes(bytes(shutil.disk_usage(out).free - 512 * 1024))
            log = folder / "worker.log"
            worker = start_worker(session, log, every=0.5)
            said = wait_for(lambda: "output disk full" in (_status(session).get("waiting")
                                                            or ""), TIMEOUT, worker)
            result.check("full disk: the worker waits and its status says why", said,
                         f"{_status(session).get('waiting')!r}; {log.read_text()[-300:]}")
            dry = wait_for(lambda: scalar(session, "SELECT COUNT(*) FROM units WHERE state IN "
                                                   "('submitting', 'queued', 'running')") == 0,
                           TIMEOUT, worker)
            states = {r[0]: r[1] for r in rows(
                session, "SELECT state, COUNT(*) FROM units GROUP BY state")}
            result.check("full disk: nothing more is exported, nothing fails",
                         dry and not states.get("failed") and states.get("pending", 0) >= 4,
                         str(states))
            sent = len(job_tasks(emu.url, session))
            result.check("full disk: the headless progress line says why",
                         wait_for(lambda: "output disk full" in log.read_text("utf-8", "replace"),
                                  TIMEOUT, worker), log.read_text()[-300:])
            filler.unlink()  # the other program's file goes
            code = _finish(worker)
            result.check("full disk: the job finishes by itself once there is room (exit 0)",
                         code == 0, f"exit {code}: {log.read_text()[-300:]}")
            result.check("full disk: its log says the disk has room again",
                         "the output disk has room again: downloads and exports resume"
                         in _events(session))
            finished = Result("resources", "")
            check_finished_job(finished, emu.url, ledger, session)
            _merge(result, finished, "full disk")
            result.numbers["disk_exports_while_full"] = sent
            if not quick:
                _disk_fills_mid_download(result, emu, ledger, folder)


def _disk_fills_mid_download(result: Result, emu: Emulator, ledger: Ledger,
                             folder: Path) -> None:
    """Another program fills the disk while files download: no try is spent, none fails."""
    session = new_session(folder / "mid", emu.url, name="m", bbox="[0, 0, 1, 0.5]",
                          max_attempts=2, folder="disk-mid")
    with small_disk(session.output_dir, "16m") as why_not:
        if why_not:
            return
        throttle(emu.url, per_connection=100_000)  # ~4 s a file
        log = folder / "mid" / "worker.log"
        worker = start_worker(session, log, every=0.5)
        wait_for(lambda: scalar(session, "SELECT COUNT(*) FROM files WHERE state = "
                                         "'downloading'"), TIMEOUT, worker)
        filler = session.output_dir / "someone-elses-big-file"
        try:
            with open(filler, "wb") as fh:
                while True:
                    fh.write(bytes(256 * 1024))
                    fh.flush()
        except OSError:
            pass  # the disk is full
        said = wait_for(lambda: "output disk full" in (_status(session).get("waiting") or ""),
                        TIMEOUT, worker)
        throttle(emu.url)
        filler.unlink()
        code = _finish(worker)
        tries = scalar(session, "SELECT MAX(download_failures) FROM units")
        result.check("disk filled mid-download: it waits, costs no try, and finishes",
                     said and code == 0 and tries == 0, f"said {said}, exit {code}, "
                     f"{tries} download failures")
        finished = Result("resources", "")
        check_finished_job(finished, emu.url, ledger, session)
        _merge(result, finished, "disk filled mid-download")


# -- tiles too big for EE's memory -------------------------------------------------------------

def _leaves_tile(session: Session) -> list[str]:
    """Every split unit's children cover it exactly: four quarters, no gap, no overlap."""
    units = {r["id"]: r for r in rows(session, "SELECT * FROM units")}
    wrong = []
    for uid, u in units.items():
        kids = [k for k in units.values() if k["parent"] == uid]
        if u["state"] != "split":
            if kids:
                wrong.append(f"{uid} ({u['state']}) has {len(kids)} children")
            continue
        area = (u["east"] - u["west"]) * (u["north"] - u["south"])
        kid_area = sum((k["east"] - k["west"]) * (k["north"] - k["south"]) for k in kids)
        inside = all(u["west"] - 1e-9 <= k["west"] < k["east"] <= u["east"] + 1e-9
                     and u["south"] - 1e-9 <= k["south"] < k["north"] <= u["north"] + 1e-9
                     for k in kids)
        overlap = any(min(a["east"], b["east"]) - max(a["west"], b["west"]) > 1e-9
                      and min(a["north"], b["north"]) - max(a["south"], b["south"]) > 1e-9
                      for i, a in enumerate(kids) for b in kids[i + 1:])
        if len(kids) != 4 or not inside or overlap or abs(kid_area - area) > 1e-9 * area:
            wrong.append(f"{uid}: {len(kids)} children, inside {inside}, overlap {overlap}")
    return wrong


def _oversized(result: Result, quick: bool, seed: int, workdir: Path) -> None:
    """Tiles of 1 degree at 2 km (about 56 x 56 pixels; a quarter 28 x 28, a sixteenth 14 x
    14) on an EE whose memory gives out above 400 pixels: each tile fits only at depth 2."""
    cases = [("memory", 2, {"memory_limit_pixels": 400}),
             ("memory past split_depth", 1, {"memory_limit_pixels": 400})]
    if not quick:
        cases.append(("time-out", 2, {"timeout_pixels": 400}))
    for name, depth, config in cases:
        with emulator(seed=seed, **config) as (emu, ledger):
            folder = workdir / name.replace(" ", "-")
            folder.mkdir(parents=True)
            session = new_session(folder, emu.url, name="s", bbox="[0, 0, 2, 1]", size=1.0,
                                  split_depth=depth, max_attempts=3,
                                  folder=name.replace(" ", "-"))
            code = run_to_end(session, folder / "worker.log", TIMEOUT)
            units = rows(session, "SELECT id, depth, state, error FROM units")
            deepest = max(u["depth"] for u in units)
            states = {(u["depth"], u["state"]) for u in units}
            wrong = _leaves_tile(session)
            where = f"tiles over EE's limit ({name}, split_depth {depth})"
            result.check(f"{where}: no unit deeper than split_depth, each split into four "
                         "that tile it exactly", deepest <= depth and not wrong,
                         f"deepest {deepest}; {'; '.join(wrong[:3])}")
            text = MEMORY if "memory" in name else TIMED_OUT
            if name == "memory past split_depth":
                failed = [u for u in units if u["state"] == "failed"]
                result.check(f"{where}: the parts still too big fail, with EE's message and "
                             "the depth, and the run says how to retry", code == 1 and failed
                             and all(text in (u["error"] or "") and "split_depth" in
                                     (u["error"] or "") and u["depth"] == depth
                                     for u in failed)
                             and "eebatch retry" in (folder / "worker.log").read_text(),
                             f"exit {code}; {[(u['id'], u['error']) for u in failed][:3]}")
                continue
            result.check(f"{where}: every tile ends in done parts at depth {depth}",
                         code == 0 and states <= {(d, "split") for d in range(depth)}
                         | {(depth, "done")}, f"exit {code}; {sorted(states)}")
            finished = Result("resources", "")
            check_finished_job(finished, emu.url, ledger, session)
            _merge(result, finished, where)
            wasted = [t for t in job_tasks(emu.url, session) if t["state"] == "FAILED"]
            result.numbers[f"split_{name}_failed_exports"] = len(wasted)
            result.numbers[f"split_{name}_units"] = len(units)


def run(quick: bool, seed: int, workdir: Path) -> Result:
    result = Result("resources", "")
    use_home(workdir)
    started = time.monotonic()
    for section in (_drive_too_small, _disk_full, _oversized):
        began = time.monotonic()
        section(result, quick, seed, workdir)
        result.numbers[f"{section.__name__.strip('_')}_s"] = round(time.monotonic() - began, 1)
    result.tried = ("a Drive with room for less than one output"
                    + ("" if quick else " (and for less than the estimate)")
                    + ", a full output disk" + ("" if quick else " (and one filling mid-download)")
                    + ", tiles over EE's memory limit split to split_depth and past it"
                    + ("" if quick else ", and over its time limit"))
    result.skipped = result.skipped.strip().rstrip(";")
    result.numbers["seconds"] = round(time.monotonic() - started, 1)
    return result
