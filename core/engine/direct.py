"""The worker's direct route (core/routes.py): a unit computed by EE interactively, with no
batch slot and no Drive. An image unit is asked for on its batch export's exact grid with
computePixels, cut into requests under EE's per-request limits; a table unit with
computeFeatures. At most `limits.direct_requests` requests are in flight.

Each fetch runs on a thread of its own (daemon: a stop never waits out a five-minute
computation) and writes each request's file to TITLE.direct.part, which is decoded and checked
against the request (size, bands, grid, georeferencing) before it counts. The loop thread,
which owns the store, then moves the parts into place and marks the unit done in one
transaction; a crash before that leaves the unit 'downloading', and recover() sends it again
from the start (its parts removed): nothing is counted twice, nothing half-written counts.

Failures: 429 and 5xx are retried on the thread with backoff; the route down (503, refused)
holds the unit without counting a try, and one request at a time asks whether it is back (the
real service serves these calls on an endpoint of their own, so EE's answering polls say
nothing of it); "User memory limit exceeded." or "Computation timed out." move an auto unit
to the batch route (whose own failures split it) and split a direct one.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from core.backends.drive import VerifyError
from core.backends.failures import Kind, classify
from core.batches import unit_batch
from core.engine.base import WorkerBase, fsync_dir
from core.engine.direct_answers import Fetched, check_image, check_table, remove_parts, write_part
from core.limits import LiveLimits
from core.naming import file_prefix
from core.outputs.bands import write_band_names
from core.recipes import RECIPES
from core.recipes.build import RecipeError, UnitWork, build
from core.routes import AUTO, BATCH, DIRECT, Chunk, chunk_side, chunks, unit_grid
from core.states import DONE, DOWNLOADING, FAILED, PENDING

# Under auto, the requests in flight before any unit has come directly (see fetch_direct).
AUTO_PROBE = 4
# Under auto, a unit within this factor of the smallest that EE could not compute
# interactively, and bigger than every one it could, is foreseen to fail too: a job sends
# its biggest first, so "as big or bigger" alone never caught the next, slightly smaller,
# tile (tiles of one grid differ by a few per cent with latitude).
LESSON_FACTOR = 1.1
# Session setting: what auto has learnt of EE's interactive limit, so a restart (an SSH drop,
# a Ctrl+C) does not spend its probe's failed requests learning it again.
LESSON = "direct_lesson"
# A request that answers 429 (EE's 40 in flight, shared with the project's other use) or 5xx
# is asked again on its thread this many times, from RETRY_FIRST seconds doubling, before the
# unit's try counts as failed.
RETRIES = 6
RETRY_FIRST = 0.5
RETRY_MOST = 30.0
# While the route is down, one request asks whether it is back this many seconds after, then
# twice as long after each that finds it still down, up to poll_seconds: a lone 503 (a brief
# overload) holds the route seconds, an outage costs a request a poll.
PROBE_FIRST = 2.0


class Stopped(Exception):
    """The worker stops: a fetch gives up between requests (its unit is sent again later)."""


class Direct(WorkerBase):
    def _init_direct(self) -> None:
        self.fetches: dict[str, Future[list[Fetched]]] = {}
        recipe = self.spec.recipe
        assert recipe is not None
        self.direct_kind = RECIPES[recipe.name].output(recipe.params)
        self.direct_side = chunk_side(self.spec)
        self.direct_bands = RECIPES[recipe.name].band_names(recipe.params)
        # The fetch threads check GeoTIFFs with rasterio: imported here, on the loop thread,
        # once. Imported first by 32 threads at once (and an assembly thread), Python's import
        # locks deadlocked and 16 units FAILED with an ImportError in a reliability run.
        import rasterio.crs
        import rasterio.errors
        import rasterio.io  # noqa: F401
        # What auto learns of EE's interactive limit (see _foreseen_too_heavy): the smallest
        # unit it could not compute (pixels, unit, EE's message) and the largest it could.
        self.too_heavy_at: tuple[int, str, str] | None = None
        self.computed_up_to = 0
        self._recall_lesson()
        # While the direct route is down: when to ask it again, after how long, and the unit
        # whose request asks.
        self.direct_probe_at = 0.0
        self.direct_probe_wait = 0.0
        self.direct_probe: str | None = None

    def _recall_lesson(self) -> None:
        """What an earlier start of this session learnt; a value not of the shape written
        (an edited or damaged store) is ignored: auto then probes again, as a new job does."""
        lesson = self.store.setting(LESSON)
        try:
            heavy = lesson.get("too_heavy_at")
            if heavy is not None:
                pixels, unit, message = heavy
                self.too_heavy_at = (int(pixels), str(unit), str(message))
            self.computed_up_to = max(int(lesson.get("computed_up_to", 0)), 0)
        except (AttributeError, TypeError, ValueError):
            self.too_heavy_at, self.computed_up_to = None, 0

    def _keep_lesson(self) -> None:
        """Inside the transaction of the step that taught it."""
        self.store.set_setting(LESSON, {"too_heavy_at": self.too_heavy_at,
                                        "computed_up_to": self.computed_up_to})

    # -- the loop thread ---------------------------------------------------------------------

    def fetch_direct(self) -> None:
        """Start fetches of direct units due now, up to the request limit."""
        live = LiveLimits.of(self.limits, self.store.settings())
        if "ee" in self.down:
            # All of EE out: once a poll answers, the direct route is asked at once (its own
            # backoff, grown through the outage, would hold it up to poll_seconds more).
            self.direct_probe_at = 0.0
        if live.paused or "disk" in self.waits or "ee" in self.down or self.stopping:
            return
        limit = self.limits.direct_requests
        if self.spec.export.route == AUTO and not self.computed_up_to:
            # Until a unit has come directly, auto probes with a few requests: a job whose
            # every unit is too heavy then spends a few failed requests, not one per slot.
            limit = min(limit, AUTO_PROBE)
        if "direct" in self.down:
            # Out on its own (EE's polls answer, so they cannot say when it is back): one
            # request at a time asks (_probe_later says when); its success lets the rest go.
            if self.fetches or time.time() < self.direct_probe_at:
                return
            limit = 1
        room = limit - len(self.fetches)
        if room <= 0:
            return
        for row in self.store.units_to_send(time.time(), room, DIRECT):
            if self.model_recipe is not None and self.model_of(row["period"])[1] is None:
                continue  # its model is being trained (training.py)
            if not self._disk_has_room(int(row["est_bytes"] * self.ratio)):
                return
            if self._foreseen_too_heavy(row):
                continue
            if "direct" in self.down:
                self.direct_probe = row["id"]
            self._start_fetch(row)

    def _foreseen_too_heavy(self, row: Any) -> bool:
        """Under auto, a unit nearly as big as one EE could not compute interactively
        (LESSON_FACTOR), and bigger than every one it could, goes by batch without trying:
        each failed request is minutes of EE's time (the realistic benchmark: 300 tiles,
        every one too heavy, 20-24 EECU-hours spent on failed requests before this)."""
        if self.spec.export.route != AUTO or self.too_heavy_at is None:
            return False
        pixels, unit, message = self.too_heavy_at
        if row["est_pixels"] * LESSON_FACTOR < pixels or row["est_pixels"] <= self.computed_up_to:
            return False
        with self.store.tx():
            self.store.set_route(row["id"], BATCH)
            self.store.log(f"EE could not compute it directly (foreseen: {unit}, of "
                           f"{pixels:,} pixels, failed with {message}): it goes by the "
                           "batch route", "warning", row["id"])
        return True

    def _start_fetch(self, row: Any) -> None:
        unit = row["id"]
        work = UnitWork(unit, (row["west"], row["south"], row["east"], row["north"]),
                        row["start"], row["end"],
                        unit_batch(self.spec, row["batch"], row["start"], row["end"]),
                        model=(self.model_of(row["period"])[1]
                               if self.model_recipe is not None else None))
        try:
            kind, obj = build(self.spec, work)
        except RecipeError as exc:
            with self.store.tx():
                self.store.set_unit(unit, FAILED, error=str(exc))
                self.store.log(f"failed: {exc}", "error", unit)
            return
        with self.store.tx():
            self.store.set_unit(unit, DOWNLOADING, attempts=row["attempts"] + 1, not_before=None)
        requests = self._requests(row)
        future: Future[list[Fetched]] = Future()
        future.add_done_callback(self._wake_up)
        thread = threading.Thread(target=self._run_fetch, args=(future, kind, obj, requests),
                                  name=f"eebatch-direct-{unit}", daemon=True)
        self.fetches[unit] = future
        thread.start()

    def _requests(self, row: Any) -> list[Chunk]:
        """The unit's requests: its grid's chunks, or its one table."""
        prefix = file_prefix(self.spec.export.prefix, self.spec.name, row["id"])
        if self.direct_kind == "table":
            return [Chunk(0, 0, None, f"{prefix}.csv")]
        grid = unit_grid(self.spec, (row["west"], row["south"], row["east"], row["north"]))
        return chunks(grid, self.direct_side, prefix)

    def _direct_part(self, title: str) -> Path:
        return self.output_dir / f"{title}.direct.part"

    def collect_direct(self) -> None:
        """Fold finished fetches into the store (this thread owns it)."""
        for unit, future in list(self.fetches.items()):
            if future.done():
                del self.fetches[unit]
                exc = future.exception()
                if exc is None:
                    self._fetched(unit, future.result())
                else:
                    self._fetch_failed(unit, exc)

    def _fetched(self, unit: str, files: list[Fetched]) -> None:
        row = self.store.unit(unit)
        if row is None or row["state"] != DOWNLOADING:  # let go meanwhile (a stop)
            remove_parts(f.part for f in files)
            return
        placed: list[tuple[Fetched, Path]] = []
        try:
            for f in files:
                final = self._final({"unit": unit, "title": f.title})
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(f.part, final)
                placed.append((f, final))
            for folder in {final.parent for _, final in placed}:
                fsync_dir(folder)
        except OSError as exc:
            remove_parts(f.part for f in files)
            self._fetch_failed(unit, exc)
            return
        with self.store.tx():
            self.store.record_local_files(unit, [(f.title, f.size, f.md5, str(final))
                                                 for f, final in placed])
            self.store.set_unit(unit, DONE, error=None)
            size = sum(f.size for f in files)
            self.store.log(f"done: {size:,} bytes verified (direct, {len(files)} "
                           f"request{'s' if len(files) != 1 else ''})", "info", unit)
            if row["est_pixels"] > self.computed_up_to:
                self.computed_up_to = row["est_pixels"]
                self._keep_lesson()
        self.manifest_due = True
        if unit == self.direct_probe:
            # Asked while the route was down: it is back. (A request sent before it went
            # down says nothing of now: ending the wait on one made it flap.)
            self._reachable("direct")
            self.direct_probe, self.direct_probe_wait = None, 0.0
        if unit not in self.recovered:
            self.finished.append(time.time())
        if self.direct_bands:
            for _, final in placed:
                if final.suffix == ".tif":
                    try:
                        write_band_names(final, self.direct_bands)
                    except OSError as exc:  # a nicety: the verified file counts without it
                        self._event(f"band names for {final.name} not written: {exc}",
                                    "warning", unit)

    def _fetch_failed(self, unit: str, exc: BaseException) -> None:
        row = self.store.unit(unit)
        if row is None or row["state"] != DOWNLOADING:
            return
        again = {"attempts": max(row["attempts"] - 1, 0), "not_before": None}
        if isinstance(exc, Stopped):
            with self.store.tx():
                self.store.set_unit(unit, PENDING, only_from=(DOWNLOADING,), **again)
            return
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            # Not the unit's fault: it waits, costing no try, until the disk has room.
            with self.store.tx():
                self.store.set_unit(unit, PENDING, **again)
            self._disk_has_room(int(row["est_bytes"] * self.ratio) + 1)
            return
        if isinstance(exc, VerifyError):
            with self.store.tx():
                self._backoff(unit, row["attempts"], f"direct: {exc}")
            return
        failure = classify(exc)
        message = f"direct: {failure.message}"
        with self.store.tx():
            if failure.kind is Kind.OUTAGE:
                self.store.set_unit(unit, PENDING, error=message, **again)
            elif failure.kind is Kind.SPLIT:
                self._too_heavy(row, failure.message)
            elif failure.kind is Kind.TRANSIENT:
                self._backoff(unit, row["attempts"], message)
            else:
                self.store.set_unit(unit, FAILED, error=message)
                self.store.log(f"failed: {message}", "error", unit)
        if failure.kind is Kind.OUTAGE:
            self._unreachable("direct", failure.message)
            self._probe_later(unit)

    def _probe_later(self, unit: str) -> None:
        """When the next request asks whether the direct route is back (PROBE_FIRST)."""
        if unit == self.direct_probe:  # the one that asked found it still down
            most = max(self.limits.poll_seconds, PROBE_FIRST)
            self.direct_probe_wait = min(self.direct_probe_wait * 2, most)
            self.direct_probe = None
        elif not self.direct_probe_wait:
            self.direct_probe_wait = PROBE_FIRST
        self.direct_probe_at = time.time() + self.direct_probe_wait

    def _too_heavy(self, row: Any, message: str) -> None:
        """EE could not compute the unit interactively (inside a transaction). auto sends it
        by the batch route, whose task has more memory and 12 hours (its own failure there
        splits it); direct splits it."""
        unit = row["id"]
        if self.spec.export.route == AUTO:
            if self.too_heavy_at is None or row["est_pixels"] < self.too_heavy_at[0]:
                self.too_heavy_at = (row["est_pixels"], unit, message)
                self._keep_lesson()
            self.store.set_route(unit, BATCH)
            self.store.set_unit(unit, PENDING, error=message, not_before=None,
                                attempts=max(row["attempts"] - 1, 0))
            self.store.log(f"EE could not compute it directly ({message}): it goes by the "
                           "batch route", "warning", unit)
        elif row["depth"] < self.limits.split_depth:
            self._split(unit, message)
        else:
            self.store.set_unit(unit, FAILED, error=f"{message} (already split {row['depth']}"
                                f" times; split_depth = {self.limits.split_depth})")
            self.store.log(f"failed: {message}", "error", unit)

    def recover_direct(self) -> None:
        """After any stop (inside recover's transaction): fetches cut off start again from
        the beginning, and their parts go."""
        for row in self.store.direct_units_downloading_back_to_pending():
            remove_parts(self._direct_part(c.title) for c in self._requests(row))

    def stop_direct(self) -> None:
        """The worker stops: fetches still running are let go (their threads remove their
        parts and end at the next request); their units are sent again at the next start."""
        if not self.fetches:
            return
        with self.store.tx():
            for unit in self.fetches:
                row = self.store.unit(unit)
                if row is not None:
                    self.store.set_unit(unit, PENDING, only_from=(DOWNLOADING,),
                                        attempts=max(row["attempts"] - 1, 0), not_before=None)
        self.fetches.clear()

    # -- a fetch's own thread (never the store) ----------------------------------------------

    def _run_fetch(self, future: Future[list[Fetched]], kind: str, obj: Any,
                   requests: list[Chunk]) -> None:
        try:
            future.set_result(self._fetch(kind, obj, requests))
        except BaseException as exc:  # handed to the loop thread (collect_direct)
            future.set_exception(exc)

    def _fetch(self, kind: str, obj: Any, requests: list[Chunk]) -> list[Fetched]:
        done: list[Fetched] = []
        tag = self.spec.export.workload_tag
        try:
            for chunk in requests:
                if self.stopping:
                    raise Stopped()
                if kind == "table":
                    data = self._ask(lambda: self.ee.compute_table(obj, workload_tag=tag))
                    check_table(data)
                else:
                    grid = chunk.grid
                    assert grid is not None
                    data = self._ask(lambda g=grid: self.ee.compute_pixels(
                        obj, crs=g.crs, transform=list(g.transform), width=g.width,
                        height=g.height, workload_tag=tag))
                    check_image(data, grid, len(self.direct_bands) or None)
                part = self._direct_part(chunk.title)
                write_part(part, data)
                done.append(Fetched(chunk.title, part, len(data), hashlib.md5(data).hexdigest()))
            if self.stopping:
                raise Stopped()
        except BaseException:
            remove_parts(f.part for f in done)
            raise
        return done

    def _ask(self, call: Callable[[], bytes]) -> bytes:
        """One request, asked again on 429 and 5xx with backoff (not on EE down: the loop
        waits for EE as a whole, and not on the unit's own failures)."""
        for n in range(RETRIES + 1):
            try:
                return call()
            except Exception as exc:
                if n == RETRIES or classify(exc).kind is not Kind.TRANSIENT:
                    raise
            delay = min(RETRY_FIRST * 2**n, RETRY_MOST) * self.rng.uniform(0.5, 1.5)
            if self.stop_event.wait(delay):
                raise Stopped()
        raise AssertionError("unreachable")


__all__ = ["DIRECT", "Direct"]
