"""Drive as slow and as full as Google's, through the real pydrive2 (and earthengine-api for
exports): a new file is missing from every listing for `drive_listing_lag` wall-clock seconds
while files.get finds it at once, and Gmail and Photos (`quota_other`) share the quota.

The emulators here run simulated time 1000x (conftest.FAST): the lag is wall-clock time, so a
30 s lag still hides a file after the simulated clock has moved on by minutes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydrive2.files import ApiRequestError

from core.connect import init_ee, make_drive
from core.emulator.ee import DRIVE_QUOTA_MSG
from tests.emulator.drive_fixtures import (
    FOLDER,
    listed,
    make_folder,
    upload_bytes,
    wait_until,
)

ee = pytest.importorskip("ee")

STORAGE_QUOTA = "The user's Drive storage quota has been exceeded."
LONG_LAG = 30.0  # far longer than any test here runs
TILE_BOX = [10.0, 45.0, 10.05, 45.04]


def sim_time_passes(emu: Any, seconds: float) -> None:
    """Wait until the emulator's simulated clock has moved on by `seconds` (a lag kept on the
    simulated clock would be over by then)."""
    start = emu.clock.now()
    wait_until(lambda: emu.clock.now() - start > seconds, what="simulated time to pass")


def export_to_drive(emu: Any, description: str, folder: str) -> dict[str, Any]:
    """A small image export through earthengine-api, waited for; its finished operation."""
    init_ee(emu.url, "test-project")
    region = ee.Geometry.Rectangle(TILE_BOX)
    image = (
        ee.ImageCollection("LANDSAT/LC08/C02/T1_L2")
        .filterDate("2023-06-01", "2023-09-01")
        .filterBounds(region)
        .median()
        .select(["SR_B4"])
    )
    task = ee.batch.Export.image.toDrive(
        image, description=description, folder=folder, region=region, scale=30, maxPixels=1e13
    )
    task.start()
    name = task.name
    return wait_until(
        lambda: (op := ee.data.getOperation(name)).get("done") and op,
        timeout=30,
        what=f"operation {name} to finish",
    )


# -- listing lag -------------------------------------------------------------------------------


def test_a_new_upload_is_not_listed_during_the_lag_but_get_finds_it(emulator_factory, tmp_path):
    emu = emulator_factory(drive_listing_lag=LONG_LAG)
    drive = make_drive(emu.url, http_timeout=10)
    folder = make_folder(drive, "exports")
    f = upload_bytes(drive, tmp_path, "a.tif", b"II*\x00" + b"a" * 996, parent=folder["id"])
    sim_time_passes(emu, 2 * LONG_LAG)
    queries = [
        None,
        "trashed=false",
        f"'{folder['id']}' in parents",
        f"'{folder['id']}' in parents and trashed=false",
        "title = 'a.tif'",
        "title contains 'a'",
        f"title = 'exports' and mimeType = '{FOLDER}' and trashed=false",
        "'root' in parents",
    ]
    for q in queries:
        assert listed(drive, q) == [], q
    # files.get does not go through the search index: both are there at once.
    got = drive.CreateFile({"id": f["id"]})
    got.FetchMetadata()
    assert (got["title"], got["md5Checksum"], got["fileSize"]) == (
        "a.tif",
        f["md5Checksum"],
        "1000",
    )
    assert got["parents"][0]["id"] == folder["id"]
    out = tmp_path / "a.out"
    drive.CreateFile({"id": f["id"]}).GetContentFile(str(out))
    assert out.stat().st_size == 1000
    # Deleting works at once too.
    drive.CreateFile({"id": f["id"]}).Delete()
    with pytest.raises(ApiRequestError) as exc:
        drive.CreateFile({"id": f["id"]}).FetchMetadata()
    assert exc.value.error["code"] == 404
    assert emu.drive.quota_used() == 0


def test_a_file_shows_in_listings_once_the_lag_has_passed(emulator_factory, tmp_path):
    lag = 0.5
    emu = emulator_factory(drive_listing_lag=lag)
    drive = make_drive(emu.url, http_timeout=10)
    start = time.monotonic()
    f = upload_bytes(drive, tmp_path, "b.tif", b"b" * 100)
    q = "'root' in parents and trashed=false"
    wait_until(lambda: listed(drive, q) == ["b.tif"], what="b.tif to be listed")
    # Never before the lag: the upload was created after `start`.
    assert time.monotonic() - start >= lag
    assert [x["id"] for x in drive.ListFile({"q": "title = 'b.tif'"}).GetList()] == [f["id"]]
    assert listed(drive) == ["b.tif"]


def test_an_export_dropped_into_drive_lags_too(emulator_factory, tmp_path):
    emu = emulator_factory(drive_listing_lag=LONG_LAG)
    drive = make_drive(emu.url, http_timeout=10)
    folder_id = emu.drive.ensure_export_folder("eebatch")
    src = tmp_path / "tile.tif"
    src.write_bytes(b"II*\x00" + bytes(500))
    added = emu.drive.add_file(folder_id, "tile.tif", src, "image/tiff")
    sim_time_passes(emu, 2 * LONG_LAG)
    assert listed(drive, f"'{folder_id}' in parents and trashed=false") == []
    assert listed(drive, "title = 'tile.tif'") == []
    got = drive.CreateFile({"id": added["id"]})
    got.FetchMetadata(fields="title,fileSize,md5Checksum")
    assert (got["title"], got["fileSize"]) == ("tile.tif", "504")


def test_an_ee_export_is_found_by_its_folder_id_but_not_listed_during_the_lag(emulator_factory):
    emu = emulator_factory(drive_listing_lag=LONG_LAG)
    op = export_to_drive(emu, "lag_tile", "lagged")
    assert op["metadata"]["state"] == "SUCCEEDED", op
    (uri,) = op["metadata"]["destinationUris"]
    folder_id = uri.rsplit("/", 1)[-1]
    drive = make_drive(emu.url, http_timeout=10)
    folder = drive.CreateFile({"id": folder_id})
    folder.FetchMetadata()
    assert (folder["title"], folder["mimeType"]) == ("lagged", FOLDER)
    # The folder and the file are new to the index: neither a search by title nor a listing of
    # the folder finds them yet.
    assert listed(drive, f"title = 'lagged' and mimeType = '{FOLDER}'") == []
    assert listed(drive, f"'{folder_id}' in parents and trashed=false") == []
    files = [f for f in emu.drive.state()["files"] if folder_id in f["parents"]]
    assert [f["title"] for f in files] == ["lag_tile.tif"]
    got = drive.CreateFile({"id": files[0]["id"]})
    got.FetchMetadata()
    assert got["md5Checksum"] == files[0]["md5Checksum"]


# -- Gmail and Photos share the quota ----------------------------------------------------------


def test_gmail_and_photos_count_in_the_aggregate_and_leave_less_room(emulator_factory, tmp_path):
    emu = emulator_factory(drive_quota=10_000, quota_other=6_000)
    drive = make_drive(emu.url, http_timeout=10)
    about = drive.GetAbout()
    assert (about["quotaBytesTotal"], about["quotaBytesUsed"]) == ("10000", "0")
    assert about["quotaBytesUsedAggregate"] == "6000"
    by_service = {s["serviceName"]: s["bytesUsed"] for s in about["quotaBytesByService"]}
    assert by_service == {"DRIVE": "0", "GMAIL": "6000", "PHOTOS": "0"}
    assert emu.drive.free_bytes() == 4_000
    upload_bytes(drive, tmp_path, "fits.bin", b"f" * 3_000)
    about = drive.GetAbout()
    assert (about["quotaBytesUsed"], about["quotaBytesUsedAggregate"]) == ("3000", "9000")
    assert emu.drive.free_bytes() == 1_000
    # 1,500 bytes would fit in Drive's own 7,000 free bytes, but not beside Gmail and Photos.
    with pytest.raises(ApiRequestError) as exc:
        upload_bytes(drive, tmp_path, "too-big.bin", b"t" * 1_500)
    assert exc.value.error["code"] == 403
    assert exc.value.GetField("reason") == "storageQuotaExceeded"
    assert exc.value.error["message"] == STORAGE_QUOTA
    assert STORAGE_QUOTA in str(exc.value)
    assert listed(drive, "trashed=false") == ["fits.bin"]
    upload_bytes(drive, tmp_path, "just-fits.bin", b"j" * 1_000)
    assert drive.GetAbout()["quotaBytesUsedAggregate"] == "10000"
    assert emu.drive.state()["quota"]["other"] == 6_000


def test_an_ee_export_finds_no_room_beside_gmail_and_photos(emulator_factory):
    quota = 10_000_000
    emu = emulator_factory(drive_quota=quota, quota_other=quota - 100)
    assert emu.drive.quota_used() == 0 and emu.drive.free_bytes() == 100
    op = export_to_drive(emu, "no_room", "full")
    assert op["metadata"]["state"] == "FAILED", op
    assert op["error"]["message"] == DRIVE_QUOTA_MSG
    assert emu.drive.quota_used() == 0
