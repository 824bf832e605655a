"""`eebatch doctor --probe JOB`: a few minutes' self-test on the user's own project for what
Google does not document and no offline test can settle.

It sends two exports of a few pixels to the job's Drive folder, named as eebatch names them:
one that should succeed and one whose maxPixels is 1, so it fails. From them it learns whether
EE takes eebatch's names, in which order operations.list lists, how long a finished export's
file takes to show in Drive's files.list (and whether asking by the folder id from the
operation's destinationUris is sooner than by the folder's title), Drive's quota fields as
Google sends them, and EE's text for a failing export with the class eebatch gives it.

Then it removes what it made: the Drive files it saw appear for its own exports (nothing
else), its tasks if still running, and the Drive folder only when EE made it for the probe
and it is empty. Every finding is a line; bad news is a finding, not an error.
"""

from __future__ import annotations

import itertools
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from core.backends import probe_calls
from core.backends.earthengine import Operation
from core.backends.failures import classify_exception, classify_message
from core.backends.timestamps import unix_time
from core.naming import file_prefix, task_description
from core.spec import JobSpec
from core.states import EE_PENDING, EE_RUNNING, EE_SUCCEEDED

POLL_SECONDS = 2.0  # between two looks at the exports and at Drive's listing
LISTING_BOUND = 600.0  # the longest the probe waits for the file to show in files.list
PROGRESS_EVERY = 30.0  # a progress line at least this often while it waits
# A folder Drive dated this long before the probe's first export (Google's clocks both) was
# not made for it.
CLOCK_SKEW = 60.0


class CannotConnect(Exception):
    """EE or Drive does not answer for this job's backend: nothing was sent."""


@dataclass(frozen=True)
class Finding:
    name: str
    ok: bool  # False: bad news for eebatch on this project (the probe still ran)
    message: str


@dataclass
class _Export:
    role: str  # "export" (should succeed) or "failing"
    unit: str
    description: str
    prefix: str
    name: str | None = None  # the operation, once EE took it
    refused: str | None = None  # the text when EE refused the request itself
    op: Operation | None = None  # the last look at it
    last_live: float | None = None  # when it was last seen not finished
    seen_done: float | None = None  # when it was first seen finished
    files: dict[str, str] = field(default_factory=dict)  # Drive id -> title, seen appearing


class Probe:
    def __init__(self, spec: JobSpec, *, timeout: float = 900.0,
                 report: Callable[[Finding], None], progress: Callable[[str], None],
                 emulator_url: str | None = None, poll: float = POLL_SECONDS,
                 listing_bound: float = LISTING_BOUND) -> None:
        self.spec = spec
        self.timeout = timeout
        self.report = report
        self.progress = progress
        self.emulator_url = emulator_url
        self.poll = poll
        self.listing_bound = min(listing_bound, timeout)
        tag = secrets.token_hex(4)
        self.session = f"probe-{tag}"
        self.exports = [self._named("export", f"probe{tag}ok"),
                        self._named("failing", f"probe{tag}big")]
        self.folder = spec.export.folder
        self.folders_before: list[str] = []
        self.before_ids: set[str] = set()  # files in the folder(s) before the probe sent anything
        self.folder_id: str | None = None  # from the export's destinationUris
        self.backends: Any = None

    def _named(self, role: str, unit: str) -> _Export:
        return _Export(role, unit, task_description(self.session, unit, 1),
                       file_prefix(self.spec.export.prefix, self.spec.name, unit))

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> None:
        """Every check, one finding each; the clean-up runs whatever happened before it
        (ctrl+c included)."""
        self._connect()
        try:
            self._submit()
            self._order()
            self._wait()
            self._listing()
            self._quota()
            self._failure_text()
        finally:
            self._clean_up()

    def _connect(self) -> None:
        from core.engine.runner import open_backends

        try:
            self.backends = open_backends(self.spec, self.emulator_url)
            self.backends.ee.ping()
            self.folders_before = self.backends.drive.find_folders(self.folder)
            self.before_ids = {f.id for f in self.backends.drive.list_folder(self.folders_before)}
        except Exception as exc:
            raise CannotConnect(f"could not connect: {classify_exception(exc)[1]}") from None
        where = ("exists" if len(self.folders_before) == 1 else
                 f"exists {len(self.folders_before)} times" if self.folders_before
                 else "does not exist yet")
        self.progress(f"probe {self.session}: project {self.backends.ee.project}, Drive folder "
                      f"{self.folder!r} {where}; at most {self.timeout:g} s")

    def _submit(self) -> None:
        lon, lat = self.spec.region.representative_point().coords[0]
        region = probe_calls.tiny_region(lon, lat, self.spec.export.scale)
        export = replace(self.spec.export, destination="drive", file_format="GeoTIFF",
                         file_dimensions=None)
        for x in self.exports:
            settings = export if x.role == "export" else replace(export, max_pixels=1)
            try:
                x.name = self.backends.ee.start_export(
                    str(uuid.uuid4()), probe_calls.tiny_image(), kind="image",
                    description=x.description, prefix=x.prefix, export=settings, region=region)
            except Exception as exc:
                kind, message = classify_exception(exc)
                x.refused = message
                if x.role == "export":
                    self.report(Finding("names", False, f"EE refused the export "
                                        f"{x.description!r} (file prefix {x.prefix!r}): "
                                        f"{message} [{kind.name.lower()}]"))
                continue
            x.last_live = time.monotonic()
            if x.role == "export":
                self.report(Finding("names", True, f"EE took description {x.description!r} "
                                    f"and file prefix {x.prefix!r}"))

    def _order(self) -> None:
        """Newest or oldest first: where the probe's two exports (sent one after the other)
        stand on the first page, else how the page's createTimes run."""
        try:
            page = next(self.backends.ee.operation_pages(), [])
        except Exception as exc:
            self.report(Finding("task order", False, "unknown order: operations.list failed: "
                                f"{classify_exception(exc)[1]}"))
            return
        names = [op.name for op in page]
        first, second = (x.name for x in self.exports)
        if first in names and second in names:
            newest = names.index(second) < names.index(first)
            how = "the probe's second export came before its first on the first page"
        else:
            times = [t for t in (op.created_at() for op in page) if t is not None]
            pairs = list(itertools.pairwise(times))
            newest = None
            if pairs and any(a != b for a, b in pairs):
                if all(a >= b for a, b in pairs):
                    newest = True
                elif all(a <= b for a, b in pairs):
                    newest = False
            how = f"by the createTime of the {len(page)} operations on the first page"
        if newest is None:
            self.report(Finding("task order", False, "operations.list: unknown order "
                                f"({how}); eebatch asks for its tasks by name"))
        elif newest:
            self.report(Finding("task order", True, f"operations.list lists newest first ({how})"))
        else:
            self.report(Finding("task order", False, f"operations.list lists oldest first "
                                f"({how}): eebatch still finds its tasks, asking for those "
                                "past its pages by name, at more requests a poll"))

    def _operation(self, name: str) -> Operation:
        op = self.backends.ee.get_operation(name)
        if op is None:
            raise LookupError(f"EE does not know task {name}")
        return op

    def _wait(self) -> None:
        """Until both exports have finished or the timeout; a progress line on every change
        of state and at least every PROGRESS_EVERY seconds."""
        start = time.monotonic()
        deadline = start + self.timeout
        shown: tuple[str, ...] = ()
        shown_at = start
        while True:
            live = [x for x in self.exports if x.name and x.seen_done is None]
            if not live:
                break
            for x in live:
                try:
                    op = self._operation(x.name or "")
                except Exception as exc:
                    self.progress(f"  operations.get failed ({classify_exception(exc)[1]}); "
                                  "trying again")
                    continue
                now = time.monotonic()
                x.op = op
                if op.active:
                    x.last_live = now
                else:
                    x.seen_done = now
            now = time.monotonic()
            state = tuple(f"{x.role} {x.op.state if x.op else '?'}" + (
                f" {x.op.progress:.0%}" if x.op and x.op.active else "")
                for x in self.exports if x.name)
            if state != shown or now - shown_at >= PROGRESS_EVERY:
                self.progress(f"  waiting: {', '.join(state)} after {now - start:.0f} s "
                              f"(at most {self.timeout:g} s)")
                shown, shown_at = state, now
            if all(x.seen_done is not None for x in self.exports if x.name):
                break
            if now >= deadline:
                break
            time.sleep(min(self.poll, max(0.0, deadline - now)))
        x = self.exports[0]
        if x.name is None:
            return
        if x.seen_done is None:
            state = x.op.state if x.op else "unknown"
            self.report(Finding("export", False, f"not finished after {self.timeout:g} s "
                                f"(state {state}); it is cancelled below. Exports can queue "
                                "for long on a busy project: try a larger --probe-timeout"))
            return
        assert x.op is not None
        if x.op.state != EE_SUCCEEDED:
            self.report(Finding("export", False, f"the probe's export ended {x.op.state}: "
                                f"{x.op.error or 'no message'}"))
            return
        self.folder_id = x.op.drive_folder()
        self.report(Finding("export", True, f"finished {x.seen_done - start:.1f} s after it "
                            f"was sent ({x.op.eecu_seconds or 0:g} EECU-seconds)"))

    # -- Drive -------------------------------------------------------------------------------

    def _ours(self, items: list[Any]) -> dict[str, str]:
        """Files of the probe's exports among `items` (DriveFiles or raw dicts) that were not
        in the folder before: the prefix, then '.' (one file) or '-' (EE's shards)."""
        found = {}
        for item in items:
            fid, title = ((item["id"], item.get("title", "")) if isinstance(item, dict)
                          else (item.id, item.title))
            if fid in self.before_ids:
                continue
            for x in self.exports:
                if title.startswith(x.prefix) and title[len(x.prefix):][:1] in (".", "-"):
                    x.files[fid] = title
                    found[fid] = title
        return found

    def _by_title(self) -> bool:
        """eebatch's own way: folders by title, then the files in them (files.list)."""
        drive = self.backends.drive
        return bool(self._ours(drive.list_folder(drive.find_folders(self.folder))))

    def _by_folder_id(self) -> bool:
        assert self.folder_id is not None
        return bool(self._ours(probe_calls.children(self.backends.drive, self.folder_id)))

    def _listing(self) -> None:
        """How long after the export's end its file shows in files.list: by the folder's title
        (as eebatch looks today) and by the folder id from destinationUris. The bounds come
        from the polls: the file was written after the last look that saw the export live and
        before the first that saw it finished."""
        x = self.exports[0]
        if x.seen_done is None or x.op is None or x.op.state != EE_SUCCEEDED:
            self.report(Finding("drive listing", False, "not measured: the probe's export did "
                                "not succeed"))
            return
        assert x.last_live is not None
        folder_answer = ""
        if self.folder_id is not None:
            try:
                got = probe_calls.get_file(self.backends.drive, self.folder_id)
                folder_answer = (f"files.get found the folder {self.folder_id} from "
                                 "destinationUris at once" if got is not None else
                                 f"files.get did not find the folder {self.folder_id} from "
                                 "destinationUris")
            except Exception as exc:
                folder_answer = (f"files.get of the folder {self.folder_id} failed: "
                                 f"{classify_exception(exc)[1]}")
        paths: dict[str, Callable[[], bool]] = {"title": self._by_title}
        if self.folder_id is not None:
            paths["folder id"] = self._by_folder_id
        first: dict[str, float] = {}
        last_miss: dict[str, float] = {}
        end = x.seen_done + self.listing_bound
        while True:
            for path, look in paths.items():
                if path in first:
                    continue
                try:
                    hit = look()
                except Exception as exc:
                    self.progress(f"  files.list failed ({classify_exception(exc)[1]}); trying "
                                  "again")
                    continue
                (first if hit else last_miss)[path] = time.monotonic()
            now = time.monotonic()
            if len(first) == len(paths) or now >= end:
                break
            time.sleep(min(self.poll, max(0.0, end - now)))

        def span(path: str) -> str:
            upper = first[path] - x.last_live
            if path not in last_miss:
                return f"within {upper:.1f} s of the export's end (at the first look)"
            lower = max(0.0, last_miss[path] - x.seen_done)
            return f"within {upper:.1f} s of the export's end (not before {lower:.1f} s)"

        if "title" in first:
            self.report(Finding("drive listing", True, "files.list (folder by title, as eebatch "
                                f"looks) showed the file {span('title')}; polled every "
                                f"{self.poll:g} s"))
        else:
            self.report(Finding("drive listing", False, "files.list did not show the file within "
                                f"{self.listing_bound:g} s of the export's end (eebatch gives a "
                                "missing file minutes, then reports it)"))
        if self.folder_id is None:
            self.report(Finding("folder by id", False, "the finished export's destinationUris "
                                "named no Drive folder: eebatch can find it by title only"))
        elif "folder id" not in first:
            self.report(Finding("folder by id", False, f"{folder_answer}; a files.list in it "
                                f"did not show the file within {self.listing_bound:g} s"))
        else:
            listed = f"a files.list in it showed the file {span('folder id')}"
            if "title" in first:
                sooner = first["title"] - first["folder id"]
                listed += (f", {sooner:.1f} s sooner than by title" if sooner >= self.poll
                           else ", no sooner than by title")
            self.report(Finding("folder by id", True, f"{folder_answer}; {listed}"))

    def _quota(self) -> None:
        try:
            about = probe_calls.about(self.backends.drive)
        except Exception as exc:
            self.report(Finding("quota", False, f"about.get failed: {classify_exception(exc)[1]}"))
            return
        fields = " ".join(f"{key}={about.get(key, '(absent)')}"
                          for key in probe_calls.QUOTA_FIELDS)
        missing = [key for key in probe_calls.QUOTA_FIELDS
                   if key not in about and not (key == "quotaBytesTotal"
                                                and about.get("quotaType") == "UNLIMITED")]
        try:
            other = int(about.get("quotaBytesUsedAggregate", 0)) - int(
                about.get("quotaBytesUsed", 0))
        except (TypeError, ValueError):
            other = 0
        if other > 0:
            fields += f" (Gmail and Photos hold {other:,} bytes of it)"
        if missing:
            fields += f" — missing: {', '.join(missing)}"
        self.report(Finding("quota", not missing, fields))

    def _failure_text(self) -> None:
        x = self.exports[1]
        if x.refused is not None:
            text = x.refused
            when = "refused the request"
        elif x.op is not None and x.seen_done is not None and x.op.error:
            text = x.op.error
            when = f"failed the task ({x.op.state})"
        elif x.op is not None and x.seen_done is not None:
            self.report(Finding("failing export", False, "EE ran an export with maxPixels 1 "
                                f"to the end ({x.op.state}): no failure text to read"))
            return
        else:
            self.report(Finding("failing export", False, "the export with maxPixels 1 did not "
                                f"end within {self.timeout:g} s: no failure text to read"))
            return
        kind = classify_message(text).name.lower()
        self.report(Finding("failing export", True, f"with maxPixels 1 EE {when}: {text!r}; "
                            f"eebatch classifies it {kind}"))

    # -- leaving nothing behind ------------------------------------------------------------

    def _clean_up(self) -> None:
        """Cancel the probe's live tasks, delete the files it saw appear for its exports, and
        the folder when EE made it for the probe and it is empty. Never anything else."""
        if self.backends is None:
            return
        done: list[str] = []
        left: list[str] = []
        cancelled = 0
        for x in self.exports:
            if x.name is None:
                continue
            try:
                op = self._operation(x.name)
                if op.state in (EE_PENDING, EE_RUNNING):  # CANCELLING is on its way
                    self.backends.ee.cancel(x.name)
                    cancelled += 1
                    x.op = op
            except Exception as exc:
                left.append(f"task {x.description} (cancel it: {classify_exception(exc)[1]})")
        if cancelled:
            done.append(f"cancelled {cancelled} task{'s' if cancelled > 1 else ''}")
        drive = self.backends.drive
        try:  # one more look: a file the listing showed late
            self._by_title()
            if self.folder_id is not None:
                self._by_folder_id()
        except Exception:
            pass
        files = {fid: title for x in self.exports for fid, title in x.files.items()}
        deleted = 0
        for fid, title in files.items():
            try:
                drive.delete(fid)
                deleted += 1
            except Exception as exc:
                left.append(f"file {title} ({fid}): {classify_exception(exc)[1]}")
        done.append(f"deleted its {deleted} file{'' if deleted == 1 else 's'} in Drive")
        finished = self.exports[0]
        if finished.op is not None and finished.op.state == EE_SUCCEEDED and not files:
            left.append(f"the export's file never showed in files.list: look in Drive for "
                        f"{finished.prefix}.tif and delete it")
        self._remove_folder(done, left, unaccounted=any("never showed" in t for t in left))
        message = "; ".join(done) + (" — left: " + "; ".join(left) if left else "")
        self.report(Finding("clean-up", not left, message))

    def _remove_folder(self, done: list[str], left: list[str], unaccounted: bool) -> None:
        if self.folders_before:
            return  # the user's folder: never the probe's to remove
        drive = self.backends.drive
        try:
            ids = [self.folder_id] if self.folder_id else drive.find_folders(self.folder)
        except Exception as exc:
            left.append(f"folder {self.folder!r}: {classify_exception(exc)[1]}")
            return
        if len(ids) != 1 or unaccounted:
            if ids:
                left.append(f"folder {self.folder!r} (EE made it; remove it when empty)")
            return
        try:
            meta = probe_calls.get_file(drive, ids[0])
            if meta is None:
                return
            created = unix_time(meta.get("createdDate"))
            sent = min((t for x in self.exports if x.op is not None
                        if (t := x.op.created_at()) is not None), default=None)
            if created is None or sent is None or created < sent - CLOCK_SKEW:
                left.append(f"folder {self.folder!r} (not made for the probe, it seems)")
                return
            inside = probe_calls.children(drive, ids[0], trashed=True)
            if inside:
                left.append(f"folder {self.folder!r}: EE made it and it holds "
                            f"{len(inside)} other item(s)")
                return
            probe_calls.delete_folder(drive, ids[0])
            done.append(f"removed the folder {self.folder!r} EE made for it")
        except Exception as exc:
            left.append(f"folder {self.folder!r}: {classify_exception(exc)[1]}")
