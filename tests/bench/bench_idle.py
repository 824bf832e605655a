"""Idle cost (issue 6, part 5): the worker's CPU while 10 tasks run for a long time.

    python -m tests.bench.bench_idle [--quick] [--seconds S]

The worker runs as users run it, `eebatch run SESSION --headless`, in its own process against
an emulator served by this process; tasks last a simulated day at speed 1, so nothing finishes
while we measure. Once 10 tasks are RUNNING, the worker process's CPU time (user + system,
all threads, from /proc/PID/stat) is read over the window. poll_seconds is the default, 30 s.
The baseline in the same run is this benchmark process's own idle CPU over the same window
(emulator included), so machine noise can be told apart.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from typing import Any

from tests.bench.common import (
    bench_home,
    cpu_seconds,
    eebatch_command,
    machine,
    memory_mb,
    pct,
    scratch,
    spawn,
    write_job,
)

GOAL = 0.02  # of one core


def _late(store: Any) -> None:
    """A job near its end, as a worker that ran it leaves it: every unit but 10 done (one
    unfinished in each of its 10 periods, so no period is complete yet), each with its
    downloaded and deleted file recorded (the rows the worker's file queries must not scan
    every tick) in its period's folder, and the manifest of them written."""
    from core.outputs.manifest import write_manifest
    from core.session import load_session_spec

    now = time.time()
    out = load_session_spec(store).output_dir
    with store.tx():
        store.conn.execute(
            "UPDATE units SET state = 'done' WHERE rowid NOT IN"
            " (SELECT MIN(rowid) FROM units GROUP BY period)")
        store.conn.execute(
            "INSERT INTO files (unit, attempt, drive_id, title, size, md5, local_path, state,"
            " updated) SELECT id, NULL, 'gone-' || rowid, id || '.tif', 1000000, '',"
            " ? || '/' || period || '/' || id || '.tif', 'deleted', ? FROM units"
            " WHERE state = 'done'", (str(out), now))
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, (dict(r) for r in store.manifest_rows()), crs="EPSG:4326", bands="")


def measure_idle(units_bbox: str, size: float, months: int, seconds: float,
                 label: str, late: bool = False) -> dict[str, Any]:
    from core.emulator.app import Emulator
    from core.emulator.config import EmulatorConfig
    from core.session import create_session

    config = EmulatorConfig(slots=10, speed=1.0, task_overhead_seconds=86_400.0, seed=5,
                            drive_quota=None)
    with scratch("idle") as tmp, Emulator(config) as emu:
        job = write_job(tmp, name=f"idle-{label}", url=emu.url, bbox=units_bbox, size=size,
                        scale=5000, months=months, max_tasks=10, poll_seconds=30.0)
        created = time.perf_counter()
        store, plan = create_session(job)
        if late:
            _late(store)
        path = store.path
        store.close()
        create_s = time.perf_counter() - created
        proc = spawn([*eebatch_command(), "run", str(path), "--headless", "--every", "10"],
                     tmp / "worker.log")
        try:
            deadline = time.time() + 120
            while emu.ee.model.counts().get("RUNNING", 0) < 10:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("the worker did not start 10 tasks: "
                                       + (tmp / "worker.log").read_text()[-2000:])
                time.sleep(0.2)
            time.sleep(2.0)  # let the submit burst settle
            cpu0, self0, wall0 = cpu_seconds(proc.pid), cpu_seconds(), time.perf_counter()
            time.sleep(seconds)
            cpu1, self1, wall1 = cpu_seconds(proc.pid), cpu_seconds(), time.perf_counter()
            mem = memory_mb(proc.pid)
            requests = emu.state()["requests"]
        finally:
            os.killpg(proc.pid, signal.SIGTERM)  # the worker's own process group only
            proc.wait(timeout=30)
    wall = wall1 - wall0
    share = (cpu1 - cpu0) / wall
    return {
        "units": plan.units,
        "state": "10 left, the rest done with their files" if late else "fresh",
        "session_create_s": round(create_s, 2),
        "running_tasks": 10,
        "window_s": round(wall, 1),
        "worker_cpu_s": round(cpu1 - cpu0, 3),
        "worker_cpu_pct_of_core": pct(share),
        "bench_process_cpu_pct_of_core": pct((self1 - self0) / wall),
        "worker_rss_mb": mem.get("VmRSS"),
        "operations_list_calls_total": requests.get("GET ee operations.list", 0),
        "goal_under_2pct": share < GOAL,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_idle")
    parser.add_argument("--quick", action="store_true", help="a 10 s window")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--small-only", action="store_true",
                        help="skip the 100,000-unit sessions (fresh and near their end)")
    args = parser.parse_args(argv)
    bench_home()
    seconds = args.seconds or (10.0 if args.quick else 30.0)
    result: dict[str, Any] = {"machine": machine(), "goal_pct_of_core": pct(GOAL)}
    # 20 units of 1° at 5 km: 10 run, 10 wait in the session.
    result["small_session"] = measure_idle("[0, 0, 5, 4]", 1.0, 0, seconds, "small")
    if not args.small_only:
        # The scale job's size (100,000 units): what idling costs when the tables are big.
        result["session_100k"] = measure_idle("[-120, 30, -110, 40]", 0.1, 10, seconds,
                                              "100k")
        result["session_100k_late"] = measure_idle("[-120, 30, -110, 40]", 0.1, 10, seconds,
                                                   "100k-late", late=True)
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
