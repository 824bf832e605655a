"""The worker's assembly room: a period's mosaic as soon as every unit of it is settled, and at
the job's end every product not yet current (the merged table of a table recipe included).

Out of the loop's way: the loop asks the store, at most once a second, which periods settled
since it last looked (the units changed since then, through an index), and hands the products
to one thread of their own; GDAL's work never holds up polls, submits or downloads. Products
are made only of verified files the store records, and one already made of exactly those files
is left alone, so after a restart (kill -9 included) the first look finds what a crash left
undone. A product that fails fails no unit: a warning, and `eebatch assemble` tries again.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from core.assembly.products import Outcome, make, output_kind, plan
from core.assembly.rasters import Cancelled
from core.assets import AssetsError, merge
from core.backends.failures import classify_exception
from core.engine.base import WorkerBase

LOOK_EVERY = 1.0  # seconds between looks for periods that settled


class Assembly(WorkerBase):
    def _init_assembly(self) -> None:
        self.assembly_pool = ThreadPoolExecutor(max_workers=1,
                                                thread_name_prefix="eebatch-assembly")
        self.assembling: list[Future[Outcome | None]] = []
        # Units settled since this time are looked at; None: every settled period (a start).
        self.assembly_since: float | None = None
        self.assembly_due = 0.0
        self.assembly_cancel = threading.Event()  # the worker stops: queued products wait
        self.assembly_said: set[str] = set()  # notes said once (tables in a format not merged)
        self.makes_tables = output_kind(self.spec) == "table"

    def assemble_settled(self) -> None:
        """Each tick: fold finished products in; at most once a second, assemble the periods
        whose units all settled since the last look."""
        self._fold_assembly()
        now = time.time()
        if now < self.assembly_due:
            return
        self.assembly_due = now + LOOK_EVERY
        since, self.assembly_since = self.assembly_since, now
        if self.makes_tables:  # one table per job, made at its end
            return
        periods = self.store.settled_periods(since)
        if periods:
            self._hand_over(plan(self.store.product_files(periods), self.spec, tables=False))

    def assemble_job(self) -> None:
        """At the job's end (or at a start that finds it finished): every product that is not
        made of exactly the files now verified."""
        self.assembly_since = time.time()
        if self.spec.export.destination == "asset":
            if self.makes_tables:
                self._merge_assets()
            return
        self._hand_over(plan(self.store.product_files(), self.spec, tables=True))

    def _merge_assets(self) -> None:
        """A table job exported to EE assets: its parts merged into one asset (an EE export
        of its own, waited for here: the job has nothing else left to do), then the parts,
        which eebatch made, deleted once the merged asset exists. A failure fails no unit;
        `eebatch assets merge` tries again, and so does the next start."""
        def say(line: str) -> None:
            if line.startswith("merged "):
                self._event(line)

        try:
            self._event(merge(self.store, self.spec, self.ee, progress=say,
                              confirm=lambda _question: True,
                              stopped=lambda: self.stop_event.is_set()))
        except Exception as exc:
            why = str(exc) if isinstance(exc, AssetsError) else classify_exception(exc)[1]
            self._event(f"merging the job's table assets: {why}; `eebatch assets merge "
                        f"{self.store.id}` tries again", "warning")

    def _hand_over(self, works: list) -> None:  # type: ignore[type-arg]
        for work in works:
            future = self.assembly_pool.submit(make, work, cancel=self.assembly_cancel)
            future.add_done_callback(self._wake_up)
            self.assembling.append(future)

    def _fold_assembly(self) -> None:
        for future in [f for f in self.assembling if f.done()]:
            self.assembling.remove(future)
            if future.cancelled():
                continue
            exc = future.exception()
            if isinstance(exc, Cancelled):
                continue
            if exc is not None:  # make() reports its own failures; this is a bug's trace
                self._event(f"assembly failed: {type(exc).__name__}: {exc}; `eebatch "
                            f"assemble {self.store.id}` tries again", "warning")
                continue
            outcome = future.result()
            if outcome is None:
                continue
            if outcome.made:
                self._event(f"assembled {outcome.line}",
                            "warning" if outcome.problem else "info")
            elif outcome.problem:
                self._event(f"{outcome.line}; `eebatch assemble {self.store.id}` tries again",
                            "warning")
            elif outcome.line not in self.assembly_said:
                self.assembly_said.add(outcome.line)
                self._event(outcome.line)

    def finish_assembly(self, *, wait: bool) -> None:
        """The worker stops: at the job's end (`wait`) every product is made first; stopped
        before, products not started are left for the next start (which finds them)."""
        if not wait:
            self.assembly_cancel.set()
        self.assembly_pool.shutdown(wait=True, cancel_futures=not wait)
        self._fold_assembly()
