"""Every failure is classified: transient (retry with backoff), split (the tile is too big:
cut it in four) or fatal (the unit fails with its message, for a manual retry)."""

from __future__ import annotations

import http.client
import socket
from enum import Enum, auto


class Kind(Enum):
    TRANSIENT = auto()
    SPLIT = auto()
    FATAL = auto()


SPLIT_MESSAGES = ("User memory limit exceeded", "Computation timed out")
# Drive (or storage) full: transient, since the job's own deletes free space.
DRIVE_FULL_MESSAGES = ("quota exceeded", "Quota exceeded", "out of space", "storage quota")
TRANSIENT_MESSAGES = (
    "Internal error", "Service unavailable", "Too many", "rate limit", "Rate Limit",
    "deadline", "Deadline", "try again", "temporarily", *DRIVE_FULL_MESSAGES,
)


def drive_full(message: str) -> bool:
    return any(m in message for m in DRIVE_FULL_MESSAGES)


def classify_message(message: str) -> Kind:
    if any(m in message for m in SPLIT_MESSAGES):
        return Kind.SPLIT
    if any(m in message for m in TRANSIENT_MESSAGES):
        return Kind.TRANSIENT
    return Kind.FATAL


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
    if exc.args and exc.args[0] is not exc:
        inner = exc.args[0]
        if isinstance(inner, BaseException) and inner is not exc:
            return http_status(inner)
    return None


def classify_exception(exc: BaseException) -> tuple[Kind, str]:
    """(kind, message) for anything a client call raised."""
    message = str(exc).strip() or type(exc).__name__
    if isinstance(exc, ConnectionError | socket.timeout | TimeoutError |
                  http.client.HTTPException):
        return Kind.TRANSIENT, f"{type(exc).__name__}: {message}"
    status = http_status(exc)
    if status is not None:
        if status == 429 or status >= 500:
            return Kind.TRANSIENT, f"HTTP {status}: {message}"
        if status == 403 and any(r in message for r in ("rateLimit", "RateLimit", "rate limit")):
            return Kind.TRANSIENT, f"HTTP {status}: {message}"
        return Kind.FATAL, f"HTTP {status}: {message}"
    if isinstance(exc, OSError):  # resets, refused connections, httplib2 socket errors
        return Kind.TRANSIENT, f"{type(exc).__name__}: {message}"
    if type(exc).__module__.startswith("httplib2"):
        return Kind.TRANSIENT, f"{type(exc).__name__}: {message}"
    return classify_message(message), message
