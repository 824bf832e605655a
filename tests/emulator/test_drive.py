"""The Drive v2 emulator through the real, unmodified pydrive2 (and raw googleapiclient where
pydrive2 cannot send a request), over real loopback HTTP. Nothing here mocks a client."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httplib2
import pytest
from googleapiclient.errors import HttpError
from googleapiclient.http import MediaFileUpload, MediaInMemoryUpload
from pydrive2.files import ApiRequestError

from core.connect import EMULATOR_TOKEN, make_drive
from core.emulator import faults
from tests.emulator.drive_fixtures import (
    FOLDER,
    add_fault,
    admin,
    count,
    make_folder,
    start_emulator,
    upload_bytes,
)

MiB = 1 << 20


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def md5_path(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def titles(files: list[Any]) -> list[str]:
    return sorted(f["title"] for f in files)


def raw_get(emu: Any, path: str, headers: dict[str, str] | None = None) -> Any:
    """One plain http.client request; returns (response, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", emu.server.port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp, body


AUTH = {"Authorization": f"Bearer {EMULATOR_TOKEN}"}


@pytest.fixture
def make_emulator(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """make_emulator(**EmulatorConfig fields) → a started emulator, stopped after the test."""
    started: list[Any] = []

    def make(**fields: Any) -> Any:
        emu = start_emulator(tmp_path, len(started), **fields)
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()


@pytest.fixture
def emu(make_emulator: Callable[..., Any]) -> Any:
    return make_emulator()


@pytest.fixture
def drive(emu: Any) -> Any:
    return make_drive(emu.url, http_timeout=10)


# -- about and quota -------------------------------------------------------------------------


def test_about_reports_quota_before_and_after_an_upload(make_emulator, tmp_path):
    emu = make_emulator(drive_quota=10 * MiB)
    drive = make_drive(emu.url, http_timeout=10)
    about = drive.GetAbout()
    assert about["kind"] == "drive#about"
    assert about["quotaType"] == "LIMITED"
    assert about["quotaBytesTotal"] == str(10 * MiB)
    assert about["quotaBytesUsed"] == "0"
    assert about["rootFolderId"]
    upload_bytes(drive, tmp_path, "a.bin", b"x" * 12345)
    about = drive.GetAbout()
    assert about["quotaBytesUsed"] == "12345"  # int64 as a JSON string
    assert about["quotaBytesUsedInTrash"] == "0"
    assert emu.drive.quota_used() == 12345
    assert emu.drive.free_bytes() == 10 * MiB - 12345


def test_unlimited_drive_says_so(make_emulator):
    emu = make_emulator(drive_quota=None)
    about = make_drive(emu.url, http_timeout=10).GetAbout()
    assert about["quotaType"] == "UNLIMITED"
    assert "quotaBytesTotal" not in about
    assert emu.drive.free_bytes() is None


def test_upload_beyond_quota_is_storage_quota_exceeded(make_emulator, tmp_path):
    emu = make_emulator(drive_quota=1000)
    drive = make_drive(emu.url, http_timeout=10)
    upload_bytes(drive, tmp_path, "fits.bin", b"a" * 600)
    with pytest.raises(ApiRequestError) as exc:
        upload_bytes(drive, tmp_path, "too-big.bin", b"b" * 600)
    assert exc.value.error["code"] == 403
    assert exc.value.GetField("reason") == "storageQuotaExceeded"
    assert titles(drive.ListFile({"q": "trashed=false"}).GetList()) == ["fits.bin"]


# -- folders and the EE folder rule ------------------------------------------------------------


def test_folder_is_found_by_title_at_any_depth(drive):
    top = make_folder(drive, "exports")
    outer = make_folder(drive, "outer")
    nested = make_folder(drive, "exports", parent=outer["id"])
    q = f"title = 'exports' and mimeType = '{FOLDER}' and trashed=false"
    found = drive.ListFile({"q": q}).GetList()
    assert sorted(f["id"] for f in found) == sorted([top["id"], nested["id"]])
    by_id = {f["id"]: f for f in found}
    assert by_id[top["id"]]["parents"][0]["isRoot"] is True
    assert by_id[nested["id"]]["parents"] == [
        {**by_id[nested["id"]]["parents"][0], "id": outer["id"], "isRoot": False}
    ]
    assert all("md5Checksum" not in f and "downloadUrl" not in f for f in found)
    root_children = drive.ListFile({"q": "'root' in parents and trashed=false"}).GetList()
    assert titles(root_children) == ["exports", "outer"]


def test_ensure_export_folder_follows_the_ee_rule(emu, drive, tmp_path):
    # (c) none yet: a new folder at the root
    created = emu.drive.ensure_export_folder("exports")
    meta = drive.CreateFile({"id": created})
    meta.FetchMetadata()
    assert meta["title"] == "exports" and meta["mimeType"] == FOLDER
    assert meta["parents"][0]["isRoot"] is True
    assert emu.drive.ensure_export_folder("exports") == created
    # (b) duplicates: the most recently modified wins; adding a file modifies a folder
    nested = make_folder(drive, "exports", parent=make_folder(drive, "deep")["id"])
    assert emu.drive.ensure_export_folder("exports") == nested["id"]
    upload_bytes(drive, tmp_path, "t.tif", b"tile", parent=created)
    assert emu.drive.ensure_export_folder("exports") == created
    # trashed folders do not count
    drive.CreateFile({"id": created}).Trash()
    assert emu.drive.ensure_export_folder("exports") == nested["id"]
    assert emu.drive.ensure_export_folder("") == drive.GetAbout()["rootFolderId"]
    # (d) a separator is part of the title, not a path
    ab = emu.drive.ensure_export_folder("a/b")
    found = drive.ListFile({"q": "title = 'a/b'"}).GetList()
    assert [f["id"] for f in found] == [ab]
    assert found[0]["parents"][0]["isRoot"] is True


def test_add_file_moves_bytes_in_and_returns_the_file(emu, drive, tmp_path):
    folder = emu.drive.ensure_export_folder("exports")
    src = tmp_path / "out.tif"
    data = os.urandom(70_000)
    src.write_bytes(data)
    res = emu.drive.add_file(folder, "tile-0000000000-0000000000.tif", src, "image/tiff")
    assert not src.exists()  # moved, not copied
    assert res["md5Checksum"] == md5(data) and res["fileSize"] == "70000"
    assert res["parents"][0]["id"] == folder and res["fileExtension"] == "tif"
    listed = drive.ListFile({"q": f"'{folder}' in parents and trashed=false"}).GetList()
    assert [f["id"] for f in listed] == [res["id"]]
    assert emu.drive.quota_used() == 70_000
    status, state = admin(emu, "GET", "/_emulator/state")
    assert status == 200 and state["drive"]["quota"]["used"] == 70_000
    assert [f["md5Checksum"] for f in state["drive"]["files"] if f["id"] == res["id"]] == [
        md5(data)
    ]
    with pytest.raises(KeyError):
        emu.drive.add_file("no-such-folder", "x", tmp_path / "missing", "image/tiff")


def test_seed_fixture_files(emu, drive, tmp_path):
    assert drive.ListFile().GetList() == []  # product data starts empty
    ids = emu.drive.seed_fixture_files("exports")
    q = f"title = 'exports' and mimeType = '{FOLDER}' and trashed=false"
    found = {f["id"] for f in drive.ListFile({"q": q}).GetList()}
    assert found == {ids["export_folder"], ids["nested_duplicate"]}
    quoted = drive.ListFile({"q": "title = 'Valentine\\'s Day \\\\ x.tif'"}).GetList()
    assert [f["id"] for f in quoted] == [ids["quoted_file"]]
    out = tmp_path / "empty"
    drive.CreateFile({"id": ids["empty_file"]}).GetContentFile(str(out))
    assert out.read_bytes() == b""


# -- listing -----------------------------------------------------------------------------------


def test_list_pages_with_a_small_page_cap(make_emulator):
    emu = make_emulator(max_page_size=2)
    drive = make_drive(emu.url, http_timeout=10)
    folder = make_folder(drive, "pages")
    for i in range(5):
        make_folder(drive, f"f{i}", parent=folder["id"])
    q = f"'{folder['id']}' in parents and trashed=false"
    before = count(emu, "GET drive files.list")
    assert titles(drive.ListFile({"q": q}).GetList()) == [f"f{i}" for i in range(5)]
    assert count(emu, "GET drive files.list") - before == 3  # 2 + 2 + 1, then no token
    pages = [len(page) for page in drive.ListFile({"q": q, "maxResults": 1000})]
    assert pages == [2, 2, 1]
    newest_first = drive.ListFile({"q": q, "orderBy": "title desc"}).GetList()
    assert [f["title"] for f in newest_first] == [f"f{i}" for i in reversed(range(5))]
    slim = drive.auth.service.files().list(q=q, fields="items(title),nextPageToken").execute()
    assert set(slim) == {"items", "nextPageToken"} and slim["items"] == [
        {"title": "f0"},
        {"title": "f1"},
    ]
    # a deleted item does not shift the next page (the token is a position, not an offset)
    listing = drive.ListFile({"q": q, "maxResults": 2})
    first = listing.GetList()
    first[0].Delete()
    rest = listing.GetList() + listing.GetList()
    assert titles(first) + titles(rest) == [f"f{i}" for i in range(5)]


def test_list_without_q_includes_trashed_and_items_is_always_present(drive, emu, tmp_path):
    f = upload_bytes(drive, tmp_path, "gone.txt", b"bye")
    f.Trash()
    assert titles(drive.ListFile().GetList()) == ["gone.txt"]
    assert drive.ListFile({"q": "trashed = false"}).GetList() == []
    status, _ = admin(emu, "GET", "/drive/v2/files?q=title+%3D+%27none%27&alt=json")
    assert status == 401  # urllib sent no token
    resp, raw = raw_get(emu, "/drive/v2/files?q=title+%3D+%27none%27", AUTH)
    page = json.loads(raw)
    assert resp.status == 200 and page["items"] == [] and "nextPageToken" not in page


def test_a_long_query_arrives_as_a_form_post_and_works(drive):
    folder = make_folder(drive, "many")
    for i in range(3):
        make_folder(drive, f"wanted-{i}", parent=folder["id"])
    make_folder(drive, "unwanted", parent=folder["id"])
    names = [f"wanted-{i}" for i in range(3)] + [f"absent-{i:03d}-padding" for i in range(80)]
    q = " or ".join(f"title = '{n}'" for n in names)
    q = f"({q}) and '{folder['id']}' in parents and trashed = false"
    assert len(q) > 2048  # googleapiclient switches to POST + X-HTTP-Method-Override
    assert titles(drive.ListFile({"q": q}).GetList()) == ["wanted-0", "wanted-1", "wanted-2"]


def test_quote_and_backslash_in_a_title(drive, tmp_path):
    title = "Valentine's Day \\ x.tif"
    upload_bytes(drive, tmp_path, title, b"love")
    escaped = title.replace("\\", "\\\\").replace("'", "\\'")
    found = drive.ListFile({"q": f"title = '{escaped}' and trashed=false"}).GetList()
    assert [f["title"] for f in found] == [title]
    assert found[0]["fileExtension"] == "tif"


def test_invalid_q_is_a_400(drive):
    for q in ["title = 'unterminated", "name = 'v3-field'", "title = 'a' and", "'x' in nowhere"]:
        with pytest.raises(ApiRequestError) as exc:
            drive.ListFile({"q": q}).GetList()
        assert exc.value.error["code"] == 400
        assert exc.value.GetField("reason") == "invalid"
        assert exc.value.GetField("location") == "q"
        assert exc.value.error["message"] == "Invalid Value"


# -- metadata ----------------------------------------------------------------------------------


def test_fields_selects_a_partial_response(drive, tmp_path):
    folder = make_folder(drive, "fields")
    f = upload_bytes(drive, tmp_path, "x.txt", b"hi", parent=folder["id"])
    got = (
        drive.auth.service.files()
        .get(fileId=f["id"], fields="title,parents(id,isRoot),labels/trashed,fileSize")
        .execute()
    )
    assert got == {
        "title": "x.txt",
        "parents": [{"id": folder["id"], "isRoot": False}],
        "labels": {"trashed": False},
        "fileSize": "2",
    }
    g = drive.CreateFile({"id": f["id"]})
    g.FetchMetadata(fields="md5Checksum,fileSize,title,mimeType,parents,createdDate")
    assert g["md5Checksum"] == md5(b"hi") and g["mimeType"] == "text/plain"
    assert g["createdDate"].endswith("Z") and len(g["createdDate"]) == 24
    everything = drive.auth.service.files().get(fileId=f["id"], fields="*").execute()
    assert everything["downloadUrl"] and everything["id"] == f["id"]
    page = drive.auth.service.files().list(q="title = 'x.txt'", fields="items(id)").execute()
    assert page == {"items": [{"id": f["id"]}]}
    with pytest.raises(HttpError) as exc:
        drive.auth.service.files().get(fileId=f["id"], fields="title(").execute()
    assert exc.value.resp.status == 400


def test_file_resource_shape(drive, tmp_path):
    f = upload_bytes(drive, tmp_path, "scene.tar.gz", b"\x00" * 10)
    g = drive.CreateFile({"id": f["id"]})
    g.FetchMetadata()
    assert g["kind"] == "drive#file" and g["title"] == "scene.tar.gz"
    assert g["fileExtension"] == "gz" and g["fullFileExtension"] == "tar.gz"
    assert g["fileSize"] == "10" and g["quotaBytesUsed"] == "10"
    assert g["md5Checksum"] == md5(b"\x00" * 10)
    assert g["labels"]["trashed"] is False and g["explicitlyTrashed"] is False
    assert g["downloadUrl"].startswith(drive.auth.service._rootDesc["rootUrl"])
    assert g["owners"][0]["emailAddress"] and g["version"].isdigit()
    root = drive.CreateFile({"id": "root"})
    root.FetchMetadata()
    assert root["mimeType"] == FOLDER and root["id"] == drive.GetAbout()["rootFolderId"]
    with pytest.raises(ApiRequestError) as exc:
        drive.CreateFile({"id": "nope"}).FetchMetadata()
    assert exc.value.error["code"] == 404 and exc.value.GetField("reason") == "notFound"


def test_patch_renames_and_moves(drive, tmp_path):
    a = make_folder(drive, "a")
    f = upload_bytes(drive, tmp_path, "old.txt", b"1")
    f["title"] = "new.txt"
    f.Upload()  # metadata only: PATCH
    moved = (
        drive.auth.service.files()
        .patch(fileId=f["id"], body={}, addParents=a["id"], removeParents="root")
        .execute()
    )
    assert moved["title"] == "new.txt" and [p["id"] for p in moved["parents"]] == [a["id"]]


def test_request_without_a_token_is_a_401_json_error(emu):
    resp, raw = raw_get(emu, "/drive/v2/about?alt=json")
    assert resp.status == 401
    err = json.loads(raw)["error"]
    assert err["code"] == 401 and err["errors"][0]["reason"] == "required"
    resp, raw = raw_get(emu, "/drive/v2/about?alt=json", AUTH)
    assert resp.status == 200


# -- downloads ---------------------------------------------------------------------------------


def test_chunked_download_matches_md5(emu, drive, tmp_path):
    data = os.urandom(300_000)
    f = upload_bytes(drive, tmp_path, "big.bin", data)
    out = tmp_path / "out.bin"
    before = count(emu, "GET drive files.get")
    g = drive.CreateFile({"id": f["id"]})
    g.GetContentFile(str(out), chunksize=64 * 1024)
    assert md5_path(out) == f["md5Checksum"] == md5(data)
    assert count(emu, "GET drive files.get") - before == 5  # ceil(300000 / 65536) ranges


def test_range_requests_on_the_wire(emu, drive, tmp_path):
    data = bytes(range(256)) * 4
    f = upload_bytes(drive, tmp_path, "r.bin", data)
    path = f"/drive/v2/files/{f['id']}?alt=media"
    resp, body = raw_get(emu, path, {**AUTH, "Range": "bytes=1000-1999"})
    assert resp.status == 206 and body == data[1000:]  # clamped past EOF
    assert resp.getheader("Content-Range") == "bytes 1000-1023/1024"
    assert resp.getheader("Content-Length") == "24"
    resp, body = raw_get(emu, path, {**AUTH, "Range": "bytes=-4"})
    assert resp.status == 206 and body == data[-4:]
    resp, body = raw_get(emu, path, AUTH)
    assert resp.status == 200 and body == data
    assert (
        resp.getheader("X-Goog-Hash")
        == "md5=" + __import__("base64").b64encode(hashlib.md5(data).digest()).decode()
    )
    resp, body = raw_get(emu, path, {**AUTH, "Range": "bytes=5000-"})
    assert resp.status == 416 and resp.getheader("Content-Range") == "bytes */1024"
    assert json.loads(body)["error"]["code"] == 416


def test_zero_byte_file_downloads_empty(emu, drive, tmp_path):
    f = upload_bytes(drive, tmp_path, "empty.txt", b"")
    assert f["fileSize"] == "0" and f["md5Checksum"] == md5(b"")
    resp, _ = raw_get(emu, f"/drive/v2/files/{f['id']}?alt=media", {**AUTH, "Range": "bytes=0-9"})
    assert resp.status == 416 and resp.getheader("Content-Range") == "bytes */0"
    out = tmp_path / "empty.out"
    out.write_bytes(b"stale")
    drive.CreateFile({"id": f["id"]}).GetContentFile(str(out), chunksize=1024)
    assert out.read_bytes() == b""


def test_folder_download_is_not_downloadable(drive, tmp_path):
    folder = make_folder(drive, "f")
    with pytest.raises(ApiRequestError) as exc:  # after pydrive2's export fallback
        drive.CreateFile({"id": folder["id"]}).GetContentFile(str(tmp_path / "x"))
    assert exc.value.error["code"] == 403
    assert exc.value.GetField("reason") == "fileNotDownloadable"


def test_parallel_downloads_each_with_its_own_file_object(drive, tmp_path):
    blobs = {f"p{i}.bin": os.urandom(150_000 + i) for i in range(4)}
    ids = {upload_bytes(drive, tmp_path, t, d)["id"]: t for t, d in blobs.items()}
    results: dict[str, str] = {}

    def fetch(fid: str) -> None:
        out = tmp_path / f"dl-{fid}"
        drive.CreateFile({"id": fid}).GetContentFile(str(out), chunksize=32 * 1024)
        results[fid] = md5_path(out)

    threads = [threading.Thread(target=fetch, args=(fid,)) for fid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {fid: md5(blobs[t]) for fid, t in ids.items()}


# -- delete and trash --------------------------------------------------------------------------


def test_delete_frees_quota_at_once(drive, tmp_path):
    f = upload_bytes(drive, tmp_path, "d.bin", b"z" * 5000)
    assert drive.GetAbout()["quotaBytesUsed"] == "5000"
    f.Delete()
    assert drive.GetAbout()["quotaBytesUsed"] == "0"
    with pytest.raises(ApiRequestError) as exc:
        drive.CreateFile({"id": f["id"]}).FetchMetadata()
    assert exc.value.error["code"] == 404


def test_deleting_a_folder_removes_its_descendants(emu, drive, tmp_path):
    top = make_folder(drive, "top")
    sub = make_folder(drive, "sub", parent=top["id"])
    upload_bytes(drive, tmp_path, "1.bin", b"1" * 100, parent=top["id"])
    upload_bytes(drive, tmp_path, "2.bin", b"2" * 200, parent=sub["id"])
    keep = upload_bytes(drive, tmp_path, "keep.bin", b"k" * 7)
    assert emu.drive.quota_used() == 307
    drive.CreateFile({"id": top["id"]}).Delete()
    assert [f["id"] for f in drive.ListFile().GetList()] == [keep["id"]]
    assert drive.GetAbout()["quotaBytesUsed"] == "7"


def test_trash_keeps_quota_and_counts_as_trash(drive, tmp_path):
    folder = make_folder(drive, "t")
    f = upload_bytes(drive, tmp_path, "t.bin", b"t" * 3000, parent=folder["id"])
    f.Trash()
    assert f["labels"]["trashed"] is True
    about = drive.GetAbout()
    assert about["quotaBytesUsed"] == "3000" and about["quotaBytesUsedInTrash"] == "3000"
    f.UnTrash()
    assert drive.GetAbout()["quotaBytesUsedInTrash"] == "0"
    # a trashed folder trashes its children implicitly
    drive.CreateFile({"id": folder["id"]}).Trash()
    child = drive.CreateFile({"id": f["id"]})
    child.FetchMetadata()
    assert child["labels"]["trashed"] is True and child["explicitlyTrashed"] is False
    assert drive.GetAbout()["quotaBytesUsedInTrash"] == "3000"
    drive.auth.service.files().emptyTrash().execute()
    about = drive.GetAbout()
    assert about["quotaBytesUsed"] == "0" and about["quotaBytesUsedInTrash"] == "0"
    assert drive.ListFile().GetList() == []


# -- uploads -----------------------------------------------------------------------------------


def test_resumable_upload_and_content_update(emu, drive, tmp_path):
    folder = make_folder(drive, "up")
    f = upload_bytes(drive, tmp_path, "up.csv", b"a,b\n1,2\n", parent=folder["id"])
    assert f["md5Checksum"] == md5(b"a,b\n1,2\n") and f["mimeType"] == "text/csv"
    assert f["parents"][0]["id"] == folder["id"]
    assert count(emu, "POST drive upload.insert") == 1
    assert count(emu, "PUT drive upload.session") == 1
    # new content on the same id: a PUT initiation, then the session PUT
    src = tmp_path / "v2.csv"
    src.write_bytes(b"a,b\n1,2\n3,4\n")
    f.SetContentFile(str(src))
    f.Upload()
    g = drive.CreateFile({"id": f["id"]})
    g.FetchMetadata()
    assert g["md5Checksum"] == md5(src.read_bytes()) and g["fileSize"] == "12"
    assert g["parents"][0]["id"] == folder["id"]
    assert emu.drive.quota_used() == 12


def test_resumable_upload_in_chunks_gets_308s(emu, drive, tmp_path):
    data = os.urandom(600_000)
    src = tmp_path / "chunks.bin"
    src.write_bytes(data)
    media = MediaFileUpload(
        str(src), mimetype="application/octet-stream", chunksize=256 * 1024, resumable=True
    )
    request = drive.auth.service.files().insert(body={"title": "chunks.bin"}, media_body=media)
    progress = []
    response = None
    while response is None:
        status, response = request.next_chunk()
        if status:
            progress.append(status.resumable_progress)
    assert progress == [256 * 1024, 512 * 1024]
    assert response["md5Checksum"] == md5(data) and response["fileSize"] == "600000"


def test_failed_chunk_resumes_after_a_status_query(emu, drive, tmp_path):
    data = os.urandom(600_000)
    src = tmp_path / "resume.bin"
    src.write_bytes(data)
    media = MediaFileUpload(
        str(src), mimetype="application/octet-stream", chunksize=256 * 1024, resumable=True
    )
    request = drive.auth.service.files().insert(body={"title": "resume.bin"}, media_body=media)
    add_fault(emu, kind="status", status=503, method="PUT", path_regex=r"^/upload/", skip=1)
    request.next_chunk()  # chunk 1 stored
    with pytest.raises(HttpError) as exc:
        request.next_chunk()  # chunk 2 fails
    assert exc.value.resp.status == 503
    before = count(emu, "PUT drive upload.session")
    response = None
    while response is None:  # status query (bytes */600000) → 308 Range, then the rest
        _, response = request.next_chunk()
    assert count(emu, "PUT drive upload.session") - before == 3
    assert response["md5Checksum"] == md5(data)
    assert emu.drive.state()["uploads"] == 0


def test_multipart_and_media_uploads(drive):
    service = drive.auth.service
    body = b"line\r\n\r\nwith blank lines\n"
    made = (
        service.files()
        .insert(
            body={"title": "multi.txt"},
            media_body=MediaInMemoryUpload(body, mimetype="text/plain", resumable=False),
        )
        .execute()
    )
    assert made["title"] == "multi.txt" and made["md5Checksum"] == md5(body)
    assert made["mimeType"] == "text/plain" and made["fileSize"] == str(len(body))
    # an update with uploadType=media keeps the metadata
    updated = (
        service.files()
        .update(
            fileId=made["id"],
            media_body=MediaInMemoryUpload(b"v2", mimetype="text/plain", resumable=False),
        )
        .execute()
    )
    assert updated["title"] == "multi.txt" and updated["md5Checksum"] == md5(b"v2")


# -- fault injection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason"), [(429, "rateLimitExceeded"), (500, "backendError"), (503, "backendError")]
)
def test_injected_status_reaches_pydrive2_once(emu, drive, status, reason):
    add_fault(emu, kind="status", status=status, method="GET", path_regex=r"^/drive/v2/files$")
    before = count(emu, "GET drive files.list")
    with pytest.raises(ApiRequestError) as exc:
        drive.ListFile({"q": "trashed=false"}).GetList()
    assert exc.value.error["code"] == status and exc.value.GetField("reason") == reason
    assert count(emu, "GET drive files.list") - before == 1  # pydrive2 never retries
    assert drive.ListFile({"q": "trashed=false"}).GetList() == []  # count=1: spent


def test_fault_skip_count_listing_and_clearing(emu, drive):
    fault = add_fault(emu, kind="status", status=503, route="drive about.get", skip=1, count=2)
    assert fault["id"] >= 1 and fault["kind"] == "status"
    # GetAbout is the one pydrive2 call that does not wrap HttpError into ApiRequestError
    drive.GetAbout()  # skipped
    for _ in range(2):
        with pytest.raises(HttpError):
            drive.GetAbout()
    drive.GetAbout()  # spent
    status, state = admin(emu, "GET", "/_emulator/faults")
    assert status == 200
    assert state["faults"][0]["fired"] == 2 and state["faults"][0]["active"] is False
    add_fault(emu, kind="status", status=500, count=-1)
    for _ in range(3):
        with pytest.raises(HttpError):
            drive.GetAbout()
    assert admin(emu, "GET", "/_emulator/faults")[0] == 200  # admin routes are never faulted
    admin(emu, "DELETE", "/_emulator/faults")
    drive.GetAbout()
    assert admin(emu, "POST", "/_emulator/faults", {"kind": "nonsense"})[0] == 400
    assert admin(emu, "POST", "/_emulator/faults", {"kind": "status", "status": 200})[0] == 400


def test_reset_is_a_transport_error(emu, drive):
    # httplib2 silently retries a request once on a dropped connection, as it would against
    # Google, so a single reset goes unnoticed and two surface as a transport error.
    add_fault(emu, kind="reset", path_regex=r"^/drive/v2/about$")
    assert drive.GetAbout()["kind"] == "drive#about"
    add_fault(emu, kind="reset", path_regex=r"^/drive/v2/about$", count=2)
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)) as exc:
        drive.GetAbout()
    assert not isinstance(exc.value, ApiRequestError)
    assert count(emu, "GET drive about.get") == 4


def test_truncated_download_raises_incomplete_read(emu, drive, tmp_path):
    data = os.urandom(200_000)
    f = upload_bytes(drive, tmp_path, "cut.bin", data)
    add_fault(emu, kind="truncate", fraction=0.5, query_contains="alt=media", skip=1)
    out = tmp_path / "cut.out"
    with pytest.raises(http.client.IncompleteRead):
        drive.CreateFile({"id": f["id"]}).GetContentFile(str(out), chunksize=64 * 1024)
    assert out.stat().st_size == 64 * 1024  # the first, whole chunk stays on disk
    assert md5_path(out) != f["md5Checksum"]


def test_corrupted_download_is_caught_by_md5(emu, drive, tmp_path):
    data = os.urandom(100_000)
    f = upload_bytes(drive, tmp_path, "bad.bin", data)
    add_fault(emu, kind="corrupt", query_contains="alt=media", flips=3)
    out = tmp_path / "bad.out"
    drive.CreateFile({"id": f["id"]}).GetContentFile(str(out))
    got = out.read_bytes()
    assert len(got) == len(data) and got != data
    assert sum(a != b for a, b in zip(got, data, strict=True)) == 3
    assert md5(got) != f["md5Checksum"]


class FaultClock:
    """Stands in for the `time` module of core.emulator.faults, so a test asserts what the
    emulator waited, never the wall clock (which a loaded machine stretches). Every wait is
    recorded; with `real=False` it takes no wall time and moves this clock on by its length,
    so the pacing of response bodies runs on this clock alone and is the same on any machine."""

    def __init__(self, *, real: bool) -> None:
        self.real = real
        self.lock = threading.Lock()
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        if self.real:
            return time.monotonic()
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps.append(seconds)
            if not self.real:
                self.now += seconds
        if self.real:
            time.sleep(seconds)


ROUNDING = 1e-9  # of the pacing's float arithmetic: a wait may come out a hair short


def fault_clock(monkeypatch: pytest.MonkeyPatch, *, real: bool) -> FaultClock:
    clock = FaultClock(real=real)
    monkeypatch.setattr(faults, "time", clock)
    return clock


def test_slow_answer_times_out_a_short_http_timeout(emu, tmp_path, monkeypatch):
    clock = fault_clock(monkeypatch, real=True)  # the clients' timeouts need real delays
    add_fault(emu, kind="slow", delay=1.0, path_regex=r"^/drive/v2/about$")
    impatient = make_drive(emu.url, http_timeout=0.3)
    with pytest.raises((socket.timeout, TimeoutError)):
        impatient.GetAbout()
    add_fault(emu, kind="slow", delay=0.3, path_regex=r"^/drive/v2/about$")
    patient = make_drive(emu.url, http_timeout=10)
    about = patient.GetAbout()
    # The patient client got its answer, which the emulator had held back 0.3 s (and each
    # fault delayed exactly one request: the impatient client did not try again).
    assert about["kind"] == "drive#about"
    assert clock.sleeps == [1.0, 0.3]
    assert [f["fired"] for f in admin(emu, "GET", "/_emulator/faults")[1]["faults"]] == [1, 1]


def test_throttle_fault_bounds_bandwidth(emu, drive, tmp_path, monkeypatch):
    data = os.urandom(MiB)
    f = upload_bytes(drive, tmp_path, "slow.bin", data)
    clock = fault_clock(monkeypatch, real=False)
    add_fault(emu, kind="throttle", bytes_per_second=2 * MiB, query_contains="alt=media")
    out = tmp_path / "slow.out"
    drive.CreateFile({"id": f["id"]}).GetContentFile(str(out))
    # Never ahead of 2 MiB/s by more than the piece being sent: 1 MiB took ≈ 0.5 s to send.
    assert clock.now >= (MiB - faults._PIECE) / (2 * MiB) - ROUNDING
    assert md5_path(out) == f["md5Checksum"]


def test_global_throttle_is_shared_by_connections(emu, drive, tmp_path, monkeypatch):
    ids = [upload_bytes(drive, tmp_path, f"g{i}.bin", os.urandom(MiB // 2))["id"] for i in (0, 1)]
    clock = fault_clock(monkeypatch, real=False)
    drew_on: list[faults.TokenBucket | None] = []  # the shared allowance of each paced body
    taken: list[int] = []
    paced, take = faults._paced, faults.TokenBucket.take

    def recording_paced(chunks, rate, total):  # type: ignore[no-untyped-def]
        drew_on.append(total)
        return paced(chunks, rate, total)

    def recording_take(bucket, n):  # type: ignore[no-untyped-def]
        taken.append(n)
        take(bucket, n)

    monkeypatch.setattr(faults, "_paced", recording_paced)
    monkeypatch.setattr(faults.TokenBucket, "take", recording_take)
    status, body = admin(
        emu, "POST", "/_emulator/throttle", {"per_connection": None, "total": 2 * MiB}
    )
    assert status == 200 and body == {"per_connection": None, "total": 2 * MiB}
    errors: list[BaseException] = []

    def fetch(fid: str) -> None:
        try:
            drive.CreateFile({"id": fid}).GetContentFile(str(tmp_path / fid))
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=fetch, args=(fid,)) for fid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    # Both bodies drew on one allowance of 2 MiB/s, for every byte: 1 MiB in total took
    # ≈ 0.5 s to send (less what the bucket lets through at once).
    (bucket, other) = drew_on
    assert bucket is other and bucket is not None and bucket.rate == 2 * MiB
    assert sum(taken) == MiB
    assert clock.now >= (MiB - bucket.burst) / bucket.rate - ROUNDING
    assert admin(emu, "POST", "/_emulator/throttle", {"total": -1})[0] == 400
    admin(emu, "POST", "/_emulator/throttle", {"per_connection": MiB, "total": None})
    before, drew_on[:] = clock.now, []
    fetch(ids[0])
    assert drew_on == [None]  # no shared allowance left: only the connection's own limit
    assert clock.now - before >= (MiB // 2 - faults._PIECE) / MiB - ROUNDING  # 512 KiB, 1 MiB/s
    assert not errors
    admin(emu, "DELETE", "/_emulator/faults")  # clears the throttle too
    assert admin(emu, "GET", "/_emulator/faults")[1]["throttle"]["per_connection"] is None


def test_faults_match_any_route_by_path_and_method(emu):
    add_fault(emu, kind="status", status=503, method="GET", path_regex="^/v1/projects/")
    http = httplib2.Http(timeout=10)
    resp, body = http.request(emu.url + "/v1/projects/p/operations", "GET")
    assert resp.status == 503
    assert json.loads(body)["error"]["errors"][0]["reason"] == "backendError"
