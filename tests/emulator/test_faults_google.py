"""Injected faults and outages with Google's own texts and reasons, as the real, unmodified
pydrive2 and earthengine-api raise them (eebatch classifies failures by these texts:
earthengine-api keeps only the message, not the status)."""

from __future__ import annotations

import json
import time
from typing import Any

import httplib2
import pytest
from googleapiclient.errors import HttpError
from pydrive2.files import ApiRequestError

from core.connect import make_drive
from core.emulator import faults
from tests.emulator.drive_fixtures import (
    add_fault,
    admin,
    count,
    listed,
    upload_bytes,
    wait_until,
)

ee = pytest.importorskip("ee")

UNAVAILABLE = "The service is currently unavailable."
INTERNAL = "Internal error encountered."
DOWNLOAD_QUOTA = "The download quota for this file has been exceeded."
STORAGE_QUOTA = "The user's Drive storage quota has been exceeded."

# (status, what the fault spec adds, the text and the reason a client must see)
GOOGLE = [
    (503, {}, UNAVAILABLE, "backendError"),
    (500, {}, INTERNAL, "backendError"),
    (500, {"message": "Backend Error"}, "Backend Error", "backendError"),
    (429, {}, "Too Many Requests", "rateLimitExceeded"),
    (429, {"reason": "userRateLimitExceeded"}, "Too Many Requests", "userRateLimitExceeded"),
    (403, {"reason": "downloadQuotaExceeded"}, DOWNLOAD_QUOTA, "downloadQuotaExceeded"),
    (403, {"reason": "storageQuotaExceeded"}, STORAGE_QUOTA, "storageQuotaExceeded"),
]
IDS = [f"{s}-{extra.get('reason') or extra.get('message') or 'default'}" for s, extra, *_ in GOOGLE]
EE_OPERATIONS = r"^/v1/projects/[^/]+/operations$"


@pytest.fixture
def emu(ee_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The FAST emulator with earthengine-api on it, retrying nothing: earthengine-api retries
    5xx and 429 itself (five times, with backoff), which would only slow these tests down."""
    monkeypatch.setattr(ee._state.get_state(), "max_retries", 0)
    return ee_emulator


@pytest.fixture
def drive(emu: Any) -> Any:
    return make_drive(emu.url, http_timeout=10)


def outage(emu: Any, **spec: Any) -> list[dict[str, Any]]:
    status, body = admin(emu, "POST", "/_emulator/outage", spec)
    assert status == 200, body
    return body["outages"]


def outages(emu: Any) -> list[dict[str, Any]]:
    status, body = admin(emu, "GET", "/_emulator/outage")
    assert status == 200, body
    return body["outages"]


def ee_error(call: Any) -> tuple[str, dict[str, Any]]:
    """Run an earthengine-api call that must fail: (the EEException's text, the JSON error of
    the HTTP answer behind it, which earthengine-api keeps only as the exception's context)."""
    with pytest.raises(ee.EEException) as exc:
        call()
    http_error = exc.value.__context__
    assert isinstance(http_error, HttpError), repr(http_error)
    return str(exc.value), json.loads(http_error.content)["error"]


def assert_pydrive2_saw(exc: ApiRequestError, status: int, text: str, reason: str) -> None:
    assert exc.error["code"] == status
    assert exc.error["message"] == text
    assert exc.GetField("reason") == reason
    assert exc.GetField("message") == text
    assert text in str(exc)


# -- status faults with Google's texts ---------------------------------------------------------


@pytest.mark.parametrize(("status", "extra", "text", "reason"), GOOGLE, ids=IDS)
def test_a_status_fault_reaches_pydrive2_with_googles_text(emu, drive, status, extra, text, reason):
    add_fault(emu, kind="status", status=status, route="drive files.list", **extra)
    with pytest.raises(ApiRequestError) as exc:
        drive.ListFile({"q": "trashed=false"}).GetList()
    assert_pydrive2_saw(exc.value, status, text, reason)
    assert listed(drive, "trashed=false") == []  # spent


@pytest.mark.parametrize(("status", "extra", "text", "reason"), GOOGLE, ids=IDS)
def test_a_status_fault_reaches_earthengine_api_with_googles_text(emu, status, extra, text, reason):
    add_fault(emu, kind="status", status=status, path_regex=EE_OPERATIONS, **extra)
    message, error = ee_error(ee.data.listOperations)
    assert message == text
    assert (error["code"], error["message"], error["errors"][0]["reason"]) == (
        status,
        text,
        reason,
    )
    assert count(emu, "GET ee operations.list") == 1  # retries off (see the fixture)
    assert ee.data.listOperations() == []  # spent


def test_download_quota_on_a_download_and_storage_quota_on_an_upload(emu, drive, tmp_path):
    f = upload_bytes(drive, tmp_path, "popular.tif", b"p" * 1000)
    add_fault(
        emu, kind="status", status=403, reason="downloadQuotaExceeded", query_contains="alt=media"
    )
    out = tmp_path / "popular.out"
    with pytest.raises(ApiRequestError) as exc:
        drive.CreateFile({"id": f["id"]}).GetContentFile(str(out))
    assert_pydrive2_saw(exc.value, 403, DOWNLOAD_QUOTA, "downloadQuotaExceeded")
    add_fault(
        emu, kind="status", status=403, reason="storageQuotaExceeded", path_regex=r"^/upload/"
    )
    with pytest.raises(ApiRequestError) as exc:
        upload_bytes(drive, tmp_path, "more.tif", b"m" * 10)
    assert_pydrive2_saw(exc.value, 403, STORAGE_QUOTA, "storageQuotaExceeded")
    assert listed(drive) == ["popular.tif"]


def test_the_fault_list_shows_the_text_and_reason_each_fault_will_send(emu):
    added = add_fault(emu, kind="status", status=500)
    assert (added["reason"], added["message"]) == ("backendError", INTERNAL)
    add_fault(emu, kind="status", status=403, reason="downloadQuotaExceeded")
    add_fault(emu, kind="status", status=429, message="Quota exceeded for quota metric")
    listed_faults = admin(emu, "GET", "/_emulator/faults")[1]["faults"]
    assert [(f["status"], f["reason"], f["message"]) for f in listed_faults] == [
        (500, "backendError", INTERNAL),
        (403, "downloadQuotaExceeded", DOWNLOAD_QUOTA),
        (429, "rateLimitExceeded", "Quota exceeded for quota metric"),
    ]


# -- outages -----------------------------------------------------------------------------------


def test_a_drive_outage_fails_every_drive_request_and_leaves_ee_alone(emu, drive, tmp_path):
    f = upload_bytes(drive, tmp_path, "kept.tif", b"k" * 100)
    (on,) = outage(emu, route="drive", seconds=600)
    assert on["route"] == "drive" and on["status"] == 503 and 0 < on["seconds_left"] <= 600
    for call in (
        lambda: drive.ListFile({"q": "trashed=false"}).GetList(),
        lambda: drive.CreateFile({"id": f["id"]}).FetchMetadata(),
        lambda: drive.CreateFile({"id": f["id"]}).GetContentFile(str(tmp_path / "k.out")),
        lambda: drive.CreateFile({"id": f["id"]}).Delete(),
        lambda: upload_bytes(drive, tmp_path, "new.tif", b"n"),
    ):
        with pytest.raises(ApiRequestError) as exc:
            call()
        assert_pydrive2_saw(exc.value, 503, UNAVAILABLE, "backendError")
    with pytest.raises(HttpError) as raw:  # GetAbout does not wrap HttpError
        drive.GetAbout()
    assert raw.value.resp.status == 503 and UNAVAILABLE in str(raw.value)
    # A Drive path no route knows is out too (told by its prefix), not a 404.
    http = httplib2.Http(timeout=10)
    resp, body = http.request(emu.url + "/drive/v2/changes", "GET")
    assert resp.status == 503 and json.loads(body)["error"]["message"] == UNAVAILABLE
    # Earth Engine and the admin routes work; the state shows the outage.
    assert ee.data.listOperations() == []
    status, state = admin(emu, "GET", "/_emulator/state")
    assert status == 200 and [o["route"] for o in state["faults"]["outages"]] == ["drive"]
    assert admin(emu, "DELETE", "/_emulator/outage") == (200, {"outages": []})
    assert listed(drive) == ["kept.tif"]
    assert drive.GetAbout()["quotaBytesUsed"] == "100"


def ee_works() -> bool:
    try:
        return ee.data.listOperations() == []
    except ee.EEException:
        return False


def test_an_ee_outage_fails_ee_until_it_ends_by_itself(emu, drive):
    start = time.monotonic()
    outage(emu, route="ee", seconds=3)
    message, error = ee_error(ee.data.listOperations)
    assert message == UNAVAILABLE
    assert (error["code"], error["errors"][0]["reason"]) == (503, "backendError")
    message, _ = ee_error(ee.Number(1).getInfo)  # value:compute
    assert message == UNAVAILABLE
    # An EE path no route knows is out too (v1alpha: told by its prefix).
    resp, _ = httplib2.Http(timeout=10).request(emu.url + "/v1alpha/projects/p/x", "GET")
    assert resp.status == 503
    assert listed(drive) == []  # Drive is up
    wait_until(ee_works, timeout=30, what="the outage to end")
    assert time.monotonic() - start >= 3  # not before its time
    assert ee.Number(1).getInfo() == 1
    assert outages(emu) == []


def test_all_regex_and_status_of_an_outage(emu, drive):
    outage(emu, route="all", seconds=600, status=500)
    with pytest.raises(ApiRequestError) as exc:
        drive.ListFile({"q": "trashed=false"}).GetList()
    assert_pydrive2_saw(exc.value, 500, INTERNAL, "backendError")
    message, _ = ee_error(ee.data.listOperations)
    assert message == INTERNAL
    assert admin(emu, "GET", "/_emulator/faults")[0] == 200  # admin routes never fail
    admin(emu, "DELETE", "/_emulator/outage")
    # A path regex: only Drive's about is out.
    outage(emu, route=r"^/drive/v2/about$", seconds=600)
    with pytest.raises(HttpError) as raw:
        drive.GetAbout()
    assert raw.value.resp.status == 503
    assert listed(drive) == []
    assert ee.data.listOperations() == []
    # Two at once: both hold until they are ended.
    outage(emu, route="ee", seconds=600)
    assert [o["route"] for o in outages(emu)] == [r"^/drive/v2/about$", "ee"]
    ee_error(ee.data.listOperations)
    admin(emu, "DELETE", "/_emulator/outage")
    assert ee.data.listOperations() == [] and drive.GetAbout()["kind"] == "drive#about"


@pytest.mark.parametrize(
    "spec",
    [
        {"route": "drive"},  # no seconds
        {"route": "drive", "seconds": 0},
        {"route": "drive", "seconds": "soon"},
        {"route": "drive", "seconds": 5, "status": 200},
        {"route": "(", "seconds": 5},
        {"route": "", "seconds": 5},
        {"route": "drive", "seconds": 5, "when": "now"},
        ["drive"],
    ],
)
def test_a_bad_outage_is_refused(emu, spec):
    status, body = admin(emu, "POST", "/_emulator/outage", spec)
    assert status == 400 and body["error"]["message"].startswith("Bad outage")
    assert outages(emu) == []


def test_route_families_by_name_and_by_path():
    assert faults.family("/drive/v2/files", "drive files.list") == "drive"
    assert faults.family("/upload/drive/v2/files", "unmatched") == "drive"
    assert faults.family("/v1/projects/p/operations", "ee operations.list") == "ee"
    assert faults.family("/$discovery/rest", "ee discovery") == "ee"
    assert faults.family("/v1beta/projects/p", "unmatched") == "ee"
    assert faults.family("/token", "ee token") == "ee"
    assert faults.family("/favicon.ico", "unmatched") is None
    assert faults.family("/_emulator/state", "admin state") is None


def test_default_texts_without_a_server():
    def answer(status: int, reason: str | None = None) -> tuple[str, str]:
        body = json.loads(faults._status_response(status, reason, None).body)["error"]
        return body["message"], body["errors"][0]["reason"]

    assert answer(503) == (UNAVAILABLE, "backendError")
    assert answer(500) == (INTERNAL, "backendError")
    assert answer(429) == ("Too Many Requests", "rateLimitExceeded")
    assert answer(403, "storageQuotaExceeded") == (STORAGE_QUOTA, "storageQuotaExceeded")
    assert answer(403, "downloadQuotaExceeded") == (DOWNLOAD_QUOTA, "downloadQuotaExceeded")
