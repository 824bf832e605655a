"""The worker loop. It reads and writes only through the session store, so a UI in another
process can watch and steer it, and it is crash-only: every step is committed before the next
one depends on it, and `recover()` makes a restart after kill -9 continue where it stopped.

One thread runs the loop and owns the store connection; a pool of threads downloads and
deletes Drive files and hands results back through futures.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import math
import os
import random
import re
import shutil
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import humanize

from core.backends.drive import Drive, DriveFile, Quota, VerifyError
from core.backends.earthengine import EarthEngine, Operation
from core.backends.failures import (
    Kind,
    classify_exception,
    classify_message,
    drive_full,
    http_status,
)
from core.engine import matching
from core.grid import child_id, split_bounds
from core.outputs.bands import write_band_names
from core.outputs.manifest import write_manifest
from core.periods import Period, unit_id
from core.recipes import RECIPES
from core.recipes.build import RecipeError, UnitWork, build
from core.spec import JobSpec
from core.states import (
    ATTEMPT_LIVE,
    BACKOFF,
    CANCELLED,
    DONE,
    DOWNLOADING,
    EXPORTED,
    FAILED,
    IN_EE,
    PENDING,
    QUEUED,
    RUNNING,
    SPLIT,
    SUBMITTING,
    UNFINISHED,
    cancel_refusal,
)
from core.store import Store, StoreError

log = logging.getLogger("eebatch.worker")

PROJECT_QUEUE_CAP = 2800  # EE holds 3,000 pending tasks per project; keep clear of it
MISSING_FILE_POLLS = 5  # an exported unit whose files never show up is retried
# Free space a download leaves on the output disk beyond the file itself (file system
# overhead, other writers): below it, downloads and submissions wait.
DISK_HEADROOM = 1024 * 1024
DISK_RETRY = 30.0  # seconds before a write that failed for want of space is tried again
MANIFEST_EVERY = 30.0  # seconds between rewrites of output_dir/manifest.csv while files arrive
WAIT_OVER = {"drive": "Drive has room again: exports resume",
             "disk": "the output disk has room again: downloads and exports resume"}
# How far EE's clock (operation createTime) may be off ours (attempt created) before a search
# for a task EE does not list gives up on older pages.
CLOCK_SKEW = 3600.0
# Drive quota reads (about.get): every poll once the job's Drive bytes (other files + ours +
# expected) pass QUOTA_NEAR of its limit, else every QUOTA_EVERY_POLLS polls (5 minutes at the
# default poll_seconds).
QUOTA_EVERY_POLLS = 10
QUOTA_NEAR = 0.5
STATUS_EVERY = 1.0  # seconds between worker_status/heartbeat writes (each is a commit)


@dataclass
class Backends:
    ee: EarthEngine
    drive: Drive | None  # None when the export goes to assets or Cloud Storage


@dataclass
class Summary:
    counts: dict[str, int]
    failed: list[tuple[str, str]] = field(default_factory=list)  # (unit, error)

    @property
    def ok(self) -> bool:
        return all(self.counts.get(s, 0) == 0 for s in (FAILED, CANCELLED, *UNFINISHED))


def description_for(session: str, unit: str, attempt: int) -> str:
    """EE task descriptions allow [A-Za-z0-9.,:;_-] and 100 characters."""
    text = re.sub(r"[^A-Za-z0-9.,:;_-]", "_", f"eebatch:{session}:{unit}:a{attempt}")
    if len(text) <= 100:
        return text
    digest = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:10]
    return f"{text[:89]}:{digest}"  # long unit ids: still unique, still ours


class Worker:
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
        self.pool = ThreadPoolExecutor(max_workers=spec.limits.download_workers,
                                       thread_name_prefix="eebatch-download")
        # Deletes have their own threads: in the download pool they waited behind up to
        # 2 x download_workers queued downloads (the file holding Drive quota meanwhile) and
        # then took a download connection's turn.
        self.delete_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="eebatch-delete")
        self.downloads: dict[int, Future[Any]] = {}  # file row id -> download future
        # file row id -> (bytes it will write, where it downloads to)
        self.download_targets: dict[int, tuple[int, Path]] = {}
        self.deletes: dict[int, Future[Any]] = {}  # file row id -> delete future
        self.missing_polls: dict[str, tuple[int, int]] = {}  # unit -> (misses, at poll n)
        self.polls = 0  # polls made, to count a unit's missing files once per poll
        self.quota = Quota(0, None, 0)
        self.quota_read = -math.inf  # when the quota was last read
        self.used_other = 0
        self.project_pending = 0
        self.folder_ids: list[str] = []
        self.next_poll = 0.0
        self.ratio = 1.0  # actual / estimated bytes, learned from finished units
        self.ratio_floor = 0.0  # a lower bound on ratio taught by Drive-full failures
        self.downloaded: deque[tuple[float, int]] = deque()  # (time, bytes) for the rate
        self.finished: deque[float] = deque()  # times units finished, for throughput
        self.started = time.time()
        self.said_finished = False  # the job's end was logged (again after a retry's work)
        self.recovered: set[str] = set()  # exported before this start (see recover())
        self.status_written = 0.0
        # Set when a download or delete finishes, so the loop folds it in at once instead of
        # at the next tick (see run()).
        self.wake = threading.Event()
        # When to look for verified files to delete (None: none waits unseen). Files verified
        # by this loop are deleted at once; the look is for a restart and for failed deletes.
        self.deletes_due: float | None = 0.0
        self.delete_backlog = False  # the last look found a full batch
        self.stopping = False  # the pool is shut down: no new downloads or deletes
        self.budget_blocked = False  # the last admission left a unit out for Drive space
        # What holds work back, by cause ("drive", "disk"): shown on the dashboard (status)
        # and logged when it starts and ends.
        self.waits: dict[str, str] = {}
        self.loud_waits: set[str] = set()  # waits that were logged (their end is, too)
        self.disk_need = 0  # bytes the output disk must have free before downloads resume
        # (free bytes seen, when to try again) after a write failed for want of space
        self.disk_full_seen: tuple[int, float] | None = None
        self.disk_backoff = DISK_RETRY
        # unit -> Drive bytes admission gave it, for exports that found Drive full and whose
        # lesson the next quota read teaches (_learn_drive_need)
        self.drive_full_units: dict[str, int] = {}
        self.manifest_due = False  # a file was verified since the manifest was written
        # The exported image's band names, when the recipe knows them (not a user's function)
        self.band_names = [name for name, _ in RECIPES[spec.recipe.name].bands(
            spec.recipe.params)] if spec.recipe.name == "composite" else []
        self.manifest_written = 0.0
        self.manifest_failed = False  # the last write failed (said once)
        self.naming = matching.naming_for(
            "table" if spec.recipe.params.get("kind") == "table" else "image",
            spec.export.file_format)

    # -- the loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> Summary:
        stop = stop or threading.Event()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._event(f"worker started (pid {os.getpid()})")
        try:
            self.recover()
            self.said_finished = self.idle()  # finished before this start: said then
            while not stop.is_set():
                self.handle_commands()
                if time.time() >= self.next_poll:
                    self.poll()
                self.submit()
                self.collect()
                self.schedule_downloads()
                self.write_status()
                finished = self.idle()
                if finished and not self.said_finished:
                    self._say_finished()
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
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.delete_pool.shutdown(wait=True, cancel_futures=True)
            self.collect()
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
        if self.downloads or self.deletes:
            return False
        # EXISTS stops at the first unfinished unit (state is indexed): counting every unit
        # of a 100,000-unit session each tick was most of the idle loop's CPU.
        return not self.store.conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM units WHERE state IN "
            f"({', '.join('?' * len(UNFINISHED))}))", UNFINISHED).fetchone()[0]

    def summary(self) -> Summary:
        failed = [(r["id"], r["error"] or "") for r in self.store.conn.execute(
            "SELECT id, error FROM units WHERE state = ? ORDER BY id", (FAILED,))]
        return Summary(self.store.counts(), failed)

    # -- recovery ------------------------------------------------------------------------------

    def recover(self) -> None:
        """After any stop, kill -9 included: adopt the session's live EE tasks, finish or redo
        half-done downloads, then carry on. Nothing here sends an export."""
        conn = self.store.conn
        # Units EE finished before this start: their end here is no measure of this run's
        # throughput (a restart once showed thousands of units an hour for a minute).
        self.recovered = {r[0] for r in conn.execute(
            "SELECT id FROM units WHERE state IN (?, ?)", (EXPORTED, DOWNLOADING))}
        with self.store.tx():
            # Files mid-download: start them again from byte 0 (pydrive2 cannot resume).
            for row in conn.execute("SELECT id, title FROM files WHERE state = 'downloading'"):
                self._part(row).unlink(missing_ok=True)
                # eebatch before schema 5 named it TITLE.part
                (self.output_dir / f"{row['title']}.part").unlink(missing_ok=True)
            conn.execute("UPDATE files SET state = 'listed' WHERE state = 'downloading'")
            conn.execute("UPDATE units SET state = ?, updated = ? WHERE state = ?",
                         (EXPORTED, time.time(), DOWNLOADING))
        unsent = conn.execute("SELECT COUNT(*) FROM attempts WHERE state = 'submitting'"
                              ).fetchone()[0]
        live = conn.execute("SELECT COUNT(*) FROM attempts WHERE state IN"
                            " ('PENDING', 'RUNNING', 'CANCELLING')").fetchone()[0]
        if unsent or live:
            forgotten = self.poll(search_unsent=True)  # adopts by operation name or description
            # An export whose request may never have reached EE is sent again under the same
            # requestId: EE answers with the existing operation if it did. So is one EE does
            # not list at all (a restarted emulator; an operation EE has dropped): left as it
            # was, its unit waited for it for ever.
            with self.store.tx():
                for attempt in forgotten:
                    # Its createTime and folder were the forgotten operation's: the resent
                    # export's own decide which files are its outputs.
                    conn.execute("UPDATE attempts SET state = ?, operation = NULL, ee_created ="
                                 " NULL, folder_id = NULL, updated = ? WHERE id = ?",
                                 ("CANCELLED" if attempt["state"] == "CANCELLING" else
                                  "submitting", time.time(), attempt["id"]))
                    self._set_unit(attempt["unit"], BACKOFF, not_before=None,
                                   only_from=(SUBMITTING, QUEUED, RUNNING))
                conn.execute(
                    "UPDATE units SET state = ?, not_before = NULL, updated = ? WHERE id IN"
                    " (SELECT unit FROM attempts WHERE state = 'submitting') AND state = ?",
                    (BACKOFF, time.time(), SUBMITTING))
            self._event(f"recovered: {live - len(forgotten)} live EE tasks adopted, "
                        f"{unsent + len(forgotten)} exports to resend")
        self._learn_ratio()
        self.manifest_due = True  # files verified just before a crash: list them now

    # -- commands ------------------------------------------------------------------------------

    def handle_commands(self) -> None:
        for cmd in self.store.pending_commands():
            try:
                result = self._command(cmd["verb"], cmd["unit"], cmd["arg"])
                ok = True
            except StoreError as exc:
                result, ok = str(exc), False
            with self.store.tx():
                self.store.finish_command(cmd["id"], ok, result)
                self.store.log(f"{cmd['verb']} {cmd['unit'] or ''}: {result}".replace("  ", " "),
                               "info" if ok else "warning", cmd["unit"])

    def _command(self, verb: str, unit: str | None, arg: str | None) -> str:
        import json

        if verb == "pause":
            with self.store.tx():
                self.store.set_setting("paused", True)
            return "submissions paused"
        if verb == "resume":
            with self.store.tx():
                self.store.set_setting("paused", False)
            return "submissions resumed"
        if verb == "set":
            data = json.loads(arg or "{}")
            with self.store.tx():
                self.store.set_setting(data["key"], data["value"])
            return f"{data['key']} = {data['value']}"
        row = self.store.unit(unit or "")
        if row is None:
            raise StoreError(f"no unit {unit!r}")
        if verb == "retry":
            if row["state"] not in (FAILED, CANCELLED):
                raise StoreError(f"unit {unit} is {row['state']}: only failed or cancelled "
                                 "units retry")
            return self._retry(row)
        if verb == "cancel":
            return self._cancel(row)
        raise StoreError(f"unknown command {verb!r}")

    def _retry(self, row: Any) -> str:
        """A retry starts the unit's counts afresh. A unit whose export is (or may still be)
        in Drive is downloaded again, not exported again: a second export would cost EECU and
        leave one of the two outputs behind in Drive."""
        attempt = self._latest_attempt(row["id"])
        in_drive = self.store.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM files WHERE unit = ? AND state IN"
            " ('listed', 'verified'))", (row["id"],)).fetchone()[0]
        # A failed unit whose last export succeeded and was never taken (a name clash, a
        # download that gave up): its files are looked for again.
        untaken = row["state"] == FAILED and attempt is not None and \
            attempt["state"] == "SUCCEEDED" and not self.store.conn.execute(
                "SELECT EXISTS (SELECT 1 FROM files WHERE attempt = ? AND state = 'deleted')",
                (attempt["id"],)).fetchone()[0]
        fetch = self.drive is not None and (in_drive or untaken)
        with self.store.tx():
            self._set_unit(row["id"], EXPORTED if fetch else PENDING, error=None, attempts=0,
                           download_failures=0, priority=1, not_before=None)
        self.missing_polls.pop(row["id"], None)
        self._look_for_deletes(0.0)  # a verified file may wait in Drive to be deleted
        if fetch:
            return "its export is still in Drive: downloading it again"
        return "queued again, ahead of the others"

    def _cancel(self, row: Any) -> str:
        state = row["state"]
        in_flight = {r[0] for r in self.store.conn.execute(
            "SELECT id FROM files WHERE unit = ?", (row["id"],))} & (
            self.downloads.keys() | self.deletes.keys())
        refusal = cancel_refusal(row["id"], DOWNLOADING if in_flight else state)
        if refusal:
            raise StoreError(refusal)
        attempt = self._latest_attempt(row["id"])
        if attempt is not None and attempt["state"] in ("PENDING", "RUNNING") and \
                attempt["operation"]:
            try:
                self.ee.cancel(attempt["operation"])
            except Exception as exc:
                raise StoreError(f"EE did not cancel {row['id']}: "
                                 f"{classify_exception(exc)[1]}") from None
        with self.store.tx():
            if attempt is not None and attempt["state"] in ATTEMPT_LIVE:
                self.store.conn.execute("UPDATE attempts SET state = 'CANCELLING', updated = ?"
                                        " WHERE id = ?", (time.time(), attempt["id"]))
            self._set_unit(row["id"], CANCELLED, error="cancelled by the user")
        if state == EXPORTED:
            self._remove_outputs(row["id"])
        return "cancelled"

    # -- monitor -------------------------------------------------------------------------------

    def poll(self, *, search_unsent: bool = False) -> list[Any]:
        """Our tasks' states from operations.list (newest first, one page unless a task of
        ours is older than that page), and the Drive quota. `search_unsent` also looks for
        exports whose request may not have reached EE (after a crash), by their description.
        Returns the live attempts EE did not list ([] if the listing failed)."""
        self.polls += 1
        attempts = self.store.conn.execute(
            "SELECT a.*, u.state AS unit_state, u.depth, u.attempts AS unit_attempts"
            " FROM attempts a JOIN units u ON u.id = a.unit"
            " WHERE a.state IN ('submitting', 'PENDING', 'RUNNING', 'CANCELLING')").fetchall()
        try:
            ops = self._list_ours(attempts, search_unsent)
        except Exception as exc:
            self._event(f"listing EE tasks failed, will retry: {classify_exception(exc)[1]}",
                        "warning")
            self.next_poll = time.time() + self.limits.poll_seconds
            return []
        by_name = {op.name: op for op in ops}
        by_description = {op.description: op for op in ops}
        # Other jobs' queued tasks count against the project's queue; those on later pages
        # are older than all of ours and are not counted (a rare undercount).
        self.project_pending = sum(op.state == "PENDING" for op in ops)
        unlisted = []
        for attempt in attempts:
            op = by_name.get(attempt["operation"] or "") or by_description.get(
                attempt["description"])
            if op is not None:
                self._track(attempt, op)
            elif attempt["state"] != "submitting":
                unlisted.append(attempt)
        if self.drive is not None:
            self._learn_ratio()
            if self._quota_due() and self._read_quota():
                self._learn_drive_need()
        self.next_poll = time.time() + self._poll_interval(ops)
        return unlisted

    def _quota_due(self) -> bool:
        """Whether this poll reads the Drive quota (about.get). Our own bytes in Drive are
        known here exactly; only other files (the user's, other jobs) need the quota. So it is
        read at every poll only once the job comes near its limit or admission waits for
        space, and otherwise every QUOTA_EVERY_POLLS polls (benchmark: one read per poll was
        the largest share of the requests per unit beyond the classic loop's)."""
        every = QUOTA_EVERY_POLLS * self.limits.poll_seconds
        if self.budget_blocked or time.time() - self.quota_read >= every:
            return True
        budget = int(self.store.settings().get("drive_budget", self.limits.drive_budget))
        limit = budget if self.quota.total is None else min(budget, self.quota.total)
        return self.used_other + self._expected_drive_bytes() >= QUOTA_NEAR * limit

    def _read_quota(self) -> bool:
        assert self.drive is not None
        try:
            self.quota = self.drive.quota()
        except Exception as exc:
            self._event(f"reading the Drive quota failed: {classify_exception(exc)[1]}",
                        "warning")
            return False
        self.quota_read = time.time()
        # Drive bytes that are not ours (the user's own files, other jobs): the quota minus
        # what we know we have there now.
        self.used_other = max(0, self.quota.used - self._our_files_in_drive())
        return True

    def _list_ours(self, attempts: list[Any], search_unsent: bool) -> list[Operation]:
        """Page through operations.list only until every live task of ours has been seen.
        Operations come newest first and EE keeps finished ones for weeks, so reading every
        page cost 200 requests per poll at the end of a 100,000-unit job (benchmark). A task
        that is not listed at all (an operation EE has forgotten) stops the paging at tasks
        created well before our oldest live attempt (CLOCK_SKEW: EE's clock is not ours)."""
        wanted = {a["operation"] for a in attempts if a["operation"]}
        wanted_descriptions = {a["description"] for a in attempts
                               if search_unsent and not a["operation"]}
        floor = min((a["created"] for a in attempts), default=None)
        ops: list[Operation] = []
        for page in self.ee.operation_pages():
            ops.extend(page)
            wanted.difference_update(op.name for op in page)
            wanted_descriptions.difference_update(op.description for op in page)
            if not wanted and not wanted_descriptions:
                break
            oldest = page[-1].created_at() if page else None
            if floor is not None and oldest is not None and oldest < floor - CLOCK_SKEW:
                break
        return ops

    def _poll_interval(self, ops: list[Operation]) -> float:
        base = self.limits.poll_seconds
        ours = self.store.conn.execute("SELECT COUNT(*) FROM units WHERE state IN (?, ?, ?)",
                                       IN_EE).fetchone()[0]
        if ours == 0:
            return base * 2  # idle: nothing of ours is in EE
        if any(op.state == "RUNNING" and op.progress >= 0.8 for op in ops) and (
                self.budget_blocked or not self.store.conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM units WHERE state = ?)", (QUEUED,)
                ).fetchone()[0]):
            # Something is about to finish and it matters when: none of ours waits in EE's
            # queue to take the slot, or admission waits for Drive space. While EE's queue
            # holds our next task, looking sooner gained nothing but requests (benchmark:
            # same makespan, 1.8 operations.list per unit instead of 4).
            return base / 4
        return base

    def _track(self, attempt: Any, op: Operation) -> None:
        now = time.time()
        unit = attempt["unit"]
        unit_state = attempt["unit_state"]
        conn = self.store.conn
        cancelled = attempt["state"] == "CANCELLING" or unit_state == CANCELLED
        state = "CANCELLING" if attempt["state"] == "CANCELLING" and op.active else op.state
        latest = self._latest_attempt(unit)
        with self.store.tx():
            # EE's createTime and the folder it wrote to say which Drive files are this
            # attempt's outputs (core/engine/matching.py).
            conn.execute(
                "UPDATE attempts SET operation = ?, state = ?, progress = ?, eecu_seconds = ?,"
                " error = ?, started = COALESCE(started, ?), updated = ?,"
                " ee_created = COALESCE(?, ee_created), folder_id = COALESCE(?, folder_id)"
                " WHERE id = ?",
                (op.name, state, op.progress, op.eecu_seconds, op.error,
                 _started(op, now), now, op.created_at(), op.drive_folder(), attempt["id"]))
            if cancelled or latest["id"] != attempt["id"] or unit_state not in (
                    SUBMITTING, QUEUED, RUNNING, BACKOFF):
                pass  # an attempt the user cancelled, or one a retry has replaced
            elif op.state == "PENDING":
                self._set_unit(unit, QUEUED)
            elif op.state == "RUNNING":
                self._set_unit(unit, RUNNING)
            elif op.state == "SUCCEEDED":
                done = self.drive is None  # assets and Cloud Storage: nothing to fetch
                self._set_unit(unit, DONE if done else EXPORTED)
                self.store.log(f"exported in EE ({op.eecu_seconds or 0:.0f} EECU-s)", "info",
                               unit)
                if done:
                    self.finished.append(now)
            elif op.state == "FAILED":
                self._failed(attempt, op.error or "failed without a message")
            elif op.state == "CANCELLED":
                self._set_unit(unit, CANCELLED, error="cancelled in Earth Engine")
                self.store.log("cancelled in Earth Engine (outside eebatch)", "warning", unit)
        if not cancelled:
            return
        if op.state == "SUCCEEDED" and self.store.unit(unit)["state"] not in (
                EXPORTED, DOWNLOADING, DONE):
            # It finished before the cancel reached EE: its files must leave Drive.
            self._event("finished before the cancel reached EE; removing its files",
                        "info", unit)
            self._remove_outputs(unit)
        elif op.active and (not attempt["operation"] or attempt["state"] == "submitting"):
            # EE acknowledged the submit only after the user cancelled: cancel it now.
            try:
                self.ee.cancel(op.name)
            except Exception as exc:
                self._event(f"cancel failed: {classify_exception(exc)[1]}", "warning", unit)

    def _failed(self, attempt: Any, message: str) -> None:
        """Classify an EE failure (inside a transaction)."""
        unit = attempt["unit"]
        kind = classify_message(message)
        if kind is Kind.SPLIT:
            if attempt["depth"] < self.limits.split_depth:
                self._split(unit, message)
            else:
                self._set_unit(unit, FAILED, error=f"{message} (already split "
                               f"{attempt['depth']} times; split_depth = "
                               f"{self.limits.split_depth})")
                self.store.log(f"failed: {message}", "error", unit)
        elif kind is Kind.TRANSIENT and drive_full(message):
            self._drive_was_full(attempt, message)
        elif kind is Kind.TRANSIENT:
            self._backoff(unit, attempt["unit_attempts"], message)
        else:
            self._set_unit(unit, FAILED, error=message)
            self.store.log(f"failed: {message}", "error", unit)

    def _drive_was_full(self, attempt: Any, message: str) -> None:
        """Drive had no room for the export's files. That is not the unit's fault, so it
        costs no attempt: the unit goes back to admission, which holds it until Drive has the
        room this failure shows it needs (learned at this poll's quota read). Resending at
        once only failed again: 120 exports in 65 s, every unit FAILED, in a trial."""
        unit = attempt["unit"]
        self.quota_read = -math.inf  # Drive is fuller than we knew: read it now
        if self.quota.total is None or unit in self.drive_full_units:
            # Nothing to learn from (a Drive without a known total), or the last failure's
            # lesson was never learned (quota reads failing): an ordinary transient failure,
            # counted, so it can never be resent for free forever.
            self._backoff(unit, attempt["unit_attempts"], message)
            return
        self.drive_full_units[unit] = self._need(self.store.unit(unit))
        # Held until this poll's quota read has taught admission what it needs.
        self._set_unit(unit, BACKOFF, error=message, attempts=max(attempt["unit_attempts"] - 1, 0),
                       not_before=time.time() + self.limits.poll_seconds)
        self.store.log(f"Drive had no room for the export ({message}); the unit waits "
                       "until Drive has room", "warning", unit)

    def _learn_drive_need(self) -> None:
        """A unit whose export found Drive full needs more room than admission gave it. Our
        own files may have filled Drive at that moment and be gone by now, so what is free
        now says little; the unit is sent again only with all the room Drive has beside
        other people's files (alone). One that failed with all of it needs more than Drive
        can give until someone frees space: it waits, and says so. Until a file of the job
        has been measured, other units are taken to be as big (ratio_floor): estimates alone
        never learned it, and admission kept sending exports that could not fit (120 failed
        exports in 65 s in a trial)."""
        if self.quota.total is not None:
            room = max(0, self.quota.total - self.used_other)
            learned = []
            for unit, need in self.drive_full_units.items():
                new_need = room + 1 if need >= room else room
                learned.append((new_need, unit))
                est = self.store.unit(unit)["est_bytes"]
                if est > 0:
                    self.ratio_floor = max(self.ratio_floor, new_need / est)
            with self.store.tx():
                self.store.conn.executemany(
                    "UPDATE units SET need_bytes = MAX(need_bytes, ?) WHERE id = ?", learned)
            self._learn_ratio()
            self.drive_full_units = {}

    def _backoff(self, unit: str, attempts: int, message: str) -> None:
        if attempts >= self.limits.max_attempts:
            self._set_unit(unit, FAILED, error=f"{message} (gave up after {attempts} attempts)")
            self.store.log(f"failed after {attempts} attempts: {message}", "error", unit)
            return
        base = max(1.0, self.limits.poll_seconds / 2)
        delay = min(base * 2 ** max(attempts - 1, 0), 600) * self.rng.uniform(0.5, 1.5)
        self._set_unit(unit, BACKOFF, error=message, not_before=time.time() + delay)
        self.store.log(f"will retry in {delay:.0f} s: {message}", "warning", unit)

    def _split(self, unit: str, message: str) -> None:
        row = self.store.unit(unit)
        assert row is not None
        period = Period(row["period"], None, None)
        children = []
        for q, (w, s, e, n) in enumerate(split_bounds((row["west"], row["south"], row["east"],
                                                        row["north"]))):
            tile = child_id(row["tile"], q)
            children.append((unit_id(tile, period), tile, row["row"], row["col"],
                             row["depth"] + 1, unit, row["period"], row["start"], row["end"],
                             w, s, e, n, row["est_pixels"] // 4, row["est_bytes"] // 4,
                             row["priority"], time.time()))
        self.store.conn.executemany(
            "INSERT OR IGNORE INTO units (id, tile, row, col, depth, parent, period, start, end,"
            " west, south, east, north, est_pixels, est_bytes, priority, updated) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", children)
        self._set_unit(unit, SPLIT, error=message)
        self.store.log(f"{message} -> split into 4 tiles", "warning", unit)

    # -- admission and submit ------------------------------------------------------------------

    def submit(self) -> None:
        self.budget_blocked = False  # set when a unit waits for Drive space (polls sooner)
        settings = self.store.settings()
        if settings.get("paused") or "disk" in self.waits:
            return  # the disk wait holds exports too: their files would have nowhere to go
        max_tasks = int(settings.get("max_tasks", self.limits.max_tasks))
        budget = int(settings.get("drive_budget", self.limits.drive_budget))
        conn = self.store.conn
        in_ee = conn.execute("SELECT COUNT(*) FROM units WHERE state IN (?, ?, ?)",
                             IN_EE).fetchone()[0]
        room = min(max_tasks - in_ee, PROJECT_QUEUE_CAP - self.project_pending)
        now = time.time()
        candidates = [] if room <= 0 else conn.execute(
            "SELECT * FROM units WHERE state IN (?, ?) AND (not_before IS NULL OR"
            " not_before <= ?) ORDER BY priority DESC, est_bytes DESC, id LIMIT ?",
            (PENDING, BACKOFF, now, room * 4)).fetchall()
        expected = self._expected_drive_bytes() if candidates else 0
        submitted = 0
        smallest_left_out: int | None = None
        for row in candidates:
            if submitted >= room:
                break
            need = self._need(row)
            if self.drive is not None and not self._fits(need, expected, budget):
                self.budget_blocked = True
                smallest_left_out = min(need, smallest_left_out or need)
                continue  # a smaller unit further down may still fit
            if self._send(row):
                expected += need
                self.project_pending += 1
                submitted += 1
        if submitted:
            self.next_poll = min(self.next_poll, time.time() + self.limits.poll_seconds)
        if submitted or smallest_left_out is None:
            self._wait("drive", None)
            return
        moving = conn.execute(  # our exports on their way through Drive
            "SELECT EXISTS (SELECT 1 FROM units WHERE state IN (?, ?, ?, ?, ?))",
            (*IN_EE, EXPORTED, DOWNLOADING)).fetchone()[0]
        # While our own exports move through Drive the budget is just doing its job (shown,
        # not logged); with nothing moving the wait cannot end by itself: logged.
        self._wait("drive", self._drive_wait_text(smallest_left_out, expected, budget, moving),
                   loud=not moving)

    def _need(self, row: Any) -> int:
        """Drive bytes a unit's export will take: the estimate scaled by what finished units
        weighed, or more if a "Drive full" failure showed it needs more."""
        return max(int(row["est_bytes"] * self.ratio), row["need_bytes"])

    def _drive_wait_text(self, need: int, expected: int, budget: int, moving: bool) -> str:
        limit = budget if self.quota.total is None else min(budget, self.quota.total)
        free = max(0, limit - self.used_other - expected)
        needs = f"~{_size(need)}" if _size(need) != _size(free) else f"more than {_size(free)}"
        text = (f"waiting for Drive space: {_size(free)} free for this job, the next unit "
                f"needs {needs}; ")
        if moving:
            return text + "eebatch's own files free space as they are downloaded"
        stuck = self._our_files_in_drive()
        if stuck:  # files of failed or cancelled units that stay in Drive
            return text + (f"{_size(stuck)} of it is held by files of this job's failed units "
                           "still in Drive: retry them, free space, or raise drive_budget")
        return text + "free space in Drive or raise drive_budget"

    def _fits(self, need: int, expected: int, budget: int) -> bool:
        used = self.used_other
        limit = budget if self.quota.total is None else min(budget, self.quota.total)
        if used + expected + need <= limit:
            return True
        # Nothing of ours is on its way: a unit bigger than the budget alone still goes when
        # the Drive itself can hold it, or the job would wait forever.
        return expected == 0 and (self.quota.total is None or used + need <= self.quota.total)

    def _our_files_in_drive(self) -> int:
        return int(self.store.conn.execute(
            "SELECT COALESCE(SUM(size), 0) FROM files WHERE state IN"
            " ('listed', 'downloading', 'verified')").fetchone()[0])

    def _expected_drive_bytes(self) -> int:
        """Drive bytes this job holds or will soon hold: files listed and not yet deleted, and
        what exports still running or exported but not yet listed need (see _need)."""
        estimated = self.store.conn.execute(
            "SELECT COALESCE(SUM(MAX(CAST(est_bytes * ? AS INTEGER), need_bytes)), 0)"
            " FROM units WHERE state IN (?, ?, ?) OR (state = ? AND id NOT IN"
            " (SELECT unit FROM files WHERE state != 'deleted'))",
            (self.ratio, *IN_EE, EXPORTED)).fetchone()[0]
        return int(estimated) + self._our_files_in_drive()

    def _send(self, row: Any) -> bool:
        """Write the attempt (with its requestId) first, then send. Returns True if sent."""
        unit = row["id"]
        conn = self.store.conn
        attempt = self._latest_attempt(unit)
        now = time.time()
        with self.store.tx():
            if attempt is None or attempt["state"] != "submitting":
                n = (attempt["n"] + 1) if attempt is not None else 1
                request_id = str(uuid.uuid4())
                description = description_for(self.store.id, unit, n)
                conn.execute(
                    "INSERT INTO attempts (unit, n, request_id, description, state, created,"
                    " updated) VALUES (?, ?, ?, ?, 'submitting', ?, ?)",
                    (unit, n, request_id, description, now, now))
                attempt = self._latest_attempt(unit)
            self._set_unit(unit, SUBMITTING, attempts=row["attempts"] + 1)
        assert attempt is not None
        work = UnitWork(unit, (row["west"], row["south"], row["east"], row["north"]),
                        row["start"], row["end"])
        prefix = self.spec.export.prefix.format(job=self.spec.name, unit=unit)
        try:
            kind, obj = build(self.spec, work)
            name = self.ee.start_export(
                attempt["request_id"], obj, kind=kind, description=attempt["description"],
                prefix=prefix, export=self.spec.export, region=_region(self.spec, work),
                priority=200 if row["priority"] > 0 else None)
        except RecipeError as exc:
            with self.store.tx():
                conn.execute("UPDATE attempts SET state = 'FAILED', error = ? WHERE id = ?",
                             (str(exc), attempt["id"]))
                self._set_unit(unit, FAILED, error=str(exc))
                self.store.log(f"failed: {exc}", "error", unit)
            return False
        except Exception as exc:
            kind_, message = classify_exception(exc)
            with self.store.tx():
                if kind_ is Kind.TRANSIENT:
                    # The attempt stays 'submitting': the resend reuses its requestId.
                    self._backoff(unit, row["attempts"] + 1, f"submit: {message}")
                else:
                    conn.execute("UPDATE attempts SET state = 'FAILED', error = ? WHERE id = ?",
                                 (message, attempt["id"]))
                    self._set_unit(unit, FAILED, error=f"submit: {message}")
                    self.store.log(f"submit failed: {message}", "error", unit)
            return False
        with self.store.tx():
            conn.execute("UPDATE attempts SET operation = ?, state = 'PENDING', updated = ?"
                         " WHERE id = ? AND state = 'submitting'",
                         (name, time.time(), attempt["id"]))
            self._set_unit(unit, QUEUED, only_from=(SUBMITTING,))
        return True

    # -- download, verify, delete --------------------------------------------------------------

    def schedule_downloads(self) -> None:
        if self.drive is None:
            return
        conn = self.store.conn
        now = time.time()
        exported = conn.execute(
            "SELECT * FROM units WHERE state = ? AND (not_before IS NULL OR not_before <= ?)"
            " ORDER BY updated LIMIT 64", (EXPORTED, now)).fetchall()
        listed_units: set[str] = set()
        if exported:
            # Only these units' files, through the files_unit index: files.state has none, and
            # scanning every file each tick was most of the idle CPU late in a big job.
            ids = [r["id"] for r in exported]
            listed_units = {r[0] for r in conn.execute(
                "SELECT DISTINCT unit FROM files WHERE state = 'listed' AND unit IN"
                f" ({', '.join('?' * len(ids))})", ids)}
        if exported and any(r["id"] not in listed_units for r in exported):
            self._list_outputs([r for r in exported if r["id"] not in listed_units])
        free = self.limits.download_workers * 2 - len(self.downloads)
        if free <= 0:
            return
        if "disk" in self.waits and not self._disk_has_room(self.disk_need):
            return
        rows = conn.execute(
            "SELECT f.* FROM files f JOIN units u ON u.id = f.unit WHERE f.state = 'listed'"
            " AND u.state IN (?, ?) AND (u.not_before IS NULL OR u.not_before <= ?)"
            " ORDER BY f.id LIMIT ?", (EXPORTED, DOWNLOADING, now, free)).fetchall()
        # Bytes the downloads under way will still write: the disk must hold them too.
        reserved = sum(size for size, _ in self.download_targets.values())
        for row in rows:
            if row["id"] in self.downloads:
                continue
            if not self._disk_has_room(reserved + row["size"]):
                break
            reserved += row["size"]
            with self.store.tx():
                conn.execute("UPDATE files SET state = 'downloading', updated = ? WHERE id = ?",
                             (now, row["id"]))
                self._set_unit(row["unit"], DOWNLOADING, only_from=(EXPORTED,))
            file = DriveFile(row["drive_id"], row["title"], row["size"], row["md5"], ())
            part = self._part(row)
            future = self.pool.submit(self.drive.download, file, part)
            future.add_done_callback(self._wake_up)
            self.downloads[row["id"]] = future
            self.download_targets[row["id"]] = (row["size"], part)

    def _final(self, row: Any) -> Path:
        """Where a verified file lives: output_dir/PERIOD/TITLE for a job cut into periods
        (time.period_folders, on by default), else output_dir/TITLE."""
        time_spec = self.spec.time
        if time_spec is not None and time_spec.period_folders:
            period = self.store.unit(row["unit"])["period"]
            if period != "all":
                return self.output_dir / period / row["title"]
        return self.output_dir / row["title"]

    def write_manifest(self) -> None:
        """output_dir/manifest.csv: a row per verified file (core/outputs/manifest.py)."""
        rows = self.store.conn.execute(
            "SELECT f.local_path, f.unit, u.tile, u.period, u.start, u.end, u.west, u.south,"
            " u.east, u.north, f.size, f.md5 FROM files f JOIN units u ON u.id = f.unit"
            " WHERE f.state IN ('verified', 'deleted') AND f.local_path IS NOT NULL").fetchall()
        self.manifest_written = time.time()
        if not rows:
            self.manifest_due = False
            return
        try:
            write_manifest(self.output_dir, (dict(r) for r in rows), crs=self.spec.export.crs,
                           bands=" ".join(self.band_names))
        except OSError as exc:  # a full disk, say: tried again later; the files are safe
            if not self.manifest_failed:
                self._event(f"writing {self.output_dir / 'manifest.csv'} failed, will retry: "
                            f"{exc}", "warning")
            self.manifest_failed = True
            return
        self.manifest_due = self.manifest_failed = False

    def _part(self, row: Any) -> Path:
        """Where a file row downloads to before it is verified: its own name per row, so two
        downloads never share one (a user's same-named file once overwrote an output there)."""
        return self.output_dir / f"{row['title']}.{row['id']}.part"

    def _disk_has_room(self, need: int) -> bool:
        """Whether the output disk can take `need` more bytes. When it cannot, downloads and
        submissions wait, and the dashboard says why; they resume when space returns. (A full
        disk once failed every unit exported meanwhile within seconds.)"""
        free = shutil.disk_usage(self.output_dir).free
        failed_write = False
        if self.disk_full_seen is not None:
            # A write failed for want of space that statvfs may not show (a user quota, no
            # inodes): believe the failure until free space grows or a while has passed.
            seen, retry_at = self.disk_full_seen
            failed_write = free < seen + need and time.time() < retry_at
            if not failed_write:
                self.disk_full_seen = None
        if not failed_write and free >= need + DISK_HEADROOM:
            self._wait("disk", None)
            return True
        self.disk_need = need
        self._wait("disk", f"output disk full: {_size(free)} free in {self.output_dir}"
                           f"{' (a write just failed for want of space)' if failed_write else ''}"
                           f", the next download needs {_size(need)}; free space there — "
                           "downloads and exports wait and resume by themselves")
        return False

    def _list_outputs(self, units: list[Any]) -> None:
        """Find exported units' files: in the folder EE wrote each to (every folder of the
        export's name where EE did not say), named as the export names its files, created
        after EE accepted the export (core/engine/matching.py)."""
        assert self.drive is not None
        attempts = {row["id"]: self._latest_attempt(row["id"]) for row in units}
        folders = {a["folder_id"] for a in attempts.values() if a is not None and a["folder_id"]}
        try:
            by_name = any(a is None or not a["folder_id"] for a in attempts.values())
            if by_name and not self.folder_ids:
                self.folder_ids = self.drive.find_folders(self.spec.export.folder)
            listing = self.drive.list_folder(sorted(folders | set(self.folder_ids if by_name
                                                                  else ())))
            by_prefix = matching.by_prefix(listing, self.naming)
            if by_name and any(self._prefix(r["id"]) not in by_prefix for r in units):
                # EE may have made another folder of that name since the last search.
                found = self.drive.find_folders(self.spec.export.folder)
                if set(found) != set(self.folder_ids):
                    self.folder_ids = found
                    listing = self.drive.list_folder(sorted(folders | set(found)))
                    by_prefix = matching.by_prefix(listing, self.naming)
        except Exception as exc:
            self._event(f"listing the Drive folder failed: {classify_exception(exc)[1]}",
                        "warning")
            return
        known = {r[0] for r in self.store.conn.execute("SELECT drive_id FROM files")}
        for row in units:
            self._take_outputs(row["id"], attempts[row["id"]], by_prefix, known, count_miss=True)
        # The listing holds whole folders: take the files of the other exported units as well
        # (no miss is counted for them). Otherwise a backlog bigger than the batch above had
        # the folder listed again each time a few units started downloading (72 listings for
        # 200 exported units).
        batch = {row["id"] for row in units}
        for (unit,) in self.store.conn.execute(
                "SELECT id FROM units u WHERE state = ? AND NOT EXISTS (SELECT 1 FROM files f"
                " WHERE f.unit = u.id AND f.state = 'listed')", (EXPORTED,)).fetchall():
            if unit not in batch and self._prefix(unit) in by_prefix:
                attempt = self._latest_attempt(unit)
                if attempt is not None and (attempt["folder_id"] in folders or by_name):
                    self._take_outputs(unit, attempt, by_prefix, known, count_miss=False)
        self._learn_ratio()

    def _take_outputs(self, unit: str, attempt: Any, by_prefix: dict[str, list[DriveFile]],
                      known: set[str], *, count_miss: bool) -> None:
        """Record the files of `unit`'s export found in a listing; a name clash fails the unit
        with a message (nothing is taken or deleted); no files counts a miss."""
        found = self._outputs_of(unit, attempt, by_prefix)
        if found.clashes:
            message = found.report(self.spec.export.folder)
            with self.store.tx():
                self._set_unit(unit, FAILED, error=message)
                self.store.log(message, "error", unit)
            return
        new = [f for f in found.files if f.id not in known]
        if not found.files:
            if count_miss:
                self._count_miss(unit)
            return
        self.missing_polls.pop(unit, None)
        if not new:
            return
        with self.store.tx():
            self.store.conn.executemany(
                "INSERT INTO files (unit, attempt, drive_id, title, size, md5, state, updated)"
                " VALUES (?, ?, ?, ?, ?, ?, 'listed', ?)",
                [(unit, attempt["id"] if attempt else None, f.id, f.title, f.size, f.md5,
                  time.time()) for f in new])
            self.store.log(f"{len(new)} file(s) in Drive, {sum(f.size for f in new):,} bytes",
                           "info", unit)
            if found.others:
                self.store.log(found.report(self.spec.export.folder), "info", unit)
        known.update(f.id for f in new)

    def _outputs_of(self, unit: str, attempt: Any,
                    by_prefix: dict[str, list[DriveFile]]) -> matching.Outputs:
        """`unit`'s export's files among a listing's: in the folder EE wrote to (any listed
        folder of the export's name if it did not say), created after EE accepted it (EE's
        createTime; our own clock, with room for skew, if EE did not give one)."""
        folders = {attempt["folder_id"]} if attempt is not None and attempt["folder_id"] \
            else None
        not_before = None if attempt is None else (
            attempt["ee_created"] if attempt["ee_created"] is not None
            else attempt["created"] - CLOCK_SKEW)
        return matching.pick(by_prefix.get(self._prefix(unit), []), folders, not_before)

    def _count_miss(self, unit: str) -> None:
        """One miss per poll at most: the folder is listed at every tick while files are
        awaited, and five ticks (a second) is no time for Drive's listing to catch up."""
        misses, at_poll = self.missing_polls.get(unit, (0, -1))
        if at_poll == self.polls:
            return
        misses += 1
        self.missing_polls[unit] = (misses, self.polls)
        if misses >= MISSING_FILE_POLLS:
            self.missing_polls.pop(unit)
            with self.store.tx():
                self._redo_export(unit, "its files never appeared in Drive folder "
                                        f"{self.spec.export.folder!r}")

    def _prefix(self, unit: str) -> str:
        return self.spec.export.prefix.format(job=self.spec.name, unit=unit)

    def collect(self) -> None:
        """Fold finished downloads and deletes into the store (this thread owns it)."""
        for file_id, future in list(self.downloads.items()):
            if future.done():
                del self.downloads[file_id]
                self._downloaded(file_id, future)
                if not future.cancelled() and future.exception() is None:
                    self._delete(file_id)  # verified just now
        for file_id, future in list(self.deletes.items()):
            if future.done():
                del self.deletes[file_id]
                self._deleted(file_id, future)
                if future.cancelled() or future.exception() is not None:
                    self._look_for_deletes(time.time() + self.tick)  # sent again, as before
                elif self.delete_backlog:
                    self._look_for_deletes(0.0)
        self._schedule_deletes()

    def _downloaded(self, file_id: int, future: Future[Any]) -> None:
        _, part = self.download_targets.pop(file_id)
        row = self.store.conn.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
        if row is None:  # its unit's files were dropped meanwhile (redone export)
            part.unlink(missing_ok=True)
            return
        exc = future.exception() if not future.cancelled() else None
        if exc is None and not future.cancelled():
            try:
                self._keep(row, part)
                return
            except OSError as error:  # the verified file could not be put in place
                exc = error
        part.unlink(missing_ok=True)
        disk_full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
        with self.store.tx():
            self.store.conn.execute("UPDATE files SET state = 'listed' WHERE id = ?",
                                    (file_id,))
            if future.cancelled():
                return
            if disk_full:
                # Not the file's fault: it waits in Drive, costing no try, until the disk
                # has room (_disk_has_room, below, says so).
                self._set_unit(row["unit"], EXPORTED, only_from=(DOWNLOADING,))
            elif http_status(exc) == 404:  # gone from Drive: only a new export brings it back
                self.store.conn.execute("DELETE FROM files WHERE unit = ? AND state IN"
                                        " ('listed', 'downloading')", (row["unit"],))
                self._redo_export(row["unit"], f"{row['title']} vanished from Drive")
            else:
                message = str(exc) if isinstance(exc, VerifyError) else \
                    classify_exception(exc)[1]
                self._download_failed(self.store.unit(row["unit"]),
                                      f"download of {row['title']}: {message}")
        if disk_full:
            # statvfs may not see why (a user quota, no inodes left): trust the failure, and
            # look again only once free space has grown or a while has passed.
            self.disk_full_seen = (shutil.disk_usage(self.output_dir).free,
                                   time.time() + self.disk_backoff)
            self.disk_backoff = min(self.disk_backoff * 2, 600.0)
            self._disk_has_room(row["size"])

    def _keep(self, row: Any, part: Path) -> None:
        """A verified download takes its place in output_dir (and its band names beside it),
        then counts."""
        final = self._final(row)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, final)
        _fsync_dir(final.parent)
        with self.store.tx():
            self.store.conn.execute(
                "UPDATE files SET state = 'verified', local_path = ?, updated = ? WHERE id = ?",
                (str(final), time.time(), row["id"]))
        self.downloaded.append((time.time(), row["size"]))
        self.manifest_due = True
        self.disk_backoff = DISK_RETRY
        if self.band_names and final.suffix == ".tif":
            try:
                write_band_names(final, self.band_names)
            except OSError as exc:  # a nicety: the verified file counts without it
                self._event(f"band names for {final.name} not written: {exc}", "warning",
                            row["unit"])

    def _download_failed(self, unit: Any, message: str) -> None:
        failures = unit["download_failures"] + 1  # a retry starts the count afresh
        if failures >= self.limits.max_attempts:
            self._set_unit(unit["id"], FAILED, download_failures=failures,
                           error=f"{message} (gave up after {failures} tries; the file stays"
                                 " in Drive, and a retry downloads it again)")
            self.store.log(message, "error", unit["id"])
            return
        delay = min(2.0 ** failures, 60) * self.rng.uniform(0.5, 1.5)
        self._set_unit(unit["id"], EXPORTED, not_before=time.time() + delay,
                       download_failures=failures)
        self.store.log(message, "warning", unit["id"])

    def _schedule_deletes(self) -> None:
        """Verified files leave Drive: deleted, never trashed (trash keeps the quota)."""
        # files.state has no index, so this look is not made every tick (late in a
        # 100,000-unit job the scan was most of the idle CPU): only at start, after a failed
        # delete, and while a full batch waits. Only this loop makes files 'verified'.
        if self.drive is None or self.deletes_due is None or time.time() < self.deletes_due:
            return
        rows = self.store.conn.execute(
            "SELECT id, drive_id FROM files WHERE state = 'verified' ORDER BY id LIMIT 64"
        ).fetchall()
        self.deletes_due = None
        self.delete_backlog = len(rows) == 64
        for row in rows:
            self._delete(row["id"], row["drive_id"])

    def _look_for_deletes(self, when: float) -> None:
        self.deletes_due = when if self.deletes_due is None else min(self.deletes_due, when)

    def _delete(self, file_id: int, drive_id: str | None = None) -> None:
        if self.drive is None or self.stopping or file_id in self.deletes:
            return  # stopping: the next start finds the verified file and deletes it
        if drive_id is None:
            drive_id = self.store.conn.execute("SELECT drive_id FROM files WHERE id = ?",
                                               (file_id,)).fetchone()[0]
        future = self.delete_pool.submit(self.drive.delete, drive_id)
        future.add_done_callback(self._wake_up)
        self.deletes[file_id] = future

    def _deleted(self, file_id: int, future: Future[Any]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        row = self.store.conn.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
        if row is None:  # dropped meanwhile (its unit's export is being redone)
            return
        if exc is not None:
            self._event(f"deleting {row['title']} from Drive failed, will retry: "
                        f"{classify_exception(exc)[1]}", "warning", row["unit"])
            return
        with self.store.tx():
            self.store.conn.execute("UPDATE files SET state = 'deleted', updated = ? WHERE id = ?",
                                    (time.time(), file_id))
            left = self.store.conn.execute(
                "SELECT COUNT(*) FROM files WHERE unit = ? AND state != 'deleted'",
                (row["unit"],)).fetchone()[0]
            unit = self.store.unit(row["unit"])
            if left == 0 and unit["state"] in (DOWNLOADING, EXPORTED):
                self._set_unit(row["unit"], DONE, error=None)
                size = self.store.conn.execute("SELECT SUM(size) FROM files WHERE unit = ?",
                                               (row["unit"],)).fetchone()[0]
                self.store.log(f"done: {size:,} bytes verified", "info", row["unit"])
                if row["unit"] not in self.recovered:
                    self.finished.append(time.time())

    def _remove_outputs(self, unit: str) -> None:
        """A cancelled unit's export leaves Drive: the files recorded as its own, or, if none
        were recorded yet, those a listing matches to its last export. Nothing else is
        touched; a name clash is reported and left alone."""
        if self.drive is None:
            return
        ids = [r[0] for r in self.store.conn.execute(
            "SELECT drive_id FROM files WHERE unit = ? AND state IN ('listed', 'verified')",
            (unit,))]
        attempt = self._latest_attempt(unit)
        try:
            if not ids and attempt is not None and attempt["state"] == "SUCCEEDED":
                folders = [attempt["folder_id"]] if attempt["folder_id"] else \
                    self.drive.find_folders(self.spec.export.folder)
                found = self._outputs_of(unit, attempt, matching.by_prefix(
                    self.drive.list_folder(folders), self.naming))
                if found.clashes:
                    self._event(found.report(self.spec.export.folder), "warning", unit)
                ids = [f.id for f in found.files]
            for drive_id in ids:
                self.drive.delete(drive_id)
        except Exception as exc:
            self._event(f"removing outputs from Drive failed: {classify_exception(exc)[1]}",
                        "warning", unit)
            return
        with self.store.tx():
            self.store.conn.execute("DELETE FROM files WHERE unit = ? AND state != 'deleted'",
                                    (unit,))
            if ids:
                self.store.log(f"outputs removed from Drive ({len(ids)} files)", "info", unit)
            else:
                self.store.log("no file of its export was found in Drive to remove (Drive may "
                               "not list it yet); any that appears is left there", "warning",
                               unit)

    def _redo_export(self, unit: str, why: str) -> None:
        row = self.store.unit(unit)
        assert row is not None
        self._backoff(unit, row["attempts"], why)

    # -- helpers -------------------------------------------------------------------------------

    def _learn_ratio(self) -> None:
        # Every unit whose files have been listed counts: sizes are known before download.
        actual, estimated = self.store.conn.execute(
            "SELECT (SELECT COALESCE(SUM(size), 0) FROM files),"
            "       (SELECT COALESCE(SUM(est_bytes), 0) FROM units"
            "        WHERE id IN (SELECT unit FROM files))").fetchone()
        if actual and estimated:
            self.ratio = max(actual / estimated, 0.01)
        else:  # nothing measured yet: what Drive-full failures taught (_learn_drive_need)
            self.ratio = max(self.ratio, self.ratio_floor)

    def _latest_attempt(self, unit: str) -> Any:
        return self.store.conn.execute(
            "SELECT * FROM attempts WHERE unit = ? ORDER BY n DESC LIMIT 1", (unit,)).fetchone()

    def _set_unit(self, unit: str, state: str, *, only_from: tuple[str, ...] | None = None,
                  **fields: Any) -> None:
        sets = ["state = ?", "updated = ?"] + [f"{k} = ?" for k in fields]
        params: list[Any] = [state, time.time(), *fields.values(), unit]
        sql = f"UPDATE units SET {', '.join(sets)} WHERE id = ?"
        if only_from:
            sql += f" AND state IN ({', '.join('?' * len(only_from))})"
            params += list(only_from)
        self.store.conn.execute(sql, params)

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

    def _wake_up(self, _future: Future[Any]) -> None:
        self.wake.set()

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
        conn = self.store.conn
        left = conn.execute(f"SELECT COUNT(*) FROM units WHERE state IN "
                            f"({', '.join('?' * len(UNFINISHED))})", UNFINISHED).fetchone()[0]
        waiting = conn.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files WHERE state"
                               " IN ('listed', 'downloading')").fetchone()
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
            self.store.setting("paused") else None,
            "project_pending": self.project_pending, "updated": now,
            "waiting": "; ".join(self.waits.values()) or None,
        }
        with self.store.tx():
            self.store.set_setting("worker_status", status)
            self.store.heartbeat()
        if self.manifest_due and (force or now - self.manifest_written >= MANIFEST_EVERY):
            self.write_manifest()

    @staticmethod
    def _counts_text(counts: dict[str, int]) -> str:
        return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def _size(n: float) -> str:
    return humanize.naturalsize(n, format="%.3g")


def _started(op: Operation, now: float) -> float | None:
    """When the task started: EE's startTime (an emulator's simulated clock may run ahead of
    ours: never later than now), else now if we see it running."""
    started = op.started_at()
    if started is not None:
        return min(started, now)
    return now if op.state == "RUNNING" else None


def _region(spec: JobSpec, work: UnitWork) -> Any:
    from core.recipes.build import tile_geometry

    return tile_geometry(spec, work.bounds)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
