"""Every failure is classified by one table of what Google is known to answer.

A failure is transient (retry with backoff), an outage (the service is down: wait without
counting a try), a split (the tile is too big: cut it in four), Drive full (wait for space),
a download quota (the file's download quota for the day is used: try again in hours, the file
stays in Drive) or fatal (the unit fails with its message, for a manual retry).

The clients do not keep the same things: pydrive2 and googleapiclient keep the HTTP status and
Google's `reason`; earthengine-api retries 5xx and 429 about five times itself and then raises
EEException with the message alone. So each row matches by status, by reason, or by text, and
the text of Google's own message is in every row that the message alone must be enough for.
"""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass
from enum import Enum, auto


class Kind(Enum):
    TRANSIENT = auto()
    OUTAGE = auto()
    SPLIT = auto()
    DRIVE_FULL = auto()
    DOWNLOAD_QUOTA = auto()
    FATAL = auto()


# What waits and retries rather than failing the unit.
RETRYABLE = frozenset({Kind.TRANSIENT, Kind.OUTAGE, Kind.DRIVE_FULL, Kind.DOWNLOAD_QUOTA})


@dataclass(frozen=True)
class Known:
    """One answer Google is known to give. It matches when the HTTP status is one of
    `statuses`, or the reason one of `reasons`, or the message contains one of `texts`."""

    kind: Kind
    means: str
    texts: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    statuses: tuple[int, ...] = ()


# First match wins: the specific rows (Drive full, download quota) come before the 403/5xx
# ones. Texts are Google's own (field.md §8, Drive v2 and EE REST references).
KNOWN: tuple[Known, ...] = (
    Known(Kind.SPLIT, "the tile needs more memory than EE gives one task: split it",
          texts=("User memory limit exceeded",)),
    Known(Kind.SPLIT, "the tile took longer than EE allows: split it",
          texts=("Computation timed out",)),
    Known(Kind.DRIVE_FULL, "Drive is full: wait until the job's downloads free space",
          texts=("The user's Drive storage quota has been exceeded", "storage quota",
                 "Drive is full", "out of space"),
          reasons=("storageQuotaExceeded", "quotaExceeded")),
    Known(Kind.DOWNLOAD_QUOTA, "the file's download quota for the day is used: try again "
                               "in hours; the file stays in Drive",
          texts=("The download quota for this file has been exceeded",),
          reasons=("downloadQuotaExceeded",)),
    Known(Kind.OUTAGE, "the service is down: wait, without counting a try",
          texts=("The service is currently unavailable", "Service Unavailable",
                 "Service unavailable"),
          statuses=(502, 503)),
    Known(Kind.TRANSIENT, "a server error: retry",
          texts=("Internal error", "Backend Error", "backendError"),
          reasons=("backendError", "internalError"), statuses=(500,)),
    Known(Kind.TRANSIENT, "too many requests: slow down and retry",
          texts=("Too Many Requests", "Rate Limit Exceeded", "rate limit", "Rate limit",
                 "Too many concurrent", "Quota exceeded for quota metric"),
          reasons=("rateLimitExceeded", "userRateLimitExceeded", "RESOURCE_EXHAUSTED"),
          statuses=(429,)),
    Known(Kind.TRANSIENT, "EE's queue is full (3,000 pending tasks): retry when it drains",
          texts=("Too many tasks",)),
    Known(Kind.TRANSIENT, "the request took too long: retry",
          texts=("Deadline exceeded", "deadline exceeded", "DEADLINE_EXCEEDED"),
          statuses=(504,)),
    Known(Kind.TRANSIENT, "try again later", texts=("try again", "temporarily")),
)


@dataclass(frozen=True)
class Failure:
    kind: Kind
    message: str  # what to show: the status (when known) and Google's text
    known: Known | None = None


def match(message: str, status: int | None = None, reason: str | None = None) -> Known | None:
    """The row of KNOWN an answer matches, if any."""
    for row in KNOWN:
        if (status is not None and status in row.statuses) or (
                reason is not None and reason in row.reasons) or any(
                t in message for t in row.texts):
            return row
    return None


def classify_message(message: str) -> Kind:
    """The kind of a failure known by its text alone (an EE task's error, an EEException)."""
    row = match(message)
    return row.kind if row is not None else Kind.FATAL


def drive_full(message: str) -> bool:
    return classify_message(message) is Kind.DRIVE_FULL


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind a client exception, if any (pydrive2 ApiRequestError,
    googleapiclient HttpError)."""
    error = getattr(exc, "error", None)
    if isinstance(error, dict) and isinstance(error.get("code"), int):
        return int(error["code"])
    resp = getattr(exc, "resp", None)
    status = getattr(resp, "status", None)
    if status is not None:
        return int(status)
    inner = _inner(exc)
    return http_status(inner) if inner is not None else None


def http_reason(exc: BaseException) -> str | None:
    """Google's `reason` (storageQuotaExceeded, rateLimitExceeded, ...) where the client kept
    the error body: pydrive2's ApiRequestError.error, googleapiclient's HttpError."""
    error = getattr(exc, "error", None)
    if isinstance(error, dict):
        if isinstance(error.get("reason"), str):
            return str(error["reason"])
        for item in error.get("errors") or ():
            if isinstance(item, dict) and isinstance(item.get("reason"), str):
                return str(item["reason"])
    details = getattr(exc, "error_details", None)
    if isinstance(details, list):
        for item in details:
            if isinstance(item, dict) and isinstance(item.get("reason"), str):
                return str(item["reason"])
    inner = _inner(exc)
    return http_reason(inner) if inner is not None else None


def _inner(exc: BaseException) -> BaseException | None:
    if exc.args and isinstance(exc.args[0], BaseException) and exc.args[0] is not exc:
        return exc.args[0]
    return None


def _text(exc: BaseException) -> str:
    """Google's message, without the client's wrapping (HttpError's repr names the URL)."""
    error = getattr(exc, "error", None)
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    reason = getattr(exc, "reason", None)
    if type(exc).__name__ == "HttpError" and isinstance(reason, str) and reason:
        return reason
    return str(exc).strip() or type(exc).__name__


def classify(exc: BaseException) -> Failure:
    """The failure behind anything a client call raised."""
    message = _text(exc)
    if isinstance(exc, ConnectionRefusedError | socket.gaierror) or type(exc).__name__ == \
            "ServerNotFoundError":
        # Nobody answers at that address, or the name does not resolve: the service (or the
        # network) is down, not this request.
        return Failure(Kind.OUTAGE, f"{type(exc).__name__}: {message}")
    if isinstance(exc, ConnectionError | socket.timeout | TimeoutError |
                  http.client.HTTPException) or type(exc).__module__.startswith("httplib2"):
        # A reset or a timeout of one request: retried, and counted as a try.
        return Failure(Kind.TRANSIENT, f"{type(exc).__name__}: {message}")
    status = http_status(exc)
    reason = http_reason(exc)
    row = match(message, status, reason)
    if status is not None:
        message = f"HTTP {status}: {message}"
    if row is not None:
        return Failure(row.kind, message, row)
    if status is not None:
        return Failure(Kind.TRANSIENT if status >= 500 else Kind.FATAL, message)
    if isinstance(exc, OSError):  # socket errors below the HTTP layer
        return Failure(Kind.TRANSIENT, f"{type(exc).__name__}: {message}")
    return Failure(Kind.FATAL, message)


def classify_exception(exc: BaseException) -> tuple[Kind, str]:
    """(kind, message) for anything a client call raised."""
    failure = classify(exc)
    return failure.kind, failure.message
