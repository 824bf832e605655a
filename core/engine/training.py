"""The worker's training room: a model the job's recipe trains once in EE (the classify
recipe's classifier) is exported to an asset before any unit that uses it is sent, and every
such unit then loads that asset, so every tile is classified by the same classifier and its
training is paid for once.

A model is made only while units that need it wait to be sent: a job cancelled meanwhile
cancels its training, and a retry of units whose training failed trains again. Its export is
crash-safe like every other (the requestId is in the store before the request leaves). The
asset is eebatch's own (its name carries the session id) and is kept after the job: it is the
trained classifier, which the user may want; `eebatch status` and the log say where it is.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from core.backends.failures import RETRYABLE, Kind, classify, classify_message
from core.engine.base import WorkerBase
from core.naming import ee_safe
from core.recipes.catalog import RECIPES
from core.states import (
    EE_CANCELLED,
    EE_FAILED,
    EE_SUCCEEDED,
    M_CANCELLED,
    M_FAILED,
    M_READY,
    M_RUNNING,
    M_SUBMITTING,
)


class Training(WorkerBase):
    def _init_training(self) -> None:
        recipe = RECIPES.get(self.spec.recipe.name) if self.spec.recipe else None
        self.model_recipe = recipe if recipe is not None and recipe.trains else None
        self.training_due = 0.0  # when the models are next looked at
        self.models_ready = {}
        # One period (a job without [time], or one step): its model is the job's, whatever
        # the recipe keys it by.
        self.one_period = self.model_recipe is not None and self.store.count_periods() <= 1

    def train(self) -> None:
        """Each tick, at most once a poll interval: start, watch, or cancel the job's models,
        and say why units wait for them."""
        if self.model_recipe is None or time.time() < self.training_due:
            return
        self.training_due = time.time() + self.limits.poll_seconds
        needed: dict[str, str] = {}  # key -> a period that needs it (the model's dates)
        for period in self.store.periods_to_send():
            needed.setdefault(self.model_of(period)[0], period)
        waiting: list[str] = []
        for key, period in sorted(needed.items()):
            row = self.store.model(key)
            if row is None or row["state"] in (M_FAILED, M_CANCELLED):
                # The first training, or again after a retry brought back units of a model
                # that failed (or was cancelled when nothing needed it).
                self._send_model(key, period, tries=1)
            elif row["state"] == M_SUBMITTING:
                self._send_model(key, period, tries=row["tries"])
            elif row["state"] == M_RUNNING:
                self._watch_model(row, period)
            row = self.store.model(key)
            if row is not None and row["state"] == M_READY:
                self.models_ready[key] = row["asset"]
            elif row is not None and row["state"] in (M_SUBMITTING, M_RUNNING):
                waiting.append(self._model_text(row))
        for row in self.store.models():
            if row["key"] not in needed and row["state"] == M_RUNNING:
                self._cancel_model(row)
        self._wait("model", "; ".join(waiting) or None, loud=False)

    def _asset(self, key: str) -> str:
        assert self.spec.recipe is not None
        folder = (self.spec.recipe.params.get("model_folder") or
                  f"projects/{self.ee.project}/assets").rstrip("/")
        tail = "" if key == "job" else f"_{ee_safe(key)}"
        return f"{folder}/eebatch_{ee_safe(self.store.id)}_{self.model_recipe.name}{tail}"

    def _send_model(self, key: str, period: str, tries: int) -> None:
        row = self.store.model(key)
        if row is None or row["state"] != M_SUBMITTING:
            with self.store.tx():  # stored before it is sent: a restart resends the same id
                self.store.model_sending(key, self._asset(key), str(uuid.uuid4()), tries)
            row = self.store.model(key)
        assert row is not None and self.spec.recipe is not None and self.model_recipe
        start, end = self.store.period_dates(period)
        try:
            model = self.model_recipe.model(self.spec.recipe.params, self.spec.path.parent,
                                            start, end)
            name = self.ee.start_classifier_export(
                row["request_id"], model, row["asset"],
                description=f"eebatch_{ee_safe(self.store.id)}_train_{ee_safe(key)}",
                workload_tag=self.spec.export.workload_tag)
        except Exception as exc:
            failure = classify(exc)
            if failure.kind is Kind.OUTAGE:
                self._unreachable("ee", failure.message)
            elif failure.kind not in RETRYABLE:  # resent next look under the same id if so
                self._model_failed(row, key, f"its export was refused: {failure.message}")
            return
        self._reachable("ee")
        with self.store.tx():
            self.store.set_model(key, M_RUNNING, operation=name)
            self.store.log(f"training the {self._what(key)} in EE: it is exported to "
                           f"{row['asset']} before any tile that uses it is sent")

    def _watch_model(self, row: Any, period: str) -> None:
        try:
            op = self.ee.get_operation(row["operation"])
        except Exception as exc:
            failure = classify(exc)
            if failure.kind is Kind.OUTAGE:
                self._unreachable("ee", failure.message)
            return  # anything else: looked at again at the next poll
        self._reachable("ee")
        key = row["key"]
        if op is None or op.state in (EE_FAILED, EE_CANCELLED):
            why = ("EE no longer knows its task" if op is None else
                   "its task was cancelled in EE" if op.state == EE_CANCELLED else
                   op.error or "its task failed without a message")
            if op is not None and op.state == EE_FAILED and classify_message(why) in RETRYABLE \
                    and row["tries"] < self.limits.max_attempts:
                with self.store.tx():  # a new export (a new requestId), one more try
                    self.store.set_model(key, M_FAILED, error=why)
                    self.store.log(f"training the {self._what(key)} failed ({why}); "
                                   "trying again", "warning")
                self._send_model(key, period, tries=row["tries"] + 1)
            else:
                self._model_failed(row, key, why)
        elif op.state == EE_SUCCEEDED:
            with self.store.tx():
                self.store.set_model(key, M_READY)
                self.store.log(f"the {self._what(key)} is trained: {row['asset']} (kept after "
                               "the job; every tile that needs it now goes)")
            self.next_poll = time.time()  # its tiles go at once

    def _model_failed(self, row: Any, key: str, why: str) -> None:
        """The model cannot be made: the units waiting for it fail with the reason, and a
        retry of them trains again."""
        assert self.model_recipe is not None and self.spec.recipe is not None
        params = self.spec.recipe.params
        periods = (None if key == "job" else
                   [p for p in self.store.periods_to_send()
                    if self.model_recipe.model_key(params, p) == key])
        error = f"the {self._what(key)} could not be trained: {why}"
        with self.store.tx():
            self.store.set_model(key, M_FAILED, error=why)
            failed = self.store.fail_units_to_send(periods, error)
            self.store.log(f"{error}; {failed} units failed with it (a retry trains again)",
                           "error")

    def _cancel_model(self, row: Any) -> None:
        """No unit needs the model any more (the job was cancelled): its training stops."""
        try:
            if row["operation"]:
                self.ee.cancel(row["operation"])
        except Exception as exc:
            self._event(f"cancelling the training of the {self._what(row['key'])} failed: "
                        f"{classify(exc).message}", "warning")
            return
        with self.store.tx():
            self.store.set_model(row["key"], M_CANCELLED, error="no unit needed it any more")
            self.store.log(f"training of the {self._what(row['key'])} cancelled: no unit "
                           "needs it any more")

    def _model_text(self, row: Any) -> str:
        # Short: the dashboard's header shows it in the 20 characters an 80-column one has.
        return f"training the {self._what(row['key'])}"

    def _what(self, key: str) -> str:
        return "classifier" if key == "job" else f"classifier of period {key}"
