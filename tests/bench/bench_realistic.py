"""A realistic job, three ways (issue 15, part 2).

    python -m tests.bench.bench_realistic [--quick] [--speed S] [--only eebatch,course,submit_all]

The queue benchmark's job is kind (uniform small tiles, no failures, room in Drive, fast
downloads) and finds eebatch and the classic loop equal. Real jobs are not kind. This one runs
the same units on the same emulator configuration (a fresh emulator each) three ways:

* **eebatch**: `run_session`, the headless worker `eebatch run` starts, with its defaults
  (max_tasks 10, poll 30 s, 4 downloads, 5 attempts, split_depth 2) and its default Drive
  budget of 10 GB, scaled;
* **course**: the loop courses teach (classic.course_loop): for each unit, while 10 or more
  tasks are RUNNING or READY in `str(ee.batch.Task.list())`, sleep 60 s and download
  everything in the Drive folder (GetContentFile one by one, Delete); no retries, no MD5, no
  look at Drive space;
* **submit_all**: what users of geemap's export helpers do (classic.submit_all_loop): submit
  every export, look at the task list every 10 minutes until none is active, then download.

The two scripts give up on what fails. A user then starts another *pass* by hand on the units
still missing, and splits by hand the ones EE refused for memory (four quarters, as eebatch
does): passes are counted until every unit is on disk, each started the moment the last one
ended (a user is slower: the totals are the scripts' best case).

**The real case it scales.** Landsat composite tiles of 51-513 MB (tenfold: a tile's content
decides its size), 10-41 minutes each in EE (400 s of overhead + 4 s per MB), 4 EE slots,
a 15 GB Drive, downloads at 10 MB/s per connection and 30 MB/s in all; 5 % of EE runs end in
"Internal error.", 5 % of the tiles exceed EE's memory. Emulated, every byte stands for 400
(a 513 MB tile is a 1.3 MB GeoTIFF: 253 x 253 pixels of one band, padded by its content
factor; the Drive holds 37.5 MB) and the bandwidth is cut by the same factor, so a download
takes the simulated seconds it takes for real, against EE time that is simulated second for
second. The emulator's clock runs `speed` times faster than the
wall clock (default 900: a 30-hour job takes two minutes). eebatch runs alone first; the two
scripts, which mostly sleep, then run side by side, each in a process of its own (--serial:
one after the other). A full run takes about 10 minutes on 2 cores, --quick under 2.

Everything is read from the emulator's own records (its task list in-process, as bench_queue
does, since GET /_emulator/state lists only the newest 500 tasks; Drive's peak use and the
request counters from GET /_emulator/state) and, for eebatch, from its session store.
Lower bound per loop: max(total EE time of the tasks that succeeded / slots, longest such
task); the job's bound is the least of them (the least EE work that finished the job). Goal:
eebatch within 5 % of the job's bound.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.bench.common import (
    bench_home,
    machine,
    pct,
    per_unit,
    requests_since,
    scratch,
    wall_to_sim,
)
from tests.jobs import job_text

# -- the real case and its scale ----------------------------------------------------------------

SCALE = 400  # real bytes per emulated byte
REAL = {
    "tile_mb": "51-513 (tenfold, log-uniform over the tiles)",
    "ee_minutes": "10-41 (400 s + 4 s per MB)",
    "slots": 4,
    "drive_gb": "15 (3 with --quick)",
    "link_mb_s_per_connection": 10,
    "link_mb_s_total": 30,
    "internal_error_rate": 0.05,
    "tiles_over_memory": 0.05,
    "eebatch_drive_budget_gb": "10 (2 with --quick)",
}
SLOTS = 4
SPREAD = 10.0  # tile content: 1x to 10x the bytes and work of its pixel count
OVERHEAD_S = 400.0
# Pixel-bands per simulated s: a tile of content 1 holds 253 x 253 pixels, 128 kB (51 MB
# real): 4 s per real MB is 205 s for its 63,600 model pixels.
PIXEL_RATE = 310.0
GB = 10**9


def drive_quota(quick: bool) -> int:
    """15 GB, the free Drive (3 GB with --quick, for a fifth of the units)."""
    return (3 if quick else 15) * GB // SCALE


def drive_budget(quick: bool) -> int:
    """eebatch's default drive_budget, 10 GB (2 GB with --quick), scaled."""
    return (2 if quick else 10) * GB // SCALE


LINK = 10 * 10**6 / SCALE  # bytes per simulated second, per download
LINK_TOTAL = 30 * 10**6 / SCALE
INTERNAL = 0.05
MEMORY_SHARE = 0.05
SEED = 15
PROJECT = "eebatch-demo"  # eebatch's: the seeded faults draw on the project too
TILE_DEG = 0.5
EXPORT_SCALE = 220  # m: a 0.5° tile is 253 x 253 pixels of one uint16 band
BANDS = ["SR_B4"]
MONTHS = 3
MAX_PASSES = 12
COURSE_SLEEP = 60.0
SUBMIT_ALL_CHECK = 600.0
LOOPS = ("eebatch", "course", "submit_all")


def geometry(quick: bool) -> dict[str, Any]:
    """100 tiles x 3 months (300 units); 20 tiles x 3 (60) with --quick. Near the equator, so
    a tile's ground area, hence its pixel count, is about the same everywhere."""
    cols, rows = (5, 4) if quick else (10, 10)
    return {"bbox": [0, 0, cols * TILE_DEG, rows * TILE_DEG], "cols": cols, "rows": rows}


def write_scenario_job(directory: Path, url: str, quick: bool, speed: float) -> Path:
    g = geometry(quick)
    path = directory / "realistic.toml"
    path.write_text(job_text(
        "realistic", output_dir=str(directory / "out"), region={"bbox": g["bbox"]},
        grid={"size": TILE_DEG}, recipe={"name": "composite", "bands": BANDS},
        time={"start": dt.date(2023, 1, 1), "end": dt.date(2023, 1 + MONTHS, 1),
              "step": "1 month"},
        export={"folder": "realistic", "scale": EXPORT_SCALE},
        limits={"drive_budget": drive_budget(quick), "poll_seconds": 30.0 / speed},
        emulator=url))
    return path


def unit_rows(spec: Any) -> list[dict[str, Any]]:
    from core.plan import make_plan

    keys = ("id", "tile", "row", "col", "period", "start", "end", "west", "south", "east",
            "north", "est_pixels", "est_bytes")
    return [dict(zip(keys, r[:len(keys)], strict=True)) for r in make_plan(spec).unit_rows()]


def tile_work(rows: list[dict[str, Any]], config: Any) -> dict[str, float]:
    """Each tile's work in the emulator's terms (model pixels x content factor), computed as
    the emulator does for the export of that tile."""
    from core.emulator.outputs import METRES_PER_DEGREE, Grid, content_factor, model_pixels

    step = EXPORT_SCALE / METRES_PER_DEGREE
    out = {}
    for r in rows:
        c0, c1 = math.floor(r["west"] / step + 1e-9), math.ceil(r["east"] / step - 1e-9)
        r0, r1 = math.floor(-r["north"] / step + 1e-9), math.ceil(-r["south"] / step - 1e-9)
        grid = Grid("EPSG:4326", 4326, True, c0 * step, -r0 * step, step, step, c1 - c0,
                    r1 - r0, 0.0, 0.0, c0, r0)
        out[r["tile"]] = model_pixels(grid) * content_factor(grid, config)
    return out


def emulator_config(speed: float, quick: bool, memory_limit: int = 10**12) -> Any:
    from core.emulator.config import EmulatorConfig

    return EmulatorConfig(
        slots=SLOTS, speed=speed, seed=SEED, drive_quota=drive_quota(quick),
        task_overhead_seconds=OVERHEAD_S, pixel_rate=PIXEL_RATE, jitter=0.1,
        memory_limit_pixels=memory_limit, internal_error_rate=INTERNAL,
        size_spread=SPREAD, size_cell=TILE_DEG, download_rate=LINK,
        download_total_rate=LINK_TOTAL)


def scenario_config(speed: float, quick: bool) -> tuple[Any, dict[str, Any]]:
    """The one emulator configuration every loop runs on: the memory limit falls between the
    tiles of the heaviest 5 % and the rest (what a split quarter holds stays far below it)."""
    from core.spec import load_spec

    base = emulator_config(speed, quick)
    with scratch("realistic-plan") as tmp:
        rows = unit_rows(load_spec(write_scenario_job(tmp, "http://127.0.0.1:1", quick, speed)))
    work = sorted(tile_work(rows, base).values(), reverse=True)
    over = max(1, round(MEMORY_SHARE * len(work)))
    limit = int((work[over - 1] + work[over]) / 2)
    info = {"tiles": len(work), "units": len(rows), "tiles_over_memory": over,
            "memory_limit_pixels": limit, "tile_work_pixels_max": round(work[0]),
            "tile_work_pixels_min": round(work[-1])}
    return emulator_config(speed, quick, limit), info


# -- the emulator's records ------------------------------------------------------------------

def cause(message: str | None) -> str:
    from core.emulator.batch import INTERNAL_MSG, MEMORY_MSG
    from core.emulator.ee import DRIVE_QUOTA_MSG

    if not message:
        return "none"
    return {MEMORY_MSG: "memory", INTERNAL_MSG: "internal", DRIVE_QUOTA_MSG: "drive_full"}.get(
        message, "other")


def ee_records(emu: Any) -> dict[str, Any]:
    """Every task of the run from the emulator's batch model: EE time (succeeded, wasted by
    cause), duplicates, the lower bound, and how busy the slots were."""
    from core.emulator.batch import CANCELLED, FAILED, SUCCEEDED

    with emu.ee.model.lock:
        tasks = list(emu.ee.model.tasks.values())
    ok = [t for t in tasks if t.state == SUCCEEDED]
    work = sum(t.duration for t in ok)
    longest = max((t.duration for t in ok), default=0.0)
    wasted: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for t in tasks:
        if t.state in (FAILED, CANCELLED) and t.start_time is not None:
            why = "cancelled" if t.state == CANCELLED else cause((t.error or {}).get("message"))
            wasted[why] += (t.end_time or t.start_time) - t.start_time
            failed[why] += 1
    per_prefix = Counter(t.payload.prefix for t in ok)
    ran = [(t.start_time, t.end_time) for t in tasks
           if t.start_time is not None and t.end_time is not None]
    first = min(t.create_time for t in tasks)
    last_end = max(e for _, e in ran)
    busy = sum(e - s for s, e in ran)
    return {
        "tasks": len(tasks),
        "succeeded": len(ok),
        "failed_by_cause": dict(failed),
        "ee_hours_succeeded": round(work / 3600, 2),
        "ee_hours_wasted": round(sum(wasted.values()) / 3600, 2),
        "ee_hours_wasted_by_cause": {k: round(v / 3600, 2) for k, v in wasted.items()},
        "duplicate_exports": sum(n - 1 for n in per_prefix.values() if n > 1),
        "longest_task_s": round(longest, 1),
        "lower_bound_s": round(max(work / SLOTS, longest), 1),
        "first_submit": first,
        "ee_span_s": round(last_end - first, 1),
        "slot_idle_hours": round((SLOTS * (last_end - first) - busy) / 3600, 2),
        "tail_idle": _tail(ran, first, last_end),
    }


def _tail(ran: list[tuple[float, float]], first: float, last_end: float) -> dict[str, float]:
    """When the slots stopped being all busy for good, and the slot-hours idle after it."""
    events = sorted([(s, 1) for s, _ in ran] + [(e, -1) for _, e in ran])
    running, full_until = 0, first
    for t, d in events:
        if running >= SLOTS and d < 0:
            full_until = t
        running += d
    idle, running, prev = 0.0, 0, first
    for t, d in events:
        if t > full_until:
            idle += (SLOTS - running) * (t - max(prev, full_until))
        running, prev = running + d, t
    return {"last_all_busy_s": round(full_until - first, 1),
            "slot_hours_idle_after": round(idle / 3600, 2)}


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _finish(out: dict[str, Any], emu: Any, before: dict[str, int], units: int,
            end_sim: float) -> dict[str, Any]:
    quota = emu.config.drive_quota
    """What every loop reports from the emulator's records, with makespan and bound."""
    records = ee_records(emu)
    state = emu.state()
    requests = requests_since(before, state["requests"])
    makespan = end_sim - records.pop("first_submit")
    peak = state["drive"]["peak_used"]
    out.update({
        "makespan_s": round(makespan, 1),
        "makespan_hours": round(makespan / 3600, 2),
        "over_lower_bound_pct": pct(makespan / records["lower_bound_s"] - 1),
        "tail_after_last_task_s": round(makespan - records["ee_span_s"], 1),
        **records,
        "drive_quota_bytes": quota,
        "drive_peak_bytes": peak,
        "drive_peak_pct_of_quota": pct(peak / quota),
        "exports_failed_drive_full": records["failed_by_cause"].get("drive_full", 0),
        "requests": requests,
        "requests_total_per_unit": round(sum(requests.values()) / units, 2),
        "requests_per_unit": per_unit(requests, units),
    })
    return out


# -- eebatch -------------------------------------------------------------------------------

def run_eebatch(speed: float, quick: bool) -> dict[str, Any]:
    from core.emulator.app import Emulator
    from core.engine.runner import run_session
    from core.session import create_session
    from core.store import Store

    config, info = scenario_config(speed, quick)
    with scratch("realistic-eebatch") as tmp, Emulator(config) as emu:
        job = write_scenario_job(tmp, emu.url, quick, speed)
        store, plan = create_session(job)
        path = store.path
        store.close()
        to_sim = wall_to_sim(emu)
        before = emu.state()["requests"]
        wall0 = time.time()
        summary = run_session(path)
        wall = time.time() - wall0
        store = Store(path)
        last_done = store.conn.execute(
            "SELECT MAX(updated) FROM files WHERE state = 'deleted'").fetchone()[0]
        files = store.conn.execute(
            "SELECT local_path, md5, size FROM files WHERE state = 'deleted'").fetchall()
        units = dict(store.conn.execute("SELECT state, COUNT(*) FROM units GROUP BY state"))
        split = store.conn.execute(
            "SELECT COUNT(*) FROM units WHERE state = 'split'").fetchone()[0]
        store.close()
        verified = sum(1 for p, md5, _ in files if p and Path(p).exists() and md5_of(Path(p))
                       == md5)
        out = {"units": plan.units, "ok": summary.ok, "unit_states": units,
               "units_split": split, "files": len(files), "files_verified_md5": verified,
               "job_output_bytes": sum(s for _, _, s in files), "wall_s": round(wall, 1),
               "passes_by_hand": 0, "fraction_done_first_pass": 1.0 if summary.ok else None,
               "units_lost_per_pass": [0] if summary.ok else None, "scenario": info}
        return _finish(out, emu, before, plan.units, to_sim(last_done))


# -- the scripts and their passes by hand ---------------------------------------------------

def quarters(row: dict[str, Any], spec: Any) -> list[dict[str, Any]]:
    """A unit cut in four as eebatch splits it (what a user does by hand after a memory
    failure)."""
    from core.grid import child_id, pixel_size, split_bounds
    from core.periods import Period, unit_id

    pixel = pixel_size(spec) if spec.grid.align else None
    out = []
    for q, (w, s, e, n) in enumerate(split_bounds(
            (row["west"], row["south"], row["east"], row["north"]), pixel)):
        tile = child_id(row["tile"], q)
        out.append({**row, "id": unit_id(tile, Period(row["period"], None, None)),
                    "tile": tile, "west": w, "south": s, "east": e, "north": n})
    return out


def run_script(kind: str, speed: float, quick: bool) -> dict[str, Any]:
    from core.emulator.app import Emulator
    from core.spec import load_spec
    from tests.bench.classic import course_loop, submit_all_loop

    config, info = scenario_config(speed, quick)
    with scratch(f"realistic-{kind}") as tmp, Emulator(config) as emu:
        spec = load_spec(write_scenario_job(tmp, emu.url, quick, speed))
        rows = unit_rows(spec)
        to_sim = wall_to_sim(emu)
        before = emu.state()["requests"]
        children: dict[str, list[str]] = {}
        downloaded: dict[str, tuple[Path, str]] = {}
        passes = []
        todo = rows
        wall0 = time.time()
        while todo and len(passes) < MAX_PASSES:
            if kind == "course":
                res = course_loop(emu.url, PROJECT, spec, todo, tmp / "out", speed,
                                  sleep_seconds=COURSE_SLEEP)
            else:
                res = submit_all_loop(emu.url, PROJECT, spec, todo, tmp / "out", speed,
                                      check_seconds=SUBMIT_ALL_CHECK)
            downloaded.update(res.downloaded)
            missing = [r for r in todo if r["id"] not in res.downloaded]
            causes = Counter(cause(res.errors.get(r["id"])) for r in missing)
            todo = []
            for r in missing:
                if cause(res.errors.get(r["id"])) == "memory":
                    parts = quarters(r, spec)
                    children[r["id"]] = [p["id"] for p in parts]
                    todo += parts
                else:
                    todo.append(r)

            def done(unit: str) -> bool:
                if unit in downloaded:
                    return True
                return unit in children and all(done(c) for c in children[unit])

            passes.append({
                "units_sent": res.exports, "units_downloaded": len(res.downloaded),
                "units_lost": len(missing), "lost_by_cause": dict(causes),
                "task_lists": res.task_lists,
                "ends_at_s": to_sim(res.finished_wall),
                "units_done_after": sum(done(r["id"]) for r in rows),
            })
        wall = time.time() - wall0
        verified = sum(1 for p, md5 in downloaded.values() if md5_of(p) == md5)
        first = passes[0]["units_done_after"] / len(rows)
        out = {
            "units": len(rows), "ok": passes[-1]["units_done_after"] == len(rows),
            "files": len(downloaded), "files_verified_md5": verified,
            "md5_checked_by_the_script": 0,
            "job_output_bytes": sum(p.stat().st_size for p, _ in downloaded.values()),
            "wall_s": round(wall, 1),
            "passes_by_hand": len(passes) - 1,
            "fraction_done_first_pass": round(first, 3),
            "units_lost_per_pass": [p["units_lost"] for p in passes],
            "units_split_by_hand": len(children), "passes": passes, "scenario": info,
        }
        result = _finish(out, emu, before, len(rows), passes[-1]["ends_at_s"])
    first_submit = passes[-1]["ends_at_s"] - result["makespan_s"]
    for p in passes:  # when each pass ended, in hours from the first export
        p["ends_at_hours"] = round((p.pop("ends_at_s") - first_submit) / 3600, 2)
    result["first_pass_hours"] = passes[0]["ends_at_hours"]
    return result


# -- the run -----------------------------------------------------------------------------------

def run_one(loop: str, speed: float, quick: bool) -> dict[str, Any]:
    return run_eebatch(speed, quick) if loop == "eebatch" else run_script(loop, speed, quick)


def where_the_time_goes(e: dict[str, Any]) -> dict[str, float]:
    """eebatch's makespan over its bound, in hours: slot time on failed runs, slots idle (at
    the end: the tail of long tasks and split children), and the download tail after EE."""
    bound = e["lower_bound_s"] / 3600
    return {
        "over_bound_hours": round(e["makespan_hours"] - bound, 2),
        "failed_runs_hours_per_slot": round(e["ee_hours_wasted"] / SLOTS, 2),
        "idle_slots_hours_per_slot": round(e["slot_idle_hours"] / SLOTS, 2),
        "of_which_after_slots_last_all_busy": round(
            e["tail_idle"]["slot_hours_idle_after"] / SLOTS, 2),
        "download_tail_hours": round(e["tail_after_last_task_s"] / 3600, 2),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_realistic")
    parser.add_argument("--quick", action="store_true", help="60 units instead of 300")
    parser.add_argument("--speed", type=float, default=None,
                        help="simulated seconds per wall second (900; 1000 with --quick)")
    parser.add_argument("--only", default=",".join(LOOPS), help="comma-separated loops")
    parser.add_argument("--serial", action="store_true",
                        help="one loop after the other (default: the scripts run side by side "
                             "in processes of their own while eebatch runs alone first)")
    parser.add_argument("--loop", choices=LOOPS, help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args(argv)
    speed = args.speed or (1000.0 if args.quick else 900.0)
    bench_home()
    if args.loop:
        return run_one(args.loop, speed, args.quick)
    loops = [x for x in args.only.split(",") if x]
    result: dict[str, Any] = {"machine": machine(), "speed": speed, "quick": args.quick,
                              "real_case": REAL, "bytes_scale": SCALE}
    wall0 = time.time()
    if "eebatch" in loops:
        result["eebatch"] = run_one("eebatch", speed, args.quick)
    scripts = [x for x in loops if x != "eebatch"]
    if args.serial:
        for loop in scripts:
            result[loop] = run_one(loop, speed, args.quick)
    else:
        # The scripts mostly sleep; side by side they leave each other's simulated time alone.
        base = [sys.executable, "-m", "tests.bench.bench_realistic", "--speed", str(speed),
                *(["--quick"] if args.quick else [])]
        procs = {x: subprocess.Popen([*base, "--loop", x], stdout=subprocess.PIPE, text=True)
                 for x in scripts}
        for loop, proc in procs.items():
            out, _ = proc.communicate()
            result[loop] = json.loads(out) if proc.returncode == 0 else {
                "error": f"exit {proc.returncode}"}
    result["wall_s"] = round(time.time() - wall0, 1)
    ran = {x: result[x] for x in loops if isinstance(result.get(x), dict)
           and "makespan_s" in result[x]}
    if ran:
        # The job's bound: the least EE work any loop finished it with (a loop that splits
        # more than it must, or runs a tile twice, raises its own bound, not this one).
        bound = min(r["lower_bound_s"] for r in ran.values())
        result["job_lower_bound_hours"] = round(bound / 3600, 2)
        for r in ran.values():
            r["over_job_bound_pct"] = pct(r["makespan_s"] / bound - 1)
        result["scenario"] = next(iter(ran.values()))["scenario"]
    e = ran.get("eebatch")
    if e is not None:
        result["where_eebatch_time_goes"] = where_the_time_goes(e)
        result["eebatch_over_job_bound_pct"] = e["over_job_bound_pct"]
        result["goal_within_5pct_of_bound"] = e["over_job_bound_pct"] <= 5.0
        for loop in scripts:
            if loop in ran:
                ran[loop]["makespan_vs_eebatch"] = round(ran[loop]["makespan_s"]
                                                         / e["makespan_s"], 3)
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
