"""The worker's commands: what a UI posted through the store (pause, resume, set a limit,
cancel or retry a unit), applied by the one thread that owns the store."""

from __future__ import annotations

from typing import Any

from core.backends.failures import (
    classify_exception,
)
from core.engine.base import WorkerBase
from core.limits import PAUSED
from core.states import (
    ATTEMPT_LIVE,
    CANCELLED,
    DOWNLOADING,
    EE_PENDING,
    EE_RUNNING,
    EE_SUCCEEDED,
    EXPORTED,
    FAILED,
    LISTED,
    PENDING,
    VERIFIED,
    cancel_refusal,
    retry_refusal,
)
from core.store import StoreError


class Commands(WorkerBase):
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
                self.store.set_setting(PAUSED, True)
            return "submissions paused"
        if verb == "resume":
            with self.store.tx():
                self.store.set_setting(PAUSED, False)
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
            refusal = retry_refusal(row["id"], row["state"])
            if refusal:
                raise StoreError(refusal)
            return self._retry(row)
        if verb == "cancel":
            return self._cancel(row)
        raise StoreError(f"unknown command {verb!r}")

    def _retry(self, row: Any) -> str:
        """A retry starts the unit's counts afresh. A unit whose export is (or may still be)
        in Drive is downloaded again, not exported again: a second export would cost EECU and
        leave one of the two outputs behind in Drive."""
        attempt = self.store.latest_attempt(row["id"])
        in_drive = self.store.unit_has_files_in(row["id"], (LISTED, VERIFIED))
        # A failed unit whose last export succeeded and was never taken (a name clash, a
        # download that gave up): its files are looked for again.
        untaken = row["state"] == FAILED and attempt is not None and \
            attempt["state"] == EE_SUCCEEDED and \
            not self.store.attempt_has_deleted_file(attempt["id"])
        fetch = self.drive is not None and (in_drive or untaken)
        with self.store.tx():
            self.store.set_unit(row["id"], EXPORTED if fetch else PENDING, error=None,
                                attempts=0, download_failures=0, priority=1, not_before=None)
        self.missing_since.pop(row["id"], None)
        self._look_for_deletes(0.0)  # a verified file may wait in Drive to be deleted
        if fetch:
            return "its export is still in Drive: downloading it again"
        return "queued again, ahead of the others"

    def _cancel(self, row: Any) -> str:
        state = row["state"]
        in_flight = self.store.file_ids_of(row["id"]) & (
            self.downloads.keys() | self.deletes.keys())
        refusal = cancel_refusal(row["id"], DOWNLOADING if in_flight else state)
        if refusal:
            raise StoreError(refusal)
        attempt = self.store.latest_attempt(row["id"])
        if attempt is not None and attempt["state"] in (EE_PENDING, EE_RUNNING) and \
                attempt["operation"]:
            try:
                self.ee.cancel(attempt["operation"])
            except Exception as exc:
                raise StoreError(f"EE did not cancel {row['id']}: "
                                 f"{classify_exception(exc)[1]}") from None
        with self.store.tx():
            if attempt is not None and attempt["state"] in ATTEMPT_LIVE:
                self.store.attempt_cancelling(attempt["id"])
            self.store.set_unit(row["id"], CANCELLED, error="cancelled by the user")
        if state == EXPORTED:
            self._remove_outputs(row["id"])
        return CANCELLED  # the answer the user sees: "cancel UNIT: cancelled"
