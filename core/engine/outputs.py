"""The worker's view of Drive's folder: which files are an exported unit's outputs (the
folder EE wrote to, EE's names for the format, created after EE accepted the export: see
core/engine/matching.py), what happens when they never appear, and removing a cancelled
unit's outputs (only files it made)."""

from __future__ import annotations

import time
from typing import Any

from core.backends.drive import DriveFile
from core.backends.failures import Kind, classify, classify_exception
from core.engine import matching
from core.engine.base import CLOCK_SKEW, WorkerBase
from core.recipes import RECIPES
from core.states import (
    EE_SUCCEEDED,
    FAILED,
    FILE_DOWNLOADING,
    LISTED,
    VERIFIED,
)


class Outputs(WorkerBase):
    def _init_outputs(self) -> None:
        spec = self.spec
        self.missing_since: dict[str, float] = {}  # unit -> when its files were first missed
        self.folder_ids: list[str] = []  # Drive folders of the export's name, once looked up
        self.naming = matching.naming_for(
            RECIPES[spec.recipe.name].output(spec.recipe.params), spec.export.file_format)

    def _list_outputs(self, units: list[Any]) -> None:
        """Find exported units' files: in the folder EE wrote each to (every folder of the
        export's name where EE did not say), named as the export names its files, created
        after EE accepted the export (core/engine/matching.py)."""
        assert self.drive is not None
        attempts = {row["id"]: self.store.latest_attempt(row["id"]) for row in units}
        folders = {a["folder_id"] for a in attempts.values() if a is not None and a["folder_id"]}
        try:
            by_name = any(a is None or not a["folder_id"] for a in attempts.values())
            if by_name and not self.folder_ids:
                self.folder_ids = self.drive.find_folders(self.spec.export.folder)
            listing = self.drive.list_folder(sorted(folders | set(self.folder_ids if by_name
                                                                  else ())))
            by_prefix = matching.by_prefix(listing, self.naming)
            if by_name and any(self._prefix(r["id"], attempts[r["id"]]) not in by_prefix
                               for r in units):
                # EE may have made another folder of that name since the last search.
                found = self.drive.find_folders(self.spec.export.folder)
                if set(found) != set(self.folder_ids):
                    self.folder_ids = found
                    listing = self.drive.list_folder(sorted(folders | set(found)))
                    by_prefix = matching.by_prefix(listing, self.naming)
        except Exception as exc:
            failure = classify(exc)
            if failure.kind is Kind.OUTAGE:
                self._unreachable("drive", failure.message)
            else:
                self._event(f"listing the Drive folder failed: {failure.message}", "warning")
            return
        self._reachable("drive")
        known = self.store.known_drive_ids()
        for row in units:
            self._take_outputs(row["id"], attempts[row["id"]], by_prefix, known, count_miss=True)
        # The listing holds whole folders: take the files of the other exported units as well
        # (no miss is counted for them). Otherwise a backlog bigger than the batch above had
        # the folder listed again each time a few units started downloading (72 listings for
        # 200 exported units).
        batch = {row["id"] for row in units}
        for unit in self.store.exported_units_unlisted():
            if unit in batch:
                continue
            attempt = self.store.latest_attempt(unit)
            if attempt is not None and self._prefix(unit, attempt) in by_prefix and (
                    attempt["folder_id"] in folders or by_name):
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
                self.store.set_unit(unit, FAILED, error=message)
                self.store.log(message, "error", unit)
            return
        new = [f for f in found.files if f.id not in known]
        if not found.files:
            if count_miss:
                self._count_miss(unit)
            return
        self.missing_since.pop(unit, None)
        if not new:
            return
        with self.store.tx():
            self.store.record_files(unit, attempt["id"] if attempt else None, new)
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
        return matching.pick(by_prefix.get(self._prefix(unit, attempt), []), folders,
                             not_before)

    def _count_miss(self, unit: str) -> None:
        """An exported unit's files are not listed yet. Drive's search index lags new files
        (by how much Google does not say: a lag of 2-3 s once re-exported every unit of a
        trial that gave up after five looks), so the export is redone only once its files
        have been missed for limits.listing_grace_minutes."""
        now = time.time()
        since = self.missing_since.setdefault(unit, now)
        grace = self.limits.listing_grace_minutes * 60
        if now - since >= grace:
            self.missing_since.pop(unit)
            with self.store.tx():
                self._redo_export(unit, "its files never appeared in Drive folder "
                                        f"{self.spec.export.folder!r} (looked for "
                                        f"{grace / 60:g} minutes)")

    def _redo_export(self, unit: str, why: str) -> None:
        row = self.store.unit(unit)
        assert row is not None
        self._backoff(unit, row["attempts"], why)

    def _remove_outputs(self, unit: str) -> None:
        """A cancelled unit's export leaves Drive: the files recorded as its own, or, if none
        were recorded yet, those a listing matches to its last export. Nothing else is
        touched; a name clash is reported and left alone."""
        if self.drive is None:
            return
        ids = self.store.drive_ids_of(unit, (LISTED, VERIFIED))
        attempt = self.store.latest_attempt(unit)
        try:
            if not ids and attempt is not None and attempt["state"] == EE_SUCCEEDED:
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
            self.store.drop_files(unit, (LISTED, FILE_DOWNLOADING, VERIFIED))
            if ids:
                self.store.log(f"outputs removed from Drive ({len(ids)} files)", "info", unit)
            else:
                self.store.log("no file of its export was found in Drive to remove (Drive may "
                               "not list it yet); any that appears is left there", "warning",
                               unit)
