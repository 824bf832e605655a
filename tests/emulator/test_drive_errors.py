"""The Drive handlers' answer to each refusal of the model: Google's exact error body and
status code (the texts real clients and the engine act on), without a server."""

from __future__ import annotations

import json

import pytest

from core.emulator.drive import drive_error_response
from core.emulator.drive_types import (
    QUOTA_EXCEEDED,
    DriveError,
    Forbidden,
    InsufficientFilePermissions,
    InvalidValue,
    NotDownloadable,
    StorageQuotaExceeded,
    file_not_found,
)


def test_not_found_is_404_with_the_file_id_as_location():
    resp = drive_error_response(file_not_found("abc"))
    assert resp.status == 404
    assert json.loads(resp.body) == {
        "error": {
            "code": 404,
            "message": "File not found: abc.",
            "status": "NOT_FOUND",
            "errors": [
                {
                    "domain": "global",
                    "reason": "notFound",
                    "message": "File not found: abc.",
                    "locationType": "parameter",
                    "location": "fileId",
                }
            ],
        }
    }


def test_a_full_drive_is_403_storage_quota_exceeded():
    resp = drive_error_response(StorageQuotaExceeded(QUOTA_EXCEEDED))
    assert resp.status == 403
    assert json.loads(resp.body) == {
        "error": {
            "code": 403,
            "message": "The user's Drive storage quota has been exceeded.",
            "status": "PERMISSION_DENIED",
            "errors": [
                {
                    "domain": "global",
                    "reason": "storageQuotaExceeded",
                    "message": "The user's Drive storage quota has been exceeded.",
                }
            ],
        }
    }


@pytest.mark.parametrize(
    ("err", "status", "reason"),
    [
        (InvalidValue("Invalid Value", location="parents.id"), 400, "invalid"),
        (InvalidValue("A folder cannot contain itself."), 400, "invalid"),
        (Forbidden("The root folder cannot be modified."), 403, "forbidden"),
        (InsufficientFilePermissions("x"), 403, "insufficientFilePermissions"),
        (NotDownloadable("x", location="alt"), 403, "fileNotDownloadable"),
        (DriveError("x"), 400, "error"),
    ],
)
def test_each_refusal_has_its_status_and_reason(err, status, reason):
    resp = drive_error_response(err)
    body = json.loads(resp.body)["error"]
    assert (resp.status, body["code"], body["errors"][0]["reason"]) == (status, status, reason)
    assert body["message"] == err.message
    assert body["errors"][0].get("location") == err.location
