"""Shared pieces of the benchmarks: the emulator and job files, simulated-time bookkeeping,
process CPU and memory from /proc, request counters, and the machine the run was made on.

Benchmarks are run as modules (`python -m tests.bench`), never collected by pytest (their
files are named bench_*.py). They print JSON; every goal is checked against a number measured
in the same run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.jobs import job_text, toml_value

CLK_TCK = os.sysconf("SC_CLK_TCK")


def bench_home() -> Path:
    """Every benchmark keeps its sessions, logs and outputs under one temporary EEBATCH_HOME
    (never the user's real sessions)."""
    home = os.environ.get("EEBATCH_HOME")
    if not home:
        home = tempfile.mkdtemp(prefix="eebatch-bench-")
        os.environ["EEBATCH_HOME"] = home
    return Path(home)


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary directory removed afterwards (downloads can be gigabytes)."""
    path = Path(tempfile.mkdtemp(prefix=f"eebatch-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- job files --------------------------------------------------------------------------------



def write_job(directory: Path, *, name: str, url: str, bbox: str, size: float, scale: int,
              months: int = 0, folder: str = "bench", max_tasks: int = 10,
              drive_budget: int = 10**12, poll_seconds: float = 30.0,
              download_workers: int = 4) -> Path:
    time = {"start": dt.date(2023, 1, 1), "end": dt.date(2023, 1 + months, 1),
            "step": "1 month"} if months else None
    path = directory / f"{name}.toml"
    path.write_text(job_text(
        name, output_dir=str(directory / "out"), region={"bbox": toml_value(bbox)},
        grid={"size": size}, time=time, export={"folder": folder, "scale": scale},
        limits={"max_tasks": max_tasks, "drive_budget": drive_budget,
                "poll_seconds": poll_seconds, "download_workers": download_workers},
        emulator=url))
    return path


# -- the emulator over HTTP -------------------------------------------------------------------

def admin(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def wall_to_sim(emu: Any) -> Any:
    """wall time -> the emulator's simulated time: linear, sim = s0 + (wall - w0) * speed."""
    w0, s0, speed = time.time(), emu.ee.clock.now(), emu.config.speed
    return lambda wall: s0 + (wall - w0) * speed


class ClockWatch:
    """Whether the wall clock stepped during a run. Stored times (the store's, time.time())
    are turned into simulated time linearly (wall_to_sim), while the emulator's clock runs on
    time.monotonic(): a step of the system clock (this shared VM's clock was seen to jump
    ~54 s mid-run) shifts every later stored time by step x speed simulated seconds."""

    def __init__(self) -> None:
        self.wall, self.mono = time.time(), time.monotonic()

    def step_s(self) -> float:
        return round((time.time() - self.wall) - (time.monotonic() - self.mono), 2)


def requests_since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Counter difference, without the admin routes the benchmark itself calls."""
    out = {}
    for route, n in after.items():
        delta = n - before.get(route, 0)
        if delta and not route.split(" ", 2)[1].startswith("admin"):
            out[route] = delta
    return dict(sorted(out.items()))


class DirectRecorder:
    """Every direct request the emulator admits (in-process): its arrival on the simulated
    clock and the seconds the emulator's direct model plans for it (pixels.py DirectModel),
    so a benchmark knows when a run's first request went out and the direct model's own
    bound, max(total request seconds / requests in flight, longest request)."""

    def __init__(self, model: Any) -> None:
        self.lock = threading.Lock()
        self.arrivals: list[float] = []
        self.seconds: list[float] = []
        plan, clock = model.plan, model.clock

        def recorded(job: Any) -> Any:  # the plan itself is unchanged
            p = plan(job)
            with self.lock:
                self.arrivals.append(clock.now())
                self.seconds.append(p.seconds)
            return p

        model.plan = recorded

    def first(self) -> float | None:
        return min(self.arrivals, default=None)

    def lower_bound(self, in_flight: int) -> float | None:
        if not self.seconds:
            return None
        return max(sum(self.seconds) / in_flight, max(self.seconds))


def per_unit(requests: dict[str, int], units: int) -> dict[str, float]:
    return {route: round(n / units, 3) for route, n in requests.items()}


# -- processes --------------------------------------------------------------------------------

def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of a process (all its threads) from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def memory_mb(pid: int | str = "self") -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def eebatch_command() -> list[str]:
    """`eebatch` as a user runs it: the entry point `tui.cli:main`, run by this interpreter
    (so a PYTHONPATH pointing at another checkout benchmarks that checkout)."""
    import sys

    return [sys.executable, "-m", "tui.cli"]


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})}, start_new_session=True)


# -- the machine ------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    ram_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            ram_kb = int(line.split()[1])
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_gb": round(ram_kb / 1024**2, 1),
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def pct(x: float) -> float:
    return round(100 * x, 2)
