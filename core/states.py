"""Every state a unit, an attempt or a file can be in, and the sets of them the rest of eebatch
asks about (which hold an EE slot, which are unfinished, which can be cancelled or retried).
One room for these rules: the store, the worker, the command line and the dashboard import
them from here.

Unit:     pending → submitting → queued → running → exported → downloading → done
          (backoff: waits to be sent again; split: replaced by its four children;
          failed / cancelled: wait for the user's retry)
Attempt:  one EE export of a unit: submitting (our side, before EE answers), then EE's own
          task states PENDING, RUNNING, CANCELLING, SUCCEEDED, FAILED, CANCELLED.
File:     one Drive file of an attempt: listed → downloading → verified → deleted (from Drive);
          or one file of a unit on the direct route, local from the start (never in Drive).
"""

from __future__ import annotations

# -- units, in the order a unit passes through them ---------------------------------------------
PENDING, SUBMITTING, QUEUED, RUNNING = "pending", "submitting", "queued", "running"
EXPORTED, DOWNLOADING, DONE = "exported", "downloading", "done"
BACKOFF, FAILED, CANCELLED, SPLIT = "backoff", "failed", "cancelled", "split"
STATES = (PENDING, SUBMITTING, QUEUED, RUNNING, EXPORTED, DOWNLOADING, DONE, BACKOFF, FAILED,
          CANCELLED, SPLIT)

IN_EE = (SUBMITTING, QUEUED, RUNNING)  # holding one of the job's EE task slots
ACTIVE = (*IN_EE, EXPORTED, DOWNLOADING)  # between submission and done
UNFINISHED = (PENDING, BACKOFF, *ACTIVE)  # a worker still has something to do
# Nothing more for a worker to do on its own (failed and cancelled wait for a retry).
SETTLED = (DONE, SPLIT, FAILED, CANCELLED)
FINISHED = (DONE, SPLIT)  # finished well: a split unit's work lives on in its children
# A split unit is replaced by its children: it no longer counts towards progress.
COUNTED = tuple(s for s in STATES if s != SPLIT)
RETRYABLE = (FAILED, CANCELLED)
# Not DOWNLOADING: a file on its way is done in moments, and stopping it would throw it away.
CANCELLABLE = tuple(s for s in UNFINISHED if s != DOWNLOADING)


def cancel_refusal(unit: str, state: str) -> str | None:
    """Why `unit` in `state` cannot be cancelled, or None when it can."""
    if state == DOWNLOADING:
        return f"unit {unit} is downloading: it will be done in moments"
    if state not in CANCELLABLE:
        return f"unit {unit} is {state}: nothing to cancel"
    return None


def retry_refusal(unit: str, state: str) -> str | None:
    """Why `unit` in `state` cannot be retried, or None when it can."""
    if state not in RETRYABLE:
        return f"unit {unit} is {state}: only failed or cancelled units retry"
    return None


# -- attempts: ours until EE answers, then EE's task states -------------------------------------
A_SUBMITTING = "submitting"
EE_PENDING, EE_RUNNING, EE_CANCELLING = "PENDING", "RUNNING", "CANCELLING"
EE_SUCCEEDED, EE_FAILED, EE_CANCELLED = "SUCCEEDED", "FAILED", "CANCELLED"
EE_LIVE = (EE_PENDING, EE_RUNNING, EE_CANCELLING)  # EE may still run it
ATTEMPT_LIVE = (A_SUBMITTING, *EE_LIVE)  # the worker still watches it

# -- a model a recipe trains once in EE before its units (core/engine/training.py): our side
# before EE answers, EE has its export, the asset exists, the units needing it failed with it,
# or no unit needed it any more
M_SUBMITTING, M_RUNNING, M_READY = "submitting", "running", "ready"
M_FAILED, M_CANCELLED = "failed", "cancelled"

# -- commands a UI posts to the worker through the store ---------------------------------------
CMD_PENDING, CMD_DONE, CMD_ERROR = "pending", "done", "error"

# -- files ---------------------------------------------------------------------------------------
LISTED, FILE_DOWNLOADING, VERIFIED, DELETED = "listed", "downloading", "verified", "deleted"
IN_DRIVE = (LISTED, FILE_DOWNLOADING, VERIFIED)  # ours, still in Drive
LOCAL = "local"  # fetched directly from EE and verified on disk (the direct route)
ON_DISK = (VERIFIED, DELETED, LOCAL)  # verified on disk (and perhaps gone from, or never in, Drive)
