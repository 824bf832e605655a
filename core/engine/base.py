"""What every room of the worker shares: the session's store and job, the backends, the
limits, and the few helpers each room uses (set a unit's state, log an event, say why work
waits). The rooms (commands, monitor, admission, outputs, downloads) build on this and never
on each other; core/engine/worker.py puts them together and runs the loop."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import humanize

from core.backends.drive import Drive
from core.backends.earthengine import EarthEngine
from core.engine.memory import MemoryLessons
from core.grid import child_id, pixel_size, split_bounds
from core.naming import file_prefix, legacy_file_prefix
from core.periods import Period, unit_id
from core.spec import JobSpec
from core.states import SPLIT
from core.store import Store

log = logging.getLogger("eebatch.worker")

WAIT_OVER = {"drive": "Drive has room again: exports resume",
             "disk": "the output disk has room again: downloads and exports resume",
             "ee-down": "Earth Engine answers again: exports resume",
             "drive-down": "Drive answers again: downloads resume",
             "direct-down": "Earth Engine's direct route answers again: direct requests resume",
             "eecu": "the EECU cap has room again: exports resume",
             "restricted": "EE no longer restricts the project: exports resume"}
# "direct": computePixels and computeFeatures, which the real service serves on an endpoint of
# their own (high-volume): out while EE's other calls answer, or the other way round.
SERVICE_NAMES = {"ee": "Earth Engine", "drive": "Drive", "direct": "Earth Engine's direct route"}
# How far EE's clock (operation createTime) may be off ours (attempt created) before a search
# for a task EE does not list gives up on older pages.
CLOCK_SKEW = 3600.0


@dataclass
class Backends:
    ee: EarthEngine
    drive: Drive | None  # None when the export goes to assets or Cloud Storage


class WorkerBase:
    """State every room reads (set up by Worker.__init__); each room's own state is set up
    by its `_init_*` method."""

    store: Store
    spec: JobSpec
    ee: EarthEngine
    drive: Drive | None
    limits: Any
    output_dir: Path
    tick: float
    rng: random.Random
    wake: threading.Event
    waits: dict[str, str]
    loud_waits: set[str]
    down: dict[str, float]  # "ee" / "drive" -> since when it has not answered
    stop_event: threading.Event  # set when the worker is to stop (run's `stop`)
    model_recipe: Any  # the job's Recipe when it trains a model (training.py), else None
    models_ready: dict[str, str]  # model key -> its asset, once trained (training.py)
    one_period: bool  # the job has one period: its model is the job's (training.py)
    restricted: bool  # EE says the project is in restricted mode (monitor.py)
    memory: MemoryLessons  # what memory failures taught (memory.py; admission.py sets it up)
    manifest_due: bool  # a file was verified since the manifest was written (downloads.py)
    finished: Any  # deque of when units finished, for throughput (worker.py)
    recovered: set[str]  # units exported before this start (worker.py)

    def _event(self, message: str, level: str = "info", unit: str | None = None) -> None:
        getattr(log, level if level != "warning" else "warning")(
            f"{unit + ': ' if unit else ''}{message}")
        with self.store.tx():
            self.store.log(message, level, unit)

    def _wait(self, cause: str, why: str | None, *, loud: bool = True) -> None:
        """Say why work is held back (None: it no longer is). The dashboard shows every wait
        (worker_status); a loud one is also logged when it starts and when it ends."""
        was = self.waits.get(cause)
        if why is None:
            if was is not None:
                del self.waits[cause]
                if cause in self.loud_waits:
                    self.loud_waits.discard(cause)
                    self._event(WAIT_OVER[cause])
            return
        self.waits[cause] = why
        if loud and cause not in self.loud_waits:
            self.loud_waits.add(cause)
            self._event(why, "warning")
        elif not loud:
            self.loud_waits.discard(cause)

    def _unreachable(self, service: str, message: str) -> None:
        """`service` ("ee", "drive" or "direct") is down (503s, refused connections): nothing that
        waits for it fails or counts a try meanwhile; the wait says since when, and why."""
        since = self.down.setdefault(service, time.time())
        self._wait(f"{service}-down", f"{SERVICE_NAMES[service]} unreachable since "
                   f"{time.strftime('%H:%M:%S', time.localtime(since))} ({message}); "
                   "nothing fails meanwhile, retrying")

    def _reachable(self, service: str) -> None:
        if self.down.pop(service, None) is not None:
            self._wait(f"{service}-down", None)

    def model_of(self, period: str) -> tuple[str, str | None]:
        """(model key, its asset once it is trained, else None) for a unit of `period`, of a
        job whose recipe trains a model (core/engine/training.py)."""
        assert self.model_recipe is not None and self.spec.recipe is not None
        key = ("job" if self.one_period else
               self.model_recipe.model_key(self.spec.recipe.params, period))
        return key, self.models_ready.get(key)

    def _saw_operation(self, attempt: Any, op: Any) -> None:
        """Each poll, for each of the job's operations EE reported (the monitor calls it; the
        cost guard listens for run times)."""

    def _split(self, unit: str, message: str) -> None:
        """Replace the unit by its four quarters (inside a transaction). They go ahead of the
        units not yet sent (priority), so the job's tail does not wait on them."""
        row = self.store.unit(unit)
        assert row is not None
        period = Period(row["period"], None, None)
        children = []
        # On an aligned grid the cut stays on the pixel lattice: the quarters mosaic seamlessly.
        pixel = pixel_size(self.spec) if self.spec.grid.align else None
        for q, (w, s, e, n) in enumerate(split_bounds((row["west"], row["south"], row["east"],
                                                        row["north"]), pixel)):
            tile = child_id(row["tile"], q)
            children.append((unit_id(tile, period, row["batch"]), tile, row["row"], row["col"],
                             row["depth"] + 1, unit, row["period"], row["start"], row["end"],
                             w, s, e, n, row["est_pixels"] // 4, row["est_bytes"] // 4,
                             max(row["priority"], 1), time.time(), row["batch"], row["route"]))
        self.store.add_children(children)
        self.store.set_unit(unit, SPLIT, error=message)
        self.store.log(f"{message} -> split into 4 tiles", "warning", unit)

    def _final(self, row: Any) -> Path:
        """Where a verified file lives: output_dir/PERIOD/TITLE for a job cut into periods
        (time.period_folders, on by default), else output_dir/TITLE."""
        time_spec = self.spec.time
        if time_spec is not None and time_spec.period_folders:
            period = self.store.unit(row["unit"])["period"]
            if period != "all":
                return self.output_dir / period / row["title"]
        return self.output_dir / row["title"]

    def _wake_up(self, _future: Future[Any]) -> None:
        self.wake.set()

    def _prefix(self, unit: str, attempt: Any) -> str:
        """The fileNamePrefix of `unit`'s export: the one its attempt was sent with (an
        attempt of an earlier version stored none: the unit id as it was then)."""
        export = self.spec.export
        if attempt is None:
            return file_prefix(export.prefix, self.spec.name, unit)
        return attempt["prefix"] or legacy_file_prefix(export.prefix, self.spec.name, unit)

    @staticmethod
    def _counts_text(counts: dict[str, int]) -> str:
        return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def fsync_dir(path: Path) -> None:
    """A rename into `path` survives a power cut once the directory itself is synced."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _size(n: float) -> str:
    return humanize.naturalsize(n, format="%.3g")
