"""Queue saturation and API economy (issue 6, parts 1 and 2).

    python -m tests.bench.bench_queue [--quick] [--speed S] [--units N]

A job of 500 units on the emulator with 4 slots and a Drive budget of a quarter of the job's
output, run twice on fresh emulators at the same speed: by eebatch (`run_session`, the code
`eebatch run` uses) and by the classic loop (classic.py). For each: the makespan in simulated
seconds, from the first export sent to the last file downloaded and deleted, against the lower
bound max(total task time / slots, longest task) computed from the emulator's own task
durations; and the requests per unit by route from the emulator's counters.

Time. The emulator's queue runs `speed` simulated seconds per wall second. Everything that
waits in the loops is scaled the same way, so the run is the real thing sped up: the classic
loop sleeps 60 simulated seconds (60/speed wall), and eebatch's poll_seconds is 30 simulated
seconds (its default; 30/speed in the job file). Tasks take 60 s of overhead plus their
pixels at 4,000 pixel-bands per simulated second, ±20 % seeded jitter: 2-4 minutes each, as
small EE exports do. The default speed, 250, keeps each loop under two minutes of wall time;
faster, the loops' own wall-clock work (an export request costs ~50 ms here, i.e. 12 simulated
seconds at 250) starts to weigh more than it does against real EE.

Both loops keep 10 tasks in EE (eebatch's default max_tasks; the classic's 10 RUNNING or
READY), so EE's own queue refills a freed slot at once in both: the makespan mostly tells
whether a loop ever lets that queue run dry.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any

from tests.bench.common import (
    bench_home,
    machine,
    pct,
    per_unit,
    requests_since,
    scratch,
    write_job,
)

SLOTS = 4
MAX_TASKS = 10  # eebatch's default; the classic loop keeps 10 RUNNING or READY too
POLL_SIM = 30.0  # eebatch's default poll_seconds, in simulated seconds
CLASSIC_SLEEP_SIM = 60.0
PROJECT = "bench-queue"


def _config(speed: float) -> Any:
    from core.emulator.config import EmulatorConfig

    return EmulatorConfig(slots=SLOTS, speed=speed, task_overhead_seconds=60.0,
                          pixel_rate=4000.0, seed=6, drive_quota=15 * 10**9)


def _job_geometry(units: int) -> dict[str, Any]:
    """2° tiles at 500 m (about 1 MB and 2-4 minutes each) × 5 months; the bbox spans 0-50°N
    so tiles differ in size (the model charges ground area)."""
    months = 5
    tiles = max(units // months, 1)
    cols = 10 if tiles >= 10 else tiles
    rows = max(tiles // cols, 1)
    return {"bbox": f"[0, 0, {2 * cols}, {2 * rows}]", "size": 2, "scale": 500,
            "months": months}


class DriveWatch:
    """Samples the emulated Drive's usage (in-process) to report the peak each loop held."""

    def __init__(self, drive: Any) -> None:
        self.drive = drive
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.drive.quota_used())

    def __enter__(self) -> DriveWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _task_stats(emu: Any) -> dict[str, Any]:
    """From the emulator object itself: every task (GET /_emulator/state lists only the
    newest 500), its planned duration and its start/end on the simulated clock."""
    with emu.ee.model.lock:
        tasks = list(emu.ee.model.tasks.values())
    ran = [t for t in tasks if t.start_time is not None]
    durations = [t.duration for t in ran]
    total = sum(durations)
    first = min(t.create_time for t in tasks)
    last_end = max(t.end_time or 0.0 for t in tasks)
    lower = max(total / SLOTS, max(durations))
    return {
        "tasks": len(tasks),
        "states": emu.ee.model.counts(),
        "task_seconds_total": round(total, 1),
        "task_seconds_mean": round(total / len(durations), 1),
        "task_seconds_max": round(max(durations), 1),
        "lower_bound_s": round(lower, 1),
        "first_submit": first,
        "ee_span_s": round(last_end - first, 1),
        "slot_utilisation_pct": pct(total / (SLOTS * (last_end - first))),
    }


def _wall_to_sim(emu: Any) -> Any:
    """The simulated clock is linear in wall time: sim = s0 + (wall - w0) * speed."""
    w0, s0, speed = time.time(), emu.ee.clock.now(), emu.config.speed
    return lambda wall: s0 + (wall - w0) * speed


def run_eebatch(speed: float, units: int, output_bytes: int | None = None,
                budget_fraction: float = 0.25) -> dict[str, Any]:
    from core.emulator.app import Emulator
    from core.engine.runner import run_session
    from core.engine.worker import Worker
    from core.plan import make_plan
    from core.session import create_session
    from core.spec import load_spec

    geometry = _job_geometry(units)
    polls: list[float] = []
    original = Worker.poll

    def counted(self: Worker, **kwargs: Any) -> None:  # counts polls; the poll is unchanged
        polls.append(time.time())
        original(self, **kwargs)

    with scratch("queue") as tmp, Emulator(_config(speed)) as emu:
        # The budget is a quarter of the job's output: as the classic run measured it (the
        # same exports give the same files), else the plan's estimate.
        if output_bytes is None:
            probe = write_job(tmp, name="queue", url=emu.url, **geometry)
            output_bytes = make_plan(load_spec(probe)).est_bytes
        budget = int(output_bytes * budget_fraction)
        job = write_job(tmp, name="queue", url=emu.url, max_tasks=MAX_TASKS,
                        drive_budget=budget, poll_seconds=POLL_SIM / speed,
                        download_workers=4, **geometry)
        store, plan = create_session(job)
        path = store.path
        store.close()
        to_sim = _wall_to_sim(emu)
        before = emu.state()["requests"]
        Worker.poll = counted  # type: ignore[method-assign]
        try:
            with DriveWatch(emu.drive) as watch:
                wall0 = time.time()
                summary = run_session(path)
                wall = time.time() - wall0
        finally:
            Worker.poll = original  # type: ignore[method-assign]
        requests = requests_since(before, emu.state()["requests"])
        from core.store import Store

        store = Store(path)
        last_done = store.conn.execute(
            "SELECT MAX(updated) FROM files WHERE state = 'deleted'").fetchone()[0]
        files, output = store.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files").fetchone()
        verified = store.conn.execute(
            "SELECT COUNT(*) FROM files WHERE state = 'deleted' AND local_path IS NOT NULL"
        ).fetchone()[0]
        store.close()
        stats = _task_stats(emu)
    makespan = to_sim(last_done) - stats["first_submit"]
    lower = stats["lower_bound_s"]
    pages = requests.get("GET ee operations.list", 0)
    return {
        "units": plan.units, "counts": summary.counts, "ok": summary.ok,
        "wall_s": round(wall, 1),
        "makespan_s": round(makespan, 1),
        "over_lower_bound_pct": pct(makespan / lower - 1),
        "tail_after_last_task_s": round(makespan - stats["ee_span_s"], 1),
        **{k: v for k, v in stats.items() if k != "first_submit"},
        "drive_budget_bytes": budget,
        "job_output_bytes": output,
        "budget_vs_output": round(budget / output, 3) if output else None,
        "drive_peak_bytes": watch.peak,
        "files": files, "files_verified": verified,
        "polls": len(polls),
        "poll_every_sim_s": round(makespan / max(len(polls), 1), 1),
        "operations_pages_per_poll": round(pages / max(len(polls), 1), 3),
        "requests": requests,
        "requests_per_unit": per_unit(requests, plan.units),
    }


def run_classic(speed: float, units: int) -> dict[str, Any]:
    from core.emulator.app import Emulator
    from core.plan import make_plan
    from core.spec import load_spec
    from tests.bench.classic import classic_queue_loop

    geometry = _job_geometry(units)
    with scratch("classic") as tmp, Emulator(_config(speed)) as emu:
        job = write_job(tmp, name="queue", url=emu.url, **geometry)
        spec = load_spec(job)
        plan = make_plan(spec)
        keys = ("id", "tile", "row", "col", "period", "start", "end", "west", "south", "east",
                "north", "est_pixels", "est_bytes")
        rows = [dict(zip(keys, r[:len(keys)], strict=True)) for r in plan.unit_rows()]
        to_sim = _wall_to_sim(emu)
        before = emu.state()["requests"]
        with DriveWatch(emu.drive) as watch:
            wall0 = time.time()
            result = classic_queue_loop(emu.url, PROJECT, spec, rows, tmp / "out", speed,
                                        max_active=MAX_TASKS, sleep_seconds=CLASSIC_SLEEP_SIM)
            wall = time.time() - wall0
        requests = requests_since(before, emu.state()["requests"])
        stats = _task_stats(emu)
    makespan = to_sim(result.finished_wall) - stats["first_submit"]
    lower = stats["lower_bound_s"]
    pages = requests.get("GET ee operations.list", 0)
    return {
        "units": plan.units, "files": result.files, "job_output_bytes": result.bytes,
        "wall_s": round(wall, 1),
        "makespan_s": round(makespan, 1),
        "over_lower_bound_pct": pct(makespan / lower - 1),
        "tail_after_last_task_s": round(makespan - stats["ee_span_s"], 1),
        **{k: v for k, v in stats.items() if k != "first_submit"},
        "drive_peak_bytes": watch.peak,
        "iterations": result.iterations,
        "operations_pages_per_iteration": round(pages / max(result.iterations, 1), 3),
        "md5_checked": 0,
        "requests": requests,
        "requests_per_unit": per_unit(requests, plan.units),
    }


def history_pages(history: list[int]) -> dict[str, Any]:
    """operations.list pages one eebatch poll costs while 10 tasks of its job are live, as the
    project holds more finished operations from earlier jobs (EE keeps them listed for
    weeks): the worker's own poll, and next to it what reading every page would cost
    (ee.data.listOperations, what the worker did before it stopped at its own tasks)."""
    from core.backends.earthengine import EarthEngine
    from core.emulator.app import Emulator
    from core.emulator.batch import SUCCEEDED
    from core.emulator.config import EmulatorConfig
    from core.engine.runner import load_session_spec, open_backends
    from core.engine.worker import Worker
    from core.session import create_session

    out = {}
    for n in history:
        config = EmulatorConfig(slots=4, speed=1.0, task_overhead_seconds=1e6)
        with scratch("history") as tmp, Emulator(config) as emu:
            model = emu.ee.model
            for i in range(n):  # an earlier job's finished tasks
                task, _ = model.submit("eebatch-demo", "EXPORT_IMAGE", f"old_{i}", pixels=1)
                with model.lock:
                    model._end(task, SUCCEEDED, model.clock.now())
            job = write_job(tmp, name=f"history{n}", url=emu.url, bbox="[0, 0, 5, 2]",
                            size=1.0, scale=5000, max_tasks=MAX_TASKS)
            store, _ = create_session(job)
            spec = load_session_spec(store)
            worker = Worker(store, spec, open_backends(spec))
            worker.submit()  # 10 live tasks of ours, the newest operations
            before = emu.state()["requests"].get("GET ee operations.list", 0)
            worker.poll()
            pages = emu.state()["requests"]["GET ee operations.list"] - before
            ops = EarthEngine.for_emulator(emu.url, "eebatch-demo").list_operations()
            every_page = emu.state()["requests"]["GET ee operations.list"] - before - pages
            worker.pool.shutdown()
            worker.delete_pool.shutdown()
            store.close()
            out[f"history_{n}"] = {"live": sum(o.active for o in ops), "pages": pages,
                                   "pages_reading_every_page": every_page}
    return out


def audit(e: dict[str, Any], c: dict[str, Any] | None) -> list[str]:
    """Per-task polling, more than one page per poll, requests repeated without cause (each a
    line starting "FLAG"), and notes on what costs requests and why."""
    units, files, req = e["units"], e["files"], e["requests"]
    flags: list[str] = []
    if req.get("GET ee operations.get", 0):
        flags.append(f"FLAG per-task polling: {req['GET ee operations.get']} operations.get")
    if e["operations_pages_per_poll"] > 1.0:
        flags.append(f"FLAG {e['operations_pages_per_poll']} operations pages per poll")
    exports = sum(n for r, n in req.items() if r.endswith(".export"))
    if exports > units:
        flags.append(f"FLAG {exports - units} exports sent more than once")
    if req.get("GET drive files.get", 0) > files:
        flags.append(f"FLAG {req['GET drive files.get'] - files} downloads repeated")
    if req.get("DELETE drive files.delete", 0) > files:
        flags.append(f"FLAG {req['DELETE drive files.delete'] - files} deletes repeated")
    about = req.get("GET drive about.get", 0)
    if about > e["polls"]:
        flags.append(f"FLAG {about - e['polls']} Drive quota reads beyond one per poll")
    flags.append(f"note: Drive quota reads (about.get) {about / units:.2f} per unit: at each "
                 "poll only while the job is near its Drive budget or admission waits for "
                 "space, else every 10th poll; the classic loop reads none (and overfills)")
    flags.append(f"note: files.list {req.get('GET drive files.list', 0) / units:.2f} per unit: "
                 "one listing per poll that saw exports finish, plus a folder search at start "
                 "and whenever a unit's files are not in the folders known")
    if c is not None:
        flags.append(
            f"note: operations.list {e['polls'] / units:.2f} per unit (a poll every "
            f"{e['poll_every_sim_s']:.0f} simulated s) vs the classic loop's "
            f"{c['requests'].get('GET ee operations.list', 0) / units:.2f} (every "
            f"{CLASSIC_SLEEP_SIM:.0f} s + its own work)")
    return flags


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_queue")
    parser.add_argument("--quick", action="store_true", help="100 units instead of 500")
    parser.add_argument("--units", type=int, default=None)
    parser.add_argument("--speed", type=float, default=250.0,
                        help="simulated seconds per wall second (default 250)")
    parser.add_argument("--skip-classic", action="store_true",
                        help="eebatch only (the Drive budget then comes from the plan)")
    args = parser.parse_args(argv)
    bench_home()
    units = args.units or (100 if args.quick else 500)
    result: dict[str, Any] = {"machine": machine(), "speed": args.speed, "slots": SLOTS,
                              "max_tasks": MAX_TASKS, "poll_seconds_sim": POLL_SIM,
                              "classic_sleep_sim": CLASSIC_SLEEP_SIM}
    c = None if args.skip_classic else run_classic(args.speed, units)
    e = run_eebatch(args.speed, units, c["job_output_bytes"] if c else None)
    result["eebatch"] = e
    result["budget_basis"] = "the classic run's output" if c else "the plan's estimate"
    if c is not None:
        result["classic"] = c
        result["makespan_classic_vs_eebatch"] = round(c["makespan_s"] / e["makespan_s"], 3)
        result["requests_per_unit_classic_vs_eebatch"] = round(
            sum(c["requests"].values()) / max(sum(e["requests"].values()), 1), 3)
    result["operations_pages_vs_history"] = history_pages([0, 490, 2000] if not args.quick
                                                          else [0, 2000])
    result["flags"] = audit(e, c)
    grown = {k: v["pages"] for k, v in result["operations_pages_vs_history"].items()
             if v["pages"] > 1}
    if grown:
        result["flags"].append(
            "FLAG operations.list pages per poll grow with the project's finished operations "
            f"({grown}, 10 live each)")
    result["goal_within_5pct_of_lower_bound"] = e["over_lower_bound_pct"] <= 5.0
    result["goal_one_page_per_poll"] = e["operations_pages_per_poll"] <= 1.0
    result["goal_one_page_per_poll_with_history"] = not grown
    result["goal_no_per_task_polling"] = e["requests"].get("GET ee operations.get", 0) == 0
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
