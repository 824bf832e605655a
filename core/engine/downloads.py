"""The worker's transfers: download each listed file to its own `.part`, verify it, put it in
place (and its band names beside it), delete it from Drive, and mark the unit done; the
output disk's room is checked before each download and a full disk waits instead of failing.
Downloads and deletes run in thread pools and hand back futures the loop folds in."""

from __future__ import annotations

import errno
import os
import shutil
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from core.backends.drive import DriveFile, VerifyError
from core.backends.failures import (
    Failure,
    Kind,
    classify,
    classify_exception,
    http_status,
)
from core.engine.base import WorkerBase, _size, fsync_dir
from core.outputs.bands import write_band_names
from core.outputs.manifest import write_manifest
from core.recipes import RECIPES
from core.states import (
    DELETED,
    DONE,
    DOWNLOADING,
    EXPORTED,
    FAILED,
    FILE_DOWNLOADING,
    LISTED,
    VERIFIED,
)

# Free space a download leaves on the output disk beyond the file itself (file system
# overhead, other writers): below it, downloads and submissions wait.
DISK_HEADROOM = 1024 * 1024
DISK_RETRY = 30.0  # seconds before a write that failed for want of space is tried again
# A file whose download quota is used up (403 downloadQuotaExceeded: per file, per day) is
# tried again this much later; it stays in Drive meanwhile.
DOWNLOAD_QUOTA_WAIT = 3 * 3600.0
# A download that finds Drive down is held without counting a try, at most this many times
# for one unit (a file that alone answers 503 while Drive answers the rest then fails).
OUTAGE_HOLDS = 10
MANIFEST_EVERY = 30.0  # seconds between rewrites of output_dir/manifest.csv while files arrive


class Downloads(WorkerBase):
    def _init_downloads(self) -> None:
        spec = self.spec
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
        self.downloaded: deque[tuple[float, int]] = deque()  # (time, bytes) for the rate
        # When to look for verified files to delete (None: none waits unseen). Files verified
        # by this loop are deleted at once; the look is for a restart and for failed deletes.
        self.deletes_due: float | None = 0.0
        self.delete_backlog = False  # the last look found a full batch
        self.stopping = False  # the pool is shut down: no new downloads or deletes
        self.disk_need = 0  # bytes the output disk must have free before downloads resume
        # (free bytes seen, when to try again) after a write failed for want of space
        self.disk_full_seen: tuple[int, float] | None = None
        self.drive_outage: str | None = None  # a download found Drive down (see _downloaded)
        self.outage_holds: dict[str, int] = {}  # unit -> downloads held for an outage
        self.disk_backoff = DISK_RETRY
        self.manifest_due = False  # a file was verified since the manifest was written
        self.manifest_written = 0.0
        self.manifest_failed = False  # the last write failed (said once)
        # The exported image's band names, when the recipe knows them (not a user's function)
        self.band_names = RECIPES[spec.recipe.name].band_names(spec.recipe.params)

    def schedule_downloads(self) -> None:
        if self.drive is None or "drive" in self.down:
            return  # while Drive is down, the polls' quota reads find out when it is back
        store = self.store
        now = time.time()
        exported = store.exported_units_due(now, 64)
        listed_units: set[str] = set()
        if exported:
            listed_units = store.units_with_listed_files([r["id"] for r in exported])
        if exported and any(r["id"] not in listed_units for r in exported):
            self._list_outputs([r for r in exported if r["id"] not in listed_units])
        free = self.limits.download_workers * 2 - len(self.downloads)
        if free <= 0:
            return
        if "disk" in self.waits and not self._disk_has_room(self.disk_need):
            return
        rows = store.files_to_download(now, free)
        # Bytes the downloads under way will still write: the disk must hold them too.
        reserved = sum(size for size, _ in self.download_targets.values())
        for row in rows:
            if row["id"] in self.downloads:
                continue
            if not self._disk_has_room(reserved + row["size"]):
                break
            reserved += row["size"]
            with store.tx():
                store.set_file(row["id"], FILE_DOWNLOADING)
                store.set_unit(row["unit"], DOWNLOADING, only_from=(EXPORTED,))
            file = DriveFile(row["drive_id"], row["title"], row["size"], row["md5"], ())
            part = self._part(row)
            future = self.pool.submit(self.drive.download, file, part)
            future.add_done_callback(self._wake_up)
            self.downloads[row["id"]] = future
            self.download_targets[row["id"]] = (row["size"], part)

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
        row = self.store.file(file_id)
        if row is None:  # its unit's files were dropped meanwhile (redone export)
            part.unlink(missing_ok=True)
            return
        exc = future.exception() if not future.cancelled() else None
        if exc is None and not future.cancelled():
            try:
                self._keep(row, part)
                self._reachable("drive")
                self.outage_holds.pop(row["unit"], None)
                return
            except OSError as error:  # the verified file could not be put in place
                exc = error
        part.unlink(missing_ok=True)
        disk_full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
        with self.store.tx():
            self.store.set_file(file_id, LISTED)
            if future.cancelled():
                return
            if disk_full:
                # Not the file's fault: it waits in Drive, costing no try, until the disk
                # has room (_disk_has_room, below, says so).
                self.store.set_unit(row["unit"], EXPORTED, only_from=(DOWNLOADING,))
            elif http_status(exc) == 404:  # gone from Drive: only a new export brings it back
                self.store.drop_files(row["unit"], (LISTED, FILE_DOWNLOADING))
                self._redo_export(row["unit"], f"{row['title']} vanished from Drive")
            elif not isinstance(exc, VerifyError) and classify(exc).kind in (
                    Kind.OUTAGE, Kind.DOWNLOAD_QUOTA):
                self._download_held(row, classify(exc))
            else:
                message = str(exc) if isinstance(exc, VerifyError) else \
                    classify_exception(exc)[1]
                self._download_failed(self.store.unit(row["unit"]),
                                      f"download of {row['title']}: {message}")
        if self.drive_outage is not None:
            self._unreachable("drive", self.drive_outage)
            self.drive_outage = None
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
        fsync_dir(final.parent)
        with self.store.tx():
            self.store.set_file(row["id"], VERIFIED, local_path=str(final))
        self.downloaded.append((time.time(), row["size"]))
        self.manifest_due = True
        self.disk_backoff = DISK_RETRY
        if self.band_names and final.suffix == ".tif":
            try:
                write_band_names(final, self.band_names)
            except OSError as exc:  # a nicety: the verified file counts without it
                self._event(f"band names for {final.name} not written: {exc}", "warning",
                            row["unit"])

    def _download_held(self, row: Any, failure: Failure) -> None:
        """Not the file's fault, so no try is counted: Drive is down (the unit waits for it
        to answer), or the file's download quota for the day is used (it waits hours; the
        file stays in Drive, tracked, and no export is redone)."""
        unit = row["unit"]
        if failure.kind is Kind.OUTAGE:
            holds = self.outage_holds[unit] = self.outage_holds.get(unit, 0) + 1
            if holds > OUTAGE_HOLDS:
                # Drive answers everything else between these (the holds happen only after a
                # successful look): this file's own failure, counted like any other.
                self._download_failed(self.store.unit(unit),
                                      f"download of {row['title']}: {failure.message}")
                return
            self.store.set_unit(unit, EXPORTED, only_from=(DOWNLOADING,),
                                not_before=time.time() + self.limits.poll_seconds)
            self.drive_outage = failure.message
            return
        when = time.time() + DOWNLOAD_QUOTA_WAIT
        self.store.set_unit(unit, EXPORTED, only_from=(DOWNLOADING,), not_before=when,
                            error=f"download of {row['title']}: {failure.message}")
        self.store.log(f"Google's download quota for {row['title']} is used up for now; it "
                       "stays in Drive and is downloaded again after "
                       f"{time.strftime('%H:%M', time.localtime(when))}", "warning", unit)

    def _download_failed(self, unit: Any, message: str) -> None:
        failures = unit["download_failures"] + 1  # a retry starts the count afresh
        if failures >= self.limits.max_attempts:
            self.store.set_unit(unit["id"], FAILED, download_failures=failures,
                                error=f"{message} (gave up after {failures} tries; the file stays"
                                 " in Drive, and a retry downloads it again)")
            self.store.log(message, "error", unit["id"])
            return
        delay = min(2.0 ** failures, 60) * self.rng.uniform(0.5, 1.5)
        self.store.set_unit(unit["id"], EXPORTED, not_before=time.time() + delay,
                            download_failures=failures)
        self.store.log(message, "warning", unit["id"])

    def write_manifest(self) -> None:
        """output_dir/manifest.csv: a row per verified file (core/outputs/manifest.py)."""
        rows = self.store.manifest_rows()
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

    def _schedule_deletes(self) -> None:
        """Verified files leave Drive: deleted, never trashed (trash keeps the quota)."""
        # A file this worker verifies is deleted at once (collect), so this look is for a
        # restart and for failed deletes: made at start, after a failed delete, and while a
        # full batch waits, not every tick.
        if self.drive is None or self.deletes_due is None or time.time() < self.deletes_due:
            return
        rows = self.store.verified_files(64)
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
            drive_id = self.store.file(file_id)["drive_id"]
        future = self.delete_pool.submit(self.drive.delete, drive_id)
        future.add_done_callback(self._wake_up)
        self.deletes[file_id] = future

    def _deleted(self, file_id: int, future: Future[Any]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        row = self.store.file(file_id)
        if row is None:  # dropped meanwhile (its unit's export is being redone)
            return
        if exc is not None:
            self._event(f"deleting {row['title']} from Drive failed, will retry: "
                        f"{classify_exception(exc)[1]}", "warning", row["unit"])
            return
        with self.store.tx():
            self.store.set_file(file_id, DELETED)
            left = self.store.files_left_in_drive(row["unit"])
            unit = self.store.unit(row["unit"])
            if left == 0 and unit["state"] in (DOWNLOADING, EXPORTED):
                self.store.set_unit(row["unit"], DONE, error=None)
                size = self.store.unit_bytes(row["unit"])
                self.store.log(f"done: {size:,} bytes verified", "info", row["unit"])
                if row["unit"] not in self.recovered:
                    self.finished.append(time.time())
