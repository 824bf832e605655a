"""Faults at ~10 % on the direct route (core/engine/direct.py) and on every other route its
worker sends: each computePixels request is, with probability RATE (seeded), answered 429,
500 or 503 with Google's texts, dropped (connection reset), answered slowly or cut short (the
full Content-Length, part of the body); EE's other routes (and Drive's, for an auto job's
batch units) get 429, 500, 503, resets and slow answers, downloads also truncated and
corrupted. Each job must end with nothing FAILED, every direct file exactly what the emulator
computed for its request's grid and period (harness.check_direct_files: a cut answer refused
and asked again), no part left, no task in EE, nothing in Drive.

Corrupted computePixels answers (bytes flipped, the length kept) get a job of their own: the
injector cannot tell the answers that will succeed from EE's 400s ("User memory limit
exceeded.", which split a tile), and an error whose JSON is garbled is no text eebatch can
classify, so it fails the unit (as it should: over HTTPS a body is whole or cut, never
flipped). So that job's tiles fit EE's memory, and its corrupted answers, each flipped every
4,096th byte from the first (the TIFF header), are no GeoTIFF: each must be refused and asked
again.

Quick: a direct job of 8 tiles x 3 months whose southern tiles split on the direct route, and
the corruption job (8 tiles x 2 months). Full: the same of 20 tiles, an auto job of 24 tiles
x 2 months (_direct.new_auto_session: a third of the units moved to batch, some split there),
and a probe: answers corrupted among
their pixels only (three bytes flipped mid-body: the GeoTIFF still opens, same size, same
grid) — what a worker that checks only a GeoTIFF's header and grid keeps.

A fault with `skip` k and `count` 1 fires on exactly the (k+1)-th request of its route, so
the seed fixes which requests fail and how, whatever the timing.
"""

from __future__ import annotations

import random
import threading
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from tests.reliability import _direct as d
from tests.reliability import harness as h
from tests.reliability.common import Result
from tests.reliability.part_faults import COMMON, DOWNLOAD_ONLY, MEDIA

RATE = 0.10
HORIZON = 600  # requests per route that may be faulted (a run sends fewer)
# What a direct or auto job's worker sends (the emulator's route names), with its matching.
EE_ROUTES: dict[str, dict[str, Any]] = {
    "ee discovery": {"route": "ee discovery"},
    "ee algorithms.list": {"route": "ee algorithms.list"},
    "ee operations.list": {"route": "ee operations.list"},
    "drive about.get": {"route": "drive about.get"},
    d.PIXELS: {"route": d.PIXELS},
}
BATCH_ROUTES: dict[str, dict[str, Any]] = {  # an auto job's batch units add these
    "ee image.export": {"route": "ee image.export"},
    "ee operations.get": {"route": "ee operations.get"},
    "drive files.list": {"route": "drive files.list"},
    "drive download": MEDIA,
    "drive files.delete": {"route": "drive files.delete"},
}
STARTUP = ("ee discovery", "ee algorithms.list", "drive about.get")  # sent once or twice
# A corrupted computePixels answer: every 4,096th of it flipped, its first bytes (the TIFF
# header, for an answer under 64 kB) among them: not a GeoTIFF any more.
BROKEN = 4096
PIXELS_ONLY = 3  # the probe's flips: in the middle of the body, among the pixels
PROBE_ANSWERS = 6  # answers the probe corrupts
END_TIMEOUT = 400.0
AUTO_MONTHS = 2


PIXEL_KINDS = [("truncated", {"kind": "truncate"}), *COMMON]
CORRUPTED = [("corrupted", {"kind": "corrupt", "flips": BROKEN})]


def fault_plan(rng: random.Random, routes: dict[str, dict[str, Any]],
               pixel_kinds: list[tuple[str, dict[str, Any]]],
               rate: float = RATE) -> list[dict[str, Any]]:
    """Faults on about `rate` of the first HORIZON requests of every route, each route's
    kinds in turn. A short run sends some routes few requests, so each gets one early (the
    startup routes on their first); computePixels gets each of `pixel_kinds` once in its
    first 16 requests, so even a quick run meets every kind there."""
    plan: list[dict[str, Any]] = []
    for name, match in routes.items():
        kinds = list(COMMON)
        rng.shuffle(kinds)
        early = {0} if name in STARTUP else set(rng.sample(range(8), 1))
        if name == d.PIXELS:
            kinds = list(pixel_kinds)
            early = set(rng.sample(range(16), max(len(kinds), 2)))
        elif name == "drive download":
            kinds = DOWNLOAD_ONLY + kinds
            early = set(rng.sample(range(8), 2))
        positions = sorted(early | {i for i in range(HORIZON) if rng.random() < rate})
        for turn, i in enumerate(positions):
            label, fault = kinds[turn % len(kinds)]
            fault = {**match, **fault, "skip": i, "count": 1}
            if label == "slow":
                fault["delay"] = round(rng.uniform(0.2, 2.0), 2)
            elif label == "truncated":
                fault["fraction"] = round(rng.uniform(0.0, 0.95), 2)
            elif label == "corrupted" and "flips" not in fault:
                fault["flips"] = rng.randint(1, 5)
            plan.append(fault)
    return plan


def _label(fault: dict[str, Any]) -> str:
    kind = fault["kind"]
    return str(fault["status"]) if kind == "status" else {
        "truncate": "truncated", "corrupt": "corrupted"}.get(kind, kind)


def _route_of(fault: dict[str, Any]) -> str:
    return "drive download" if fault.get("query_contains") else fault["route"]


def _routes_and_kinds(label: str, job: dict[str, Any]
                      ) -> tuple[dict[str, dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
    """The routes a job's faults go to and the kinds computePixels gets."""
    if label == "corrupted":
        return {d.PIXELS: EE_ROUTES[d.PIXELS]}, CORRUPTED
    auto = job["export"]["route"] == "auto"
    return {**EE_ROUTES, **(BATCH_ROUTES if auto else {})}, PIXEL_KINDS


def _faulted_job(part: Result, plan: list[dict[str, Any]], seed: int, workdir: Path,
                 label: str, job: dict[str, Any]) -> dict[str, Any]:
    """One job run to its end under its fault plan; its checks go into `part`, its numbers
    are returned."""
    auto = job["export"]["route"] == "auto"
    corrupting = label == "corrupted"
    routes, kinds = _routes_and_kinds(label, job)
    log = workdir / "worker.log"
    # The corruption job's tiles fit EE's memory for a direct request (no 400 to garble).
    config = d.emulator_config(seed, **({"direct_memory_limit_pixels": 10**9} if corrupting
                                        else d.AUTO_MEMORY if auto else {}))
    with h.emulator(**config) as (emu, ledger):
        session = (d.new_auto_session(workdir, emu.url, AUTO_MONTHS, name=label) if auto
                   else h.new_session(workdir, emu.url, **job))
        h.faults(emu.url, plan)
        code = h.run_to_end(session, log, END_TIMEOUT)
        fired = [f for f in h.admin(emu.url, "/_emulator/faults")["faults"] if f["fired"]]
        sent = {route.split(" ", 1)[1]: n for route, n in h.state(emu.url)["requests"].items()
                if not route.split(" ", 2)[1].startswith("admin")}
        h.clear_faults(emu.url)
        part.check("the worker finished the job (exit 0) with nothing FAILED", code == 0,
                   f"exit {code}\n{h.tail(log)}")
        h.check_finished_job(part, emu.url, ledger, session)
        by_route = Counter(_route_of(f) for f in fired)
        on_pixels = Counter(_label(f) for f in fired if _route_of(f) == d.PIXELS)
        used = {r for r in routes if r != "ee operations.get"}  # sent only for a lost task
        unfaulted = sorted(used - set(by_route))
        part.check("a fault fired on every route the worker used", not unfaulted,
                   ", ".join(unfaulted))
        missing = sorted({k for k, _ in kinds} - set(on_pixels))
        part.check("every kind of fault fired on computePixels", not missing,
                   ", ".join(missing))
        refused = h.scalar(session, "SELECT COUNT(*) FROM events WHERE message LIKE"
                                    " '%the GeoTIFF EE sent does not open%'")
        if corrupting:
            part.check("each corrupted answer was refused (not a GeoTIFF) and asked again",
                       refused == on_pixels["corrupted"] > 0,
                       f"{on_pixels['corrupted']} corrupted, {refused} refused")
        elif auto:
            part.check("auto sent units both ways (direct, and moved to batch)",
                       d.moved(session) > 0 and d.routes(session).get("direct", 0) > 0,
                       f"{d.routes(session)}, {d.moved(session)} moved")
        else:
            part.check("tiles split on the direct route", d.split_direct(session) > 0,
                       f"{d.split_direct(session)} split")
        numbers = {"faults": len(fired), "requests": sum(sent.values()),
                   "pixels_requests": sent.get(d.PIXELS, 0),
                   "pixels_faults": sum(on_pixels.values()), "refused": refused,
                   **({"moved": d.moved(session)} if auto else {}),
                   **({"split_direct": d.split_direct(session)} if not auto else {}),
                   **part.numbers,
                   **{f"fired_{k}": n for k, n in sorted(on_pixels.items())}}
    return numbers


def _probe(result: Result, seed: int, workdir: Path) -> dict[str, Any]:
    """Answers corrupted among their pixels only: does the worker keep them?"""
    log = workdir / "worker.log"
    part = Result(part="direct_faults", tried="")
    with h.emulator(**d.emulator_config(seed, direct_memory_limit_pixels=10**9)) as (emu,
                                                                                      ledger):
        session = h.new_session(workdir, emu.url, **d.job("direct", d.QUICK_BBOX, 1))
        h.faults(emu.url, [{"route": d.PIXELS, "kind": "corrupt", "flips": PIXELS_ONLY,
                            "count": PROBE_ANSWERS}])
        code = h.run_to_end(session, log, END_TIMEOUT)
        fired = sum(f["fired"] for f in h.admin(emu.url, "/_emulator/faults")["faults"])
        part.check("the worker finished the job (exit 0)", code == 0,
                   f"exit {code}\n{h.tail(log)}")
        h.check_finished_job(part, emu.url, ledger, session)
    name = "every direct file's bytes are what computePixels computed for its grid"
    kept = "; ".join(c.detail for c in part.checks if c.name == name and not c.held)
    result.check("pixels-only probe: answers corrupted among their pixels (the GeoTIFF still"
                 " opens) are refused", not kept,
                 f"{fired} answers had {PIXELS_ONLY} bytes flipped mid-body; kept: {kept}")
    for check in part.checks:
        if check.name != name and not check.held:
            result.check(f"pixels-only probe: {check.name}", False, check.detail)
    return {"probe_corrupted": fired}


def run(quick: bool, seed: int, workdir: Path) -> Result:
    rng = random.Random(seed)
    result = Result(part="direct_faults", tried="")
    bbox = d.QUICK_BBOX if quick else d.FULL_BBOX
    jobs = [("direct", d.job("direct", bbox, 3, name="direct")),
            ("corrupted", d.job("direct", bbox, 2, name="corrupted"))]
    if not quick:
        jobs.append(("auto", {"export": {"route": "auto"}}))  # d.new_auto_session's
    plans = [fault_plan(rng, *_routes_and_kinds(label, job)) for label, job in jobs]
    parts = [Result(part="direct_faults", tried="") for _ in jobs]
    numbers: list[dict[str, Any]] = [{} for _ in jobs]

    def one(i: int) -> None:
        label, job = jobs[i]
        try:
            numbers[i] = _faulted_job(parts[i], plans[i], seed, workdir / label, label, job)
        except Exception:
            parts[i].check("the job ran without an exception", False, traceback.format_exc())

    # The jobs run at once, each on its own emulator (the seed fixes each one's faults).
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    probe = _probe(result, seed, workdir / "probe") if not quick else {}
    for thread in threads:
        thread.join()
    said = []
    for (label, _), part, got in zip(jobs, parts, numbers, strict=True):
        for check in part.checks:
            result.check(f"{label}: {check.name}", check.held, check.detail)
        result.skipped += part.skipped
        result.numbers.update({f"{label}_{k}": v for k, v in got.items()})
        if got:
            said.append(f"{label} job of {got['units']} units: {got['faults']} faults on"
                        f" {got['requests']} requests"
                        f" ({100 * got['faults'] / max(got['requests'], 1):.0f} %),"
                        f" {got['pixels_faults']} of {got['pixels_requests']} on"
                        " computePixels")
    result.numbers.update(probe)
    result.tried = ("; ".join(said) + ": 429/500/503, resets, slow and truncated answers on"
                    " every route, corrupted computePixels answers and downloads"
                    + ("" if quick else "; a probe of answers corrupted among their pixels"))
    return result
