"""The worker loop. It reads and writes only through the session store, so a UI in another
process can watch and steer it, and it is crash-only: every step is committed before the next
one depends on it, and `recover()` makes a restart after kill -9 continue where it stopped.

One thread runs the loop and owns the store connection; a pool of threads downloads and
deletes Drive files and hands results back through futures.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from core.engine.admission import Admission
from core.engine.assembly import Assembly
from core.engine.base import Backends, _size
from core.engine.commands import Commands
from core.engine.costs import Costs
from core.engine.direct import Direct
from core.engine.downloads import MANIFEST_EVERY, Downloads
from core.engine.monitor import Monitor
from core.engine.outputs import Outputs
from core.engine.training import Training
from core.limits import PAUSED, LiveLimits
from core.outputs.manifest import NAME as MANIFEST
from core.spec import JobSpec
from core.states import (
    CANCELLED,
    DOWNLOADING,
    EXPORTED,
    FAILED,
    UNFINISHED,
)
from core.store import Store

STATUS_EVERY = 1.0  # seconds between worker_status/heartbeat writes (each is a commit)

__all__ = ["Backends", "Summary", "Worker"]


@dataclass
class Summary:
    counts: dict[str, int]
    failed: list[tuple[str, str]] = field(default_factory=list)  # (unit, error)

    @property
    def ok(self) -> bool:
        return all(self.counts.get(s, 0) == 0 for s in (FAILED, CANCELLED, *UNFINISHED))


class Worker(Commands, Monitor, Training, Costs, Admission, Direct, Outputs, Downloads,
             Assembly):
    def __init__(self, store: Store, spec: JobSpec, backends: Backends, *,
                 stay_alive: bool = False, tick: float = 0.2,
                 rng: random.Random | None = None) -> None:
        self.store = store
        self.spec = spec
        self.ee = backends.ee
        self.drive = backends.drive
        self.stay_alive = stay_alive  # in the TUI: keep serving retries after the last unit
        self.tick = tick
        self.rng = rng or random.Random()
        self.limits = spec.limits
        self.output_dir = spec.output_dir
        self.wake = threading.Event()  # set when a download or delete finishes (see run())
        # What holds work back, by cause ("drive", "disk"): shown on the dashboard (status)
        # and logged when it starts and ends.
        self.waits: dict[str, str] = {}
        self.loud_waits: set[str] = set()  # waits that were logged (their end is, too)
        self.down: dict[str, float] = {}  # services not answering, since when
        self.finished: deque[float] = deque()  # times units finished, for throughput
        self.started = time.time()
        self.said_finished = False  # the job's end was logged (again after a retry's work)
        self.recovered: set[str] = set()  # exported before this start (see recover())
        self.status_written = 0.0
        self.polls = 0  # polls made, to count a unit's missing files once per poll
        self.next_poll = 0.0
        # Each room sets up the state it owns.
        self._init_monitor()
        self._init_admission()
        self._init_outputs()
        self._init_downloads()
        self._init_assembly()
        self._init_training()
        self._init_costs()
        self._init_direct()

    def run(self, stop: threading.Event | None = None) -> Summary:
        stop = stop or threading.Event()
        self.stop_event = stop  # long steps (an asset merge) give up when it is set
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._event(f"worker started (pid {os.getpid()})")
        try:
            self.recover()
            self.said_finished = self.idle()  # finished before this start: said then
            if self.said_finished:  # its products, if a crash left one undone
                self.assemble_job()
            while not stop.is_set():
                self.handle_commands()
                if time.time() >= self.next_poll:
                    self.poll()
                    self.read_spend()
                    self.watch_stragglers()
                self.train()
                # Finished fetches first: each frees its request for fetch_direct in this
                # pass (collected after it, a freed request waited for the next wake-up, a
                # tick at worst), and an auto unit moved to batch is submitted now.
                self.collect_direct()
                self.submit()
                self.fetch_direct()
                self.collect()
                self.schedule_downloads()
                self.assemble_settled()
                self.write_status()
                finished = self.idle()
                if finished and not self.said_finished:
                    self._say_finished()
                    self.assemble_job()
                self.said_finished = finished
                if finished and not self.stay_alive:
                    break
                # Sleep until the next poll is due or a download or delete finishes, at most a
                # tick (commands, backoffs, stop). A plain tick made each step of a file's way
                # (downloaded -> deleted -> done) wait for it and started polls up to a tick
                # late; where poll_seconds is short against the tick (the emulator at speed)
                # that left EE slots idle. Performance only: every step still commits first.
                self.wake.wait(max(0.0, min(self.tick, self.next_poll - time.time())))
                self.wake.clear()
        finally:
            self.stopping = True
            self.stop_direct()
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.delete_pool.shutdown(wait=True, cancel_futures=True)
            self.collect()
            self.finish_assembly(wait=not stop.is_set())
            self.write_status(force=True)
        summary = self.summary()
        self._event(f"worker stopped: {self._counts_text(summary.counts)}")
        return summary

    def _say_finished(self) -> None:
        """The end of the job in the log (the dashboard's Log pane, the log file): where the
        files are and what they cost. Drive is read once more, so the last figure shown is
        not one taken while exports were landing (their bytes then counted as others')."""
        if self.drive is not None and self._read_quota():
            self.write_status(force=True)
        t = self.store.totals()
        self._event(f"finished: {t.files:,} files, {_size(t.bytes)} in {self.output_dir}; "
                    f"{t.eecu_seconds / 3600:,.2f} EECU-hours, {t.retries:,} retries, "
                    f"{t.splits:,} splits")

    def idle(self) -> bool:
        if self.downloads or self.deletes or self.fetches:
            return False
        # EXISTS stops at the first unfinished unit (state is indexed): counting every unit
        # of a 100,000-unit session each tick was most of the idle loop's CPU.
        return not self.store.any_unit_in(UNFINISHED)

    def summary(self) -> Summary:
        return Summary(self.store.counts(), self.store.failed_units())

    def recover(self) -> None:
        """After any stop, kill -9 included: adopt the session's live EE tasks, finish or redo
        half-done downloads, then carry on. Nothing here sends an export."""
        store = self.store
        # Units EE finished before this start: their end here is no measure of this run's
        # throughput (a restart once showed thousands of units an hour for a minute).
        self.recovered = store.unit_ids_in((EXPORTED, DOWNLOADING))
        with store.tx():
            # Files mid-download: start them again from byte 0 (pydrive2 cannot resume).
            for row in store.files_downloading():
                self._part(row).unlink(missing_ok=True)
                # eebatch before schema 5 named it TITLE.part
                (self.output_dir / f"{row['title']}.part").unlink(missing_ok=True)
            store.downloads_back_to_listed()
            store.units_downloading_back_to_exported()
            self.recover_direct()
        unsent, live = store.count_unsent_and_live()
        if unsent or live:
            # Adopts by operation name or description; one EE no longer knows (a restarted
            # emulator; an operation EE has dropped) is sent again as a new attempt.
            lost = self.poll(search_unsent=True)
            # An export whose request may never have reached EE is sent again under the same
            # requestId: EE answers with the existing operation if it did.
            with store.tx():
                store.unsent_units_to_backoff()
            self._event(f"recovered: {live - len(lost)} live EE tasks adopted, "
                        f"{unsent + len(lost)} exports to resend")
        self._learn_ratio()
        # Files verified just before a crash are listed now; a manifest written after the
        # newest of them is left as it is (100,000 rows took the loop seconds at each start).
        manifest = self.output_dir / MANIFEST
        self.manifest_due = not manifest.exists() or \
            manifest.stat().st_mtime < self.store.last_verified()

    def write_status(self, force: bool = False) -> None:
        now = time.time()
        # Once a second is as fresh as any reader shows it; every tick was a commit (an fsync)
        # and a count over all units, five times a second, for nothing.
        if not force and now - self.status_written < STATUS_EVERY:
            return
        self.status_written = now
        while self.downloaded and self.downloaded[0][0] < now - 10:
            self.downloaded.popleft()
        while self.finished and self.finished[0] < now - 600:
            self.finished.popleft()
        # At least a minute: three units in the first five seconds are not 2,000 an hour.
        window = min(600.0, max(now - self.started, 60.0))
        per_hour = len(self.finished) * 3600 / window
        left = self.store.count_units_in(UNFINISHED)
        waiting = self.store.files_awaiting_download()
        status = {
            # Between quota reads our side is known exactly: the meter stays live.
            "drive_used": self.used_other + self._our_files_in_drive(),
            "drive_total": self.quota.total,
            "drive_trash": self.quota.trash, "files_waiting": waiting[0],
            "waiting_bytes": waiting[1],
            "download_rate": sum(b for _, b in self.downloaded) / 10,
            "units_per_hour": per_hour,
            # Paused, nothing finishes: no ETA rather than one that runs on.
            "eta_seconds": left * 3600 / per_hour if per_hour > 0 and left and not
            self.store.setting(PAUSED) else None,
            "project_pending": self.project_pending, "updated": now,
            "waiting": "; ".join(v for k, v in self.waits.items()
                                 if not k.endswith("-down")) or None,
            # Services not answering, since when (the header says so first), and why.
            "down": dict(self.down) or None,
            "down_why": "; ".join(v for k, v in self.waits.items()
                                  if k.endswith("-down")) or None,
            "restricted": self.restricted,
            # The direct route (direct.py): its requests in flight and their limit.
            "route": self.spec.export.route, "direct_in_flight": len(self.fetches),
            "direct_limit": self.limits.direct_requests,
            **self.cost_status(LiveLimits.of(self.limits, self.store.settings()).eecu_hours),
        }
        with self.store.tx():
            self.store.set_worker_status(status)
            self.store.heartbeat()
        if self.manifest_due and (force or now - self.manifest_written >= MANIFEST_EVERY):
            self.write_manifest()
