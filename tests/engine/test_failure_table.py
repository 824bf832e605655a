"""core/backends/failures.py: every row of the table of Google's answers, each reaching
eebatch the way the real clients deliver it (pydrive2 keeps the status and reason; EE task
errors and earthengine-api's exceptions keep the text alone), with the kind it must get."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.backends.failures import KNOWN, Kind, classify, classify_message, match
from core.connect import make_drive
from core.emulator.app import Emulator
from tests.engine.conftest import emulator_with, inject

# (status, reason, Google's message, the kind eebatch must give it), each answered by the
# emulator's Drive about.get and read through the real pydrive2.
HTTP_ANSWERS = [
    (503, "backendError", "The service is currently unavailable.", Kind.OUTAGE),
    (502, "badGateway", "Bad Gateway", Kind.OUTAGE),
    (500, "backendError", "Internal error encountered.", Kind.TRANSIENT),
    (500, "backendError", "Backend Error", Kind.TRANSIENT),
    (429, "rateLimitExceeded", "Too Many Requests", Kind.TRANSIENT),
    (403, "userRateLimitExceeded", "User Rate Limit Exceeded.", Kind.TRANSIENT),
    (403, "rateLimitExceeded", "Rate Limit Exceeded", Kind.TRANSIENT),
    (504, "deadlineExceeded", "Deadline exceeded", Kind.TRANSIENT),
    (403, "storageQuotaExceeded", "The user's Drive storage quota has been exceeded.",
     Kind.DRIVE_FULL),
    (403, "downloadQuotaExceeded", "The download quota for this file has been exceeded.",
     Kind.DOWNLOAD_QUOTA),
    (403, "insufficientFilePermissions", "The user does not have sufficient permissions "
     "for this file.", Kind.FATAL),
    (404, "notFound", "File not found: x.", Kind.FATAL),
]

# Texts that reach eebatch alone: EE task errors and earthengine-api's EEException (it
# retries 5xx and 429 itself, then raises the message without the status).
TEXT_ANSWERS = [
    ("User memory limit exceeded.", Kind.SPLIT),
    ("Computation timed out.", Kind.SPLIT),
    ("The user's Drive storage quota has been exceeded.", Kind.DRIVE_FULL),
    ("The download quota for this file has been exceeded.", Kind.DOWNLOAD_QUOTA),
    ("The service is currently unavailable.", Kind.OUTAGE),
    ("Internal error encountered.", Kind.TRANSIENT),
    ("Internal error.", Kind.TRANSIENT),
    ("Backend Error", Kind.TRANSIENT),
    ("Too Many Requests", Kind.TRANSIENT),
    ("Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute'",
     Kind.TRANSIENT),
    ("Too many tasks already in the queue (3000). Please wait for some of them to complete.",
     Kind.TRANSIENT),
    ("Deadline exceeded", Kind.TRANSIENT),
    ("Please try again later.", Kind.TRANSIENT),
    ("Image.load: Image asset 'users/x/y' not found (does not exist or caller does not have "
     "access).", Kind.FATAL),
    ("Export too large: specified 9 pixels (max: 1).", Kind.FATAL),
]


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = emulator_with()
    yield emu
    emu.stop()


@pytest.mark.parametrize("status, reason, message, kind", HTTP_ANSWERS)
def test_an_http_answer_through_pydrive2_gets_its_kind(emulator: Emulator, status: int,
                                                       reason: str, message: str,
                                                       kind: Kind) -> None:
    inject(emulator.url, route="drive about.get", kind="status", status=status, reason=reason,
           message=message)
    with pytest.raises(Exception) as caught:
        make_drive(emulator.url).GetAbout()
    failure = classify(caught.value)
    assert failure.kind is kind
    assert failure.message == f"HTTP {status}: {message}"  # Google's text, not a repr


@pytest.mark.parametrize("message, kind", TEXT_ANSWERS)
def test_a_text_alone_gets_its_kind(message: str, kind: Kind) -> None:
    assert classify_message(message) is kind


def test_every_row_of_the_table_is_tested() -> None:
    rows = {id(match(m, s, r)) for s, r, m, _ in HTTP_ANSWERS}
    rows |= {id(match(m)) for m, _ in TEXT_ANSWERS}
    untested = [row.means for row in KNOWN if id(row) not in rows]
    assert untested == []


def test_a_refused_connection_is_an_outage_and_a_reset_a_counted_try() -> None:
    assert classify(ConnectionRefusedError(111, "Connection refused")).kind is Kind.OUTAGE
    assert classify(ConnectionResetError(104, "reset by peer")).kind is Kind.TRANSIENT
