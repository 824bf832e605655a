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
            # The parts are EE assets: merging them is an EE export of its own, which deletes
            # (the parts) only when the user agrees; so it is asked for, not done here.
            if self.makes_tables and "assets" not in self.assembly_said:
                self.assembly_said.add("assets")
                self._event(f"the job's tables are assets in {self.spec.export.asset_folder}; "
                            f"`eebatch assets merge {self.store.id}` merges them into one and "
                            "then deletes the parts, after asking")
            return
        self._hand_over(plan(self.store.product_files(), self.spec, tables=True))

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
