"""The direct and auto routes against batch only (issue 16, Routes).

    python -m tests.bench.bench_routes [--quick] [--units N] [--only batch,auto]
                                       [--batch-speed S] [--auto-speed S]

A job of small units (2,000 units of about 1,000 x 1,000 pixels: 500 tiles of 0.9° at 100 m
x 4 months, one uint16 band of a composite, 2 MB a unit; --quick: 200 units) on the emulator
with 2 batch slots, EE's default for a project, run by the real eebatch worker (`eebatch run
SESSION --headless`, in its own process) twice, each on a fresh emulator of one
configuration:

* **batch**: `export.route = "batch"`: every unit an export task, its file through Drive;
* **auto**: `export.route = "auto"`, `limits.direct_requests = 40`: units that fit the direct
  limits (core/routes.py: at most AUTO_MAX_REQUESTS requests of <= 16 MB; here one request
  each) are computed by computePixels, 40 at a time, with no slot and no Drive; one that EE
  answers "User memory limit exceeded." or "Computation timed out." goes batch.

For each: simulated time from the first request to EE (an export or a computePixels) until
every unit is done and verified; units lost or failed; requests per unit; EE batch tasks;
direct requests and 429s. The **batch lower bound** is max(total task time / slots, longest
task) from the batch run's own task records (the emulator object, in-process), and each run's
time is divided by it: auto is not bound by the slots, so its ratio falls far below 1. Beside
it, the direct model's own bound, max(total request time / 40, longest request), from the
emulator's plan of every direct request (recorded in-process).

Both runs must give the same pixels: every file of one run is compared byte for byte with the
same unit's file of the other, and a seeded sample is also read back with rasterio (arrays,
CRS and transform equal).

**The model**: the emulator's defaults (core/emulator/config.py), ASSUMPTIONS below.

**Time.** The emulator's clock runs `speed` simulated seconds per wall second, and so do the
worker's waits (poll_seconds = 30 / speed in the job file). What cannot be sped up is the
machine's own work: the emulator renders each unit's 1-megapixel GeoTIFF from its synthetic
world (~0.06 s of CPU, on one thread for the batch model's finished tasks), the worker
submits, downloads or decodes, checks, writes and fsyncs it (~0.04-0.05 s). Each run gets a
speed at which that work keeps up with the model on 2 cores: batch 60 (the 5.7 simulated
hours of slots in about 6 minutes), auto 1 (its ~200 simulated seconds in as many wall
seconds). Faster, the machine sets the pace, not EE: a batch run whose `slot_use_pct` falls
well below 100, or a direct run whose `over_direct_bound` is well above 1 with
`direct_peak_in_flight` under 40, was measured on a machine that could not keep up (see the
load). The whole part takes about 11 minutes (--quick: under 2).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import resource
import shutil
import time
from pathlib import Path
from typing import Any

from tests.bench.common import (
    ClockWatch,
    DirectRecorder,
    bench_home,
    cpu_seconds,
    eebatch_command,
    machine,
    per_unit,
    requests_since,
    scratch,
    spawn,
    wall_to_sim,
)
from tests.jobs import job_text

SLOTS = 2  # EE's default for a project (field.md 1.1)
DIRECT_REQUESTS = 40  # EE's limit of interactive requests in flight per project
TILE_DEG = 0.9
EXPORT_SCALE = 100  # m: a 0.9° tile is ~1,002 x 1,002 pixels at the equator
BANDS = ["SR_B4"]  # one uint16 band: 2 MB a unit
MONTHS = 4
SEED = 16
SAMPLE = 40  # files read back and compared as arrays (all are compared byte for byte)
ROUTES = ("batch", "auto")
SPEED = {"batch": 60.0, "auto": 1.0}

# What the numbers rest on, in the JSON as in docs/benchmarks.md.
ASSUMPTIONS = {
    "batch_task": "task_overhead_seconds (20 s) + pixel-bands / pixel_rate (2,000,000 a "
                  "second), +-20 % seeded jitter: ~20.5 s for a unit here; 2 slots (EE's "
                  "default per project, field.md 1.1); eebatch keeps max_tasks (10) in EE",
    "direct_request": "direct_latency_seconds (2 s) + pixel-bands x content / "
                      "direct_pixel_rate (500,000 a second): ~4 s for a unit here; at most 40 "
                      "in flight per project (EE's published limit, field.md 1.2; 429 beyond)",
    "direct_limits": "48 MB and 32,768 px a request (Google's); 'Computation timed out.' at "
                     "300 s (EE's 5-minute limit on interactive requests); 'User memory limit "
                     "exceeded.' above direct_memory_limit_pixels (memory_limit_pixels / 16 = "
                     "25 M pixels by default)",
    "where_the_rates_come_from": "Google publishes no per-pixel rate for either route "
                                 "(field.md 1.2 and 6): the concurrency and the limits are "
                                 "Google's, the rates the emulator's assumptions "
                                 "(core/emulator/config.py): the direct rate is a quarter of a "
                                 "batch task's (one interactive computation where a batch task "
                                 "fans out), so a 48 MB float32 request takes ~27 s, the tens "
                                 "of seconds Xee users report for such chunks; 2 s of latency "
                                 "is what geemap's 25-process chip downloads ('thousands of "
                                 "chips in a few minutes') imply; a batch task's 20 s of "
                                 "overhead is the emulator's default, below what small real "
                                 "exports take (minutes in bench_queue's model)",
    "same_for_both_runs": "one EmulatorConfig, the emulator's defaults with 2 slots; no "
                          "failures injected; only the clock's speed differs (see 'speed')",
}


def geometry(quick: bool, units: int | None = None) -> dict[str, Any]:
    """25 x 20 tiles x 4 months (2,000 units); 10 x 5 x 4 (200) with --quick."""
    if units:
        tiles = max(units // MONTHS, 1)
        cols = min(tiles, 25)
        rows = max(tiles // cols, 1)
    else:
        cols, rows = (10, 5) if quick else (25, 20)
    return {"bbox": [0, 0, round(cols * TILE_DEG, 6), round(rows * TILE_DEG, 6)],
            "cols": cols, "rows": rows}


def write_routes_job(directory: Path, url: str, route: str, speed: float,
                     g: dict[str, Any]) -> Path:
    limits: dict[str, Any] = {"poll_seconds": 30.0 / speed}
    if route != "batch":
        limits["direct_requests"] = DIRECT_REQUESTS
    path = directory / f"routes-{route}.toml"
    path.write_text(job_text(
        "routes", output_dir=str(directory / "out"), region={"bbox": g["bbox"]},
        grid={"size": TILE_DEG}, recipe={"name": "composite", "bands": BANDS},
        time={"start": dt.date(2023, 1, 1), "end": dt.date(2023, 1 + MONTHS, 1),
              "step": "1 month"},
        export={"folder": "routes", "scale": EXPORT_SCALE, "route": route},
        limits=limits, emulator=url))
    return path


def emulator_config(speed: float) -> Any:
    from core.emulator.config import EmulatorConfig

    return EmulatorConfig(slots=SLOTS, speed=speed, seed=SEED)


def batch_records(emu: Any) -> dict[str, Any]:
    """Every batch task from the emulator's model: the time the slots need (the bound)."""
    with emu.ee.model.lock:
        tasks = list(emu.ee.model.tasks.values())
    durations = [t.duration for t in tasks if t.start_time is not None]
    total = sum(durations)
    first = min((t.create_time for t in tasks), default=None)
    last_end = max((t.end_time or 0.0 for t in tasks), default=None)
    span = last_end - first if first is not None and last_end is not None else None
    return {
        "tasks": len(tasks),
        "states": dict(emu.ee.model.counts()),
        "task_seconds_total": round(total, 1),
        "task_seconds_mean": round(total / len(durations), 1) if durations else None,
        "task_seconds_max": round(max(durations), 1) if durations else None,
        "lower_bound_s": round(max(total / SLOTS, max(durations)), 1) if durations else None,
        "ee_span_s": round(span, 1) if span else None,
        "slot_use_pct": round(100 * total / (SLOTS * span), 1) if span else None,
        "first_submit": first,
    }


def _children_cpu() -> float:
    """CPU seconds (user + system) of the ended child processes (the worker)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def run_route(route: str, speed: float, g: dict[str, Any], keep: Path) -> dict[str, Any]:
    """One run on a fresh emulator. Every file's MD5 (read back from disk) is returned under
    "_hashes", and a seeded sample of the files is copied into `keep`; the rest go with the
    run's directory (2,000 units are 4 GB)."""
    from core.emulator.app import Emulator
    from core.session import create_session
    from core.store import Store

    with scratch(f"routes-{route}") as tmp, Emulator(emulator_config(speed)) as emu:
        job = write_routes_job(tmp, emu.url, route, speed, g)
        store, plan = create_session(job)
        path = store.path
        start_routes = store.route_counts()
        store.close()
        recorder = DirectRecorder(emu.ee.direct)
        to_sim = wall_to_sim(emu)
        before = emu.state()["requests"]
        load = [round(x, 2) for x in os.getloadavg()]
        wall0, watch = time.time(), ClockWatch()
        cpu0, child0 = cpu_seconds(), _children_cpu()
        proc = spawn([*eebatch_command(), "run", str(path), "--headless", "--every", "30"],
                     tmp / "worker.log")
        code = proc.wait()
        wall, step = time.time() - wall0, watch.step_s()
        emulator_cpu, worker_cpu = cpu_seconds() - cpu0, _children_cpu() - child0
        state = emu.state()
        requests = requests_since(before, state["requests"])
        records = batch_records(emu)
        direct = state["ee"]["direct"]
        store = Store(path)
        counts = store.counts()
        routes = store.route_counts()
        last_done = store.conn.execute(
            "SELECT MAX(updated) FROM units WHERE state = 'done'").fetchone()[0]
        files = store.conn.execute(
            "SELECT title, local_path, md5 FROM files"
            " WHERE state IN ('deleted', 'local', 'verified')").fetchall()
        moved = store.conn.execute(
            "SELECT COUNT(DISTINCT unit) FROM events WHERE message LIKE"
            " '%it goes by the batch route%'").fetchone()[0]
        failed = store.failed_units()
        store.close()
        hashes: dict[str, str] = {}
        for title, local, _ in files:
            hashes[title] = _md5(Path(local))
        sample = sorted(hashes)
        random.Random(SEED).shuffle(sample)
        kept = keep / route
        kept.mkdir(parents=True, exist_ok=True)
        where = {title: Path(local) for title, local, _ in files}
        for title in sample[:SAMPLE]:
            shutil.copy2(where[title], kept / title)
        worker_log = (tmp / "worker.log").read_text(errors="replace")[-3000:]
    first = min(t for t in (records.pop("first_submit"), recorder.first()) if t is not None)
    done_s = to_sim(last_done) - first
    direct_bound = recorder.lower_bound(DIRECT_REQUESTS)
    units = plan.units
    seconds = recorder.seconds
    return {
        "route": route, "speed": speed, "units": units, "exit_code": code,
        "loadavg_at_start": load,
        "wall_s": round(wall, 1),
        # Not 0: the system clock stepped mid-run and done_s is off by step x speed (run again).
        "wall_clock_step_s": step,
        "cpu_s": {"worker": round(worker_cpu, 1), "emulator_and_bench": round(emulator_cpu, 1)},
        "done_s": round(done_s, 1),
        "done_hours": round(done_s / 3600, 3),
        "unit_states": counts,
        "units_lost_or_failed": sum(n for s, n in counts.items() if s not in ("done", "split")),
        "failed": [list(r) for r in failed][:10],
        "routes_at_start": start_routes,
        "routes_at_end": routes,
        "units_moved_to_batch": moved,
        "files": len(files),
        "files_md5_as_recorded": sum(hashes[t] == md5 for t, _, md5 in files),
        "batch_tasks": records,
        "direct_requests": direct["requests"],
        "direct_succeeded": direct["succeeded"],
        "direct_failed": direct["failed"],
        "direct_429": direct["rejected"].get("429", 0),
        "direct_rejected": direct["rejected"],
        "direct_peak_in_flight": direct["peak_concurrency"],
        "direct_eecu_hours": round(direct["eecu_seconds"] / 3600, 3),
        "direct_request_seconds_mean": (round(sum(seconds) / len(seconds), 2)
                                        if seconds else None),
        "direct_lower_bound_s": round(direct_bound, 1) if direct_bound else None,
        "over_direct_bound": round(done_s / direct_bound, 3) if direct_bound else None,
        "requests": requests,
        "requests_total_per_unit": round(sum(requests.values()) / units, 2),
        "requests_per_unit": per_unit(requests, units),
        "worker_log_tail": worker_log if code or counts.get("done", 0) != units else None,
        "_hashes": hashes,
    }


def same_pixels(a: Path, b: Path) -> tuple[int, int, list[str]]:
    """The sample files of one run read back beside the other's: (compared, equal, names of
    the first that differ)."""
    import numpy as np
    import rasterio

    compared = equal = 0
    diffs: list[str] = []
    for fa in sorted(a.iterdir()):
        fb = b / fa.name
        if not fb.exists():
            continue
        compared += 1
        with rasterio.open(fa) as ra, rasterio.open(fb) as rb:
            same = (ra.crs == rb.crs and ra.transform == rb.transform
                    and ra.shape == rb.shape and ra.count == rb.count
                    and np.array_equal(ra.read(), rb.read()))
        equal += same
        if not same and len(diffs) < 5:
            diffs.append(fa.name)
    return compared, equal, diffs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_routes")
    parser.add_argument("--quick", action="store_true", help="200 units instead of 2,000")
    parser.add_argument("--units", type=int, default=None)
    parser.add_argument("--batch-speed", type=float, default=SPEED["batch"],
                        help=f"simulated seconds per wall second, batch run ({SPEED['batch']:g})")
    parser.add_argument("--auto-speed", type=float, default=SPEED["auto"],
                        help=f"the same, auto run ({SPEED['auto']:g})")
    parser.add_argument("--only", default=",".join(ROUTES), help="comma-separated routes")
    args = parser.parse_args(argv)
    bench_home()
    g = geometry(args.quick, args.units)
    routes = [r for r in args.only.split(",") if r]
    speeds = {"batch": args.batch_speed, "auto": args.auto_speed}
    result: dict[str, Any] = {
        "machine": machine(), "quick": args.quick, "slots": SLOTS,
        "direct_requests": DIRECT_REQUESTS, "speed": {r: speeds[r] for r in routes},
        "assumptions": ASSUMPTIONS,
        "job": {"tiles": g["cols"] * g["rows"], "months": MONTHS, "tile_degrees": TILE_DEG,
                "scale_m": EXPORT_SCALE, "recipe": "composite", "bands": BANDS},
    }
    wall0 = time.time()
    with scratch("routes-keep") as keep:
        for route in routes:
            result[route] = run_route(route, speeds[route], g, keep)
        if set(ROUTES) <= set(result):
            hb, ha = result["batch"]["_hashes"], result["auto"]["_hashes"]
            common = set(hb) & set(ha)
            compared, equal, diffs = same_pixels(keep / "batch", keep / "auto")
            result["same_pixels"] = {
                "files_batch": len(hb), "files_auto": len(ha), "files_in_both": len(common),
                "byte_for_byte_equal": sum(hb[t] == ha[t] for t in common),
                "sample_read_back": compared, "sample_arrays_equal": equal,
                "sample_differences": diffs,
            }
            result["same_pixels"]["all_equal"] = (
                len(hb) == len(ha) == len(common) == result["same_pixels"]["byte_for_byte_equal"]
                and compared == equal)
    for route in routes:
        result[route].pop("_hashes", None)
    result["wall_s"] = round(time.time() - wall0, 1)
    stepped = {r: result[r]["wall_clock_step_s"] for r in routes
               if abs(result[r]["wall_clock_step_s"]) > 1}
    if stepped:  # such a run's time is off by the step x speed: run it again
        result["FLAG_wall_clock_stepped_s"] = stepped
    b = result.get("batch")
    if b and b["batch_tasks"]["lower_bound_s"]:
        bound = b["batch_tasks"]["lower_bound_s"]
        result["batch_lower_bound_s"] = bound
        result["batch_lower_bound_hours"] = round(bound / 3600, 3)
        for route in routes:
            result[route]["vs_batch_bound"] = round(result[route]["done_s"] / bound, 4)
        if "auto" in result:
            result["auto_times_faster_than_batch"] = round(
                b["done_s"] / result["auto"]["done_s"], 1)
            result["auto_times_faster_than_batch_bound"] = round(
                bound / result["auto"]["done_s"], 1)
            result["goal_auto_below_batch_bound"] = result["auto"]["vs_batch_bound"] < 1
    if set(ROUTES) <= set(result):  # the summary rows of python -m tests.bench
        b, a = result["batch"], result["auto"]
        result["units_lost_or_failed"] = (f"{b['units_lost_or_failed']} / "
                                          f"{a['units_lost_or_failed']}")
        result["goal_no_unit_lost"] = b["units_lost_or_failed"] == a["units_lost_or_failed"] == 0
        result["batch_tasks_used"] = f"{b['batch_tasks']['tasks']} / {a['batch_tasks']['tasks']}"
        result["direct_requests_and_429"] = f"{a['direct_requests']} ({a['direct_429']})"
        result["goal_same_pixels"] = result["same_pixels"]["all_equal"]
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
