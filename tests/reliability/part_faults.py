"""Faults at ~10 % on every route eebatch uses: each request of a route is, with probability
RATE (seeded), answered 429, 500 or 503 with Google's texts, dropped (connection reset), or
answered slowly; downloads are also truncated or corrupted. The job (with some "Internal
error." and tiles that split, as a real one) must end with nothing FAILED, and the finished
job's invariants (harness.check_finished_job) hold.

A fault with `skip` k and `count` 1 fires on exactly the (k+1)-th request of its route, so
the seed fixes which requests fail and how, whatever the timing.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

from tests.reliability import harness as h
from tests.reliability.common import Result

RATE = 0.10
# Every route a job's worker sends (the emulator's route names), with its own matching.
MEDIA = {"method": "GET", "route": "drive files.get", "query_contains": "alt=media"}
ROUTES: dict[str, dict[str, Any]] = {
    "ee discovery": {"route": "ee discovery"},
    "ee algorithms.list": {"route": "ee algorithms.list"},
    "ee image.export": {"route": "ee image.export"},
    "ee operations.list": {"route": "ee operations.list"},
    "ee operations.get": {"route": "ee operations.get"},
    "drive about.get": {"route": "drive about.get"},
    "drive files.list": {"route": "drive files.list"},
    "drive download": MEDIA,
    "drive files.delete": {"route": "drive files.delete"},
}
STARTUP = ("ee discovery", "ee algorithms.list")  # sent once or twice, at the start
HORIZON = 600  # requests per route that may be faulted (a run sends fewer)
# The faults every route may get, and those only a download can: (name, fault fields).
COMMON: list[tuple[str, dict[str, Any]]] = [
    ("429", {"kind": "status", "status": 429}),
    ("500", {"kind": "status", "status": 500}),
    ("503", {"kind": "status", "status": 503}),
    ("reset", {"kind": "reset"}),
    ("slow", {"kind": "slow"}),  # delay drawn per fault
]
DOWNLOAD_ONLY: list[tuple[str, dict[str, Any]]] = [
    ("truncated", {"kind": "truncate"}),
    ("corrupted", {"kind": "corrupt"}),
]
QUICK_JOB = {"bbox": "[0.2, 44, 1.8, 48]"}  # 8 tiles, ~23 units to export
FULL_JOB = {"bbox": "[0.2, 43, 3.8, 48]",  # 20 tiles x 2 months, ~100 units to export
            "extra": '\n[time]\nstart = "2023-06-01"\nend = "2023-08-01"\nstep = "1 month"\n'}
MEMORY_LIMIT = 2200  # the southern tiles split (see part_kill9)
END_TIMEOUT = 400.0


def fault_plan(rng: random.Random, rate: float = RATE,
               horizon: int = HORIZON) -> list[dict[str, Any]]:
    """Faults on about `rate` of the first `horizon` requests of every route. Each route also
    gets some early on (a job of a few units sends a route few requests: the startup routes
    once), and its kinds in turn, downloads' own first, so a short run meets every kind."""
    plan: list[dict[str, Any]] = []
    for name, match in ROUTES.items():
        kinds = list(COMMON)
        rng.shuffle(kinds)
        early = {0} if name in STARTUP else set(rng.sample(range(8), 1))
        if name == "drive download":
            kinds = DOWNLOAD_ONLY + kinds
            early = set(rng.sample(range(8), 2))
        positions = sorted(early | {i for i in range(horizon) if rng.random() < rate})
        for turn, i in enumerate(positions):
            label, fault = kinds[turn % len(kinds)]
            fault = {**match, **fault, "skip": i, "count": 1}
            if label == "slow":
                fault["delay"] = round(rng.uniform(0.2, 2.0), 2)
            elif label == "truncated":
                fault["fraction"] = round(rng.uniform(0.0, 0.95), 2)
            elif label == "corrupted":
                fault["flips"] = rng.randint(1, 5)
            plan.append(fault)
    return plan


def _label(fault: dict[str, Any]) -> str:
    kind = fault["kind"]
    return str(fault["status"]) if kind == "status" else {
        "truncate": "truncated", "corrupt": "corrupted"}.get(kind, kind)


def _route_of(fault: dict[str, Any]) -> str:
    return "drive download" if fault.get("query_contains") else fault["route"]


def run(quick: bool, seed: int, workdir: Path) -> Result:
    rng = random.Random(seed)
    job = QUICK_JOB if quick else FULL_JOB
    result = Result(part="faults", tried="")
    log = workdir / "worker.log"
    with h.emulator(speed=20.0, task_overhead_seconds=20.0, slots=4, seed=seed,
                    memory_limit_pixels=MEMORY_LIMIT, internal_error_rate=0.05) as (emu, ledger):
        session = h.new_session(workdir, emu.url, size=1.0, scale=2000, max_tasks=4,
                                split_depth=2, max_attempts=10, **job)
        h.faults(emu.url, fault_plan(rng))
        code = h.run_to_end(session, log, END_TIMEOUT)
        fired = [f for f in h.admin(emu.url, "/_emulator/faults")["faults"] if f["fired"]]
        sent = {route: n for route, n in h.state(emu.url)["requests"].items()
                if not route.split(" ", 2)[1].startswith("admin")}
        h.clear_faults(emu.url)
        result.check("the worker finished the job (exit 0) with nothing FAILED", code == 0,
                     f"exit {code}\n{h.tail(log)}")
        h.check_finished_job(result, emu.url, ledger, session)

    by_kind = Counter(_label(f) for f in fired)
    by_route = Counter(_route_of(f) for f in fired)
    used = {r for r in ROUTES if r != "ee operations.get"}  # sent only when a task is lost
    unfaulted = sorted(used - set(by_route))
    result.check("a fault fired on every route the worker used", not unfaulted,
                 ", ".join(unfaulted))
    kinds = {label for label, _ in COMMON + DOWNLOAD_ONLY}
    result.check("every kind of fault fired", kinds <= set(by_kind),
                 ", ".join(sorted(kinds - set(by_kind))))
    total = sum(sent.values())
    result.tried = (f"{len(fired)} faults on {total} requests ({100 * len(fired) / total:.0f} %)"
                    f" of every route ({len(by_route)} routes): 429/500/503, resets, slow"
                    " answers, truncated and corrupted downloads")
    result.numbers.update({f"fired_{k}": n for k, n in sorted(by_kind.items())})
    result.numbers["requests"] = total
    return result

