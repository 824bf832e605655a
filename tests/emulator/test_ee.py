"""The Earth Engine emulator through the real, unmodified earthengine-api (and pydrive2 to fetch
the outputs from the emulated Drive), over real loopback HTTP. Nothing here mocks a client.

Most tests run the simulated clock 1000x faster than the wall clock (conftest.FAST)."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import tifffile

from core.connect import init_ee, make_drive
from core.emulator.ee import DRIVE_QUOTA_MSG

ee = pytest.importorskip("ee")

PROJECT = "test-project"
FOLDER_MIME = "application/vnd.google-apps.folder"
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
DEG = 111_319.49  # EE's metres per degree for degree-based scales
TILE_BOX = [10.0, 45.0, 10.05, 45.04]  # a small tile in northern Italy (UTM 32N)
RFC3339 = "%Y-%m-%dT%H:%M:%S.%fZ"


# -- helpers ----------------------------------------------------------------------------------


def composite() -> Any:
    region = ee.Geometry.Rectangle(TILE_BOX)
    return (
        ee.ImageCollection("LANDSAT/LC08/C02/T1_L2")
        .filterDate("2023-06-01", "2023-09-01")
        .filterBounds(region)
        .median()
        .select(["SR_B4", "SR_B3", "SR_B2"])
    )


def ndvi() -> Any:
    return composite().normalizedDifference(["SR_B4", "SR_B3"])


def wait_status(task: Any, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = task.status()
        if st["state"] in TERMINAL:
            return st
        time.sleep(0.02)
    raise AssertionError(f"task {task.id} did not finish: {task.status()}")


def wait_op(name: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op = ee.data.getOperation(name)
        if op["done"]:
            return op
        time.sleep(0.02)
    raise AssertionError(f"operation {name} did not finish")


def start_image(image: Any, description: str, **kw: Any) -> Any:
    kw.setdefault("region", ee.Geometry.Rectangle(TILE_BOX))
    kw.setdefault("scale", 30)
    kw.setdefault("maxPixels", 1e13)
    kw = {k: v for k, v in kw.items() if v is not None}
    task = ee.batch.Export.image.toDrive(image, description=description, **kw)
    task.start()
    return task


def drive_files(emu: Any, folder: str) -> tuple[str, list[Any]]:
    """(folder id, files in it) found by folder title, as a user would with pydrive2."""
    drive = make_drive(emu.url)
    q = f"title = '{folder}' and mimeType = '{FOLDER_MIME}' and trashed = false"
    folders = drive.ListFile({"q": q}).GetList()
    assert len(folders) == 1, folders
    fid = folders[0]["id"]
    files = drive.ListFile({"q": f"'{fid}' in parents and trashed = false"}).GetList()
    return fid, sorted(files, key=lambda f: f["title"])


def download(f: Any, dest: Path) -> Path:
    path = dest / f["title"]
    f.GetContentFile(str(path))
    return path


def geotags(path: Path) -> dict[str, Any]:
    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        keys = page.tags[34735].value
        keymap = {keys[i]: keys[i + 3] for i in range(4, len(keys), 4)}
        return {
            "shape": tf.series[0].shape,
            "dtype": str(page.dtype),
            "scale": page.tags[33550].value,
            "tiepoint": page.tags[33922].value,
            "keys": keymap,
            "compression": int(page.compression),
            "data": tf.asarray(),
        }


def count(emu: Any, key: str) -> int:
    with emu.server.counters_lock:
        return emu.server.counters[key]


# -- initialise, discovery, algorithms, value:compute ------------------------------------------


def test_initialize_fetches_discovery_twice_and_the_full_algorithm_list(emulator: Any) -> None:
    init_ee(emulator.url, PROJECT)
    assert count(emulator, "GET ee discovery") == 2
    assert count(emulator, "GET ee algorithms.list") == 1
    # The complete list from the wheel: building these never re-fetches the algorithms.
    assert len(ee.ApiFunction.allSignatures()) >= 900
    composite().normalizedDifference(["SR_B4", "SR_B3"]).clip(ee.Geometry.Point([1, 2]))
    assert count(emulator, "GET ee algorithms.list") == 1
    # Any project id is accepted, the legacy ones included.
    init_ee(emulator.url, "earthengine-legacy")
    assert ee.data.getInfo("users/nobody/missing") is None


def test_value_compute_constants_and_what_the_emulator_does_not_compute(
    ee_emulator: Any,
) -> None:
    assert ee.Number(3).getInfo() == 3
    assert ee.String("abc").getInfo() == "abc"
    assert ee.List([1, 2, "x"]).getInfo() == [1, 2, "x"]
    assert ee.Dictionary({"a": 1}).getInfo() == {"a": 1}
    assert ee.Number(1).add(2).getInfo() == 3  # computed (test_world has the rest)
    before = count(ee_emulator, "POST ee value.compute")
    with pytest.raises(ee.EEException, match=r"cannot compute Geometry\.area"):
        ee.Geometry.Point([1, 2]).area().getInfo()
    assert count(ee_emulator, "POST ee value.compute") - before == 1  # a 400, not retried


def test_unsupported_calls_fail_fast_with_400(ee_emulator: Any) -> None:
    task = ee.batch.Export.map.toCloudStorage(
        ndvi(), description="tiles", bucket="b", region=ee.Geometry.Rectangle(TILE_BOX)
    )
    with pytest.raises(ee.EEException, match="not supported by the emulator"):
        task.start()
    with pytest.raises(ee.EEException, match="fileFormat TF_RECORD_IMAGE"):
        start_image(ndvi(), "tfr", fileFormat="TFRecord")
    # A 5xx (or a 429) would be retried with backoff for ~30 s; a 400 fails at once: each
    # request reached the emulator exactly once.
    assert count(ee_emulator, "POST ee map.export") == 1
    assert count(ee_emulator, "POST ee image.export") == 1


# -- image exports to Drive -------------------------------------------------------------------


def test_landsat_composite_to_drive_writes_a_georeferenced_geotiff(
    ee_emulator: Any, tmp_path: Path
) -> None:
    from pyproj import Transformer

    task = start_image(composite(), "rgb", folder="ee_exports", crs="EPSG:32632")
    assert task.name == f"projects/{PROJECT}/operations/{task.id}"
    st = wait_status(task)
    assert st["state"] == "COMPLETED", st
    assert st["task_type"] == "EXPORT_IMAGE" and st["description"] == "rgb"
    assert st["priority"] == 100 and st["attempt"] == 1
    assert isinstance(st["creation_timestamp_ms"], int)

    op = ee.data.getOperation(task.name)
    meta = op["metadata"]
    assert op["done"] is True and "error" not in op
    assert op["response"]["@type"].endswith("protobuf.Empty")
    assert meta["@type"] == "type.googleapis.com/google.earthengine.v1.OperationMetadata"
    assert meta["state"] == "SUCCEEDED" and meta["progress"] == 1.0
    assert meta["batchEecuUsageSeconds"] > 0
    times = [datetime.strptime(meta[k], RFC3339) for k in ("createTime", "startTime", "endTime")]
    assert times == sorted(times)
    assert all(re.fullmatch(r"[\d\-T:]+\.\d{6}Z", meta[k]) for k in ("createTime", "updateTime"))

    folder_id, files = drive_files(ee_emulator, "ee_exports")
    assert meta["destinationUris"] == [f"https://drive.google.com/#folders/{folder_id}"]
    assert [f["title"] for f in files] == ["rgb.tif"]
    tags = geotags(download(files[0], tmp_path))
    bands, h, w = tags["shape"]
    assert bands == 3 and tags["dtype"] == "uint16" and tags["compression"] == 1
    assert tags["scale"][:2] == (30.0, 30.0)
    assert tags["keys"][1024] == 1 and tags["keys"][3072] == 32632  # projected, UTM 32N
    # The grid sits on the 30 m lattice and covers the region's box, less than a pixel more.
    x0, y0 = tags["tiepoint"][3], tags["tiepoint"][4]
    assert x0 % 30 == 0 and y0 % 30 == 0
    tr = Transformer.from_crs("EPSG:4326", "EPSG:32632", always_xy=True)
    bx0, by0, bx1, by1 = tr.transform_bounds(*TILE_BOX, densify_pts=21)
    assert x0 <= bx0 < x0 + 30 and y0 - 30 < by1 <= y0
    assert x0 + w * 30 - 30 < bx1 <= x0 + w * 30
    assert y0 - h * 30 <= by0 < y0 - h * 30 + 30
    assert tags["data"].min() > 0  # real pixels, not an empty file


def test_ndvi_in_geographic_crs_is_float32_with_degree_pixels(
    ee_emulator: Any, tmp_path: Path
) -> None:
    task = start_image(ndvi(), "ndvi", folder="ndvi_out", fileNamePrefix="ndvi_tile_1")
    assert wait_status(task)["state"] == "COMPLETED"
    _, files = drive_files(ee_emulator, "ndvi_out")
    assert [f["title"] for f in files] == ["ndvi_tile_1.tif"]
    tags = geotags(download(files[0], tmp_path))
    h, w = tags["shape"]  # one band
    assert tags["dtype"] == "float32"
    assert float(tags["data"].min()) >= -1.0 and float(tags["data"].max()) <= 1.0
    assert tags["keys"][1024] == 2 and tags["keys"][2048] == 4326  # geographic WGS 84
    px = 30 / DEG
    assert tags["scale"][0] == pytest.approx(px) and tags["scale"][1] == pytest.approx(px)
    west, south, east, north = TILE_BOX
    x0, y0 = tags["tiepoint"][3], tags["tiepoint"][4]
    assert x0 <= west < x0 + px and y0 - px < north <= y0
    assert w == math.ceil((east - x0) / px - 1e-9) and h == math.ceil((y0 - south) / px - 1e-9)


def test_grid_from_dimensions_crs_transform_and_a_flat_region(
    ee_emulator: Any, tmp_path: Path
) -> None:
    exact = start_image(
        composite(),
        "exact",
        folder="grids",
        region=None,
        scale=None,
        crs="EPSG:32632",
        crsTransform=[30, 0, 500000, 0, -30, 5000000],
        dimensions="100x50",
    )
    flat = start_image(ndvi(), "flat", folder="grids", region=[10, 45, 10.1, 45.1], scale=100)
    assert wait_status(exact)["state"] == wait_status(flat)["state"] == "COMPLETED"
    _, files = drive_files(ee_emulator, "grids")
    tags = {f["title"]: geotags(download(f, tmp_path)) for f in files}
    t = tags["exact.tif"]
    assert t["shape"] == (3, 50, 100) and t["scale"][:2] == (30.0, 30.0)
    assert t["tiepoint"][3:5] == (500000.0, 5000000.0)
    # A flat [w, s, e, n] list (a two-point line for the client): its bounding box is exported.
    h, w = tags["flat.tif"]["shape"]
    px = 100 / DEG
    assert w == math.ceil(10.1 / px - 1e-9) - math.floor(10 / px + 1e-9)
    assert h == math.ceil(45.1 / px - 1e-9) - math.floor(45 / px + 1e-9)


def test_large_image_is_split_into_named_shards(emulator_factory: Any, tmp_path: Path) -> None:
    emu = emulator_factory(file_split_bytes=256 * 1024)
    init_ee(emu.url, PROJECT)
    # ~395 x 445 px at 10 m x 3 bands x 2 bytes ≈ 1 MB > 256 KiB: 256 px shards.
    task = start_image(composite(), "big", folder="shards", crs="EPSG:32632", scale=10)
    assert wait_status(task)["state"] == "COMPLETED"
    _, files = drive_files(emu, "shards")
    names = [f["title"] for f in files]
    assert len(names) == 4, names
    assert all(re.fullmatch(r"big-\d{10}-\d{10}\.tif", n) for n in names), names
    assert names[0] == "big-0000000000-0000000000.tif"
    shards = []
    for f in files:
        row0, col0 = (int(x) for x in re.findall(r"\d{10}", f["title"]))
        tags = geotags(download(f, tmp_path))
        bands, h, w = tags["shape"]
        assert bands == 3 and row0 % 256 == 0 and col0 % 256 == 0 and h <= 256 and w <= 256
        shards.append((row0, col0, h, w, tags["tiepoint"][3], tags["tiepoint"][4]))
    # The shards tile the whole grid, each georeferenced at its own pixel offset.
    _, _, _, _, x0, y0 = shards[0]
    height = max(r + h for r, _, h, _, _, _ in shards)
    width = max(c + w for _, c, _, w, _, _ in shards)
    assert sum(h * w for _, _, h, w, _, _ in shards) == height * width
    assert width > 256 and height > 256
    for row0, col0, _, _, x, y in shards:
        assert (x, y) == (x0 + col0 * 10, y0 - row0 * 10)
    # fileDimensions sets the shard size even below the split threshold.
    task = start_image(
        composite(), "dims", folder="dims", crs="EPSG:32632", scale=10, fileDimensions=[512, 256]
    )
    assert wait_status(task)["state"] == "COMPLETED"
    _, files = drive_files(emu, "dims")
    cols = {int(re.findall(r"\d{10}", f["title"])[1]) for f in files}
    rows = {int(re.findall(r"\d{10}", f["title"])[0]) for f in files}
    assert cols == {0} and rows == {0, 256}  # 395 x 445 px in files of 512 x 256


def test_export_too_big_for_drive_fails_with_quota_message(emulator_factory: Any) -> None:
    emu = emulator_factory(drive_quota=200_000)
    init_ee(emu.url, PROJECT)
    task = start_image(composite(), "toobig", folder="q", crs="EPSG:32632")
    st = wait_status(task)
    assert st["state"] == "FAILED" and st["error_message"] == DRIVE_QUOTA_MSG
    assert emu.drive.quota_used() == 0


# -- the batch model through the client ---------------------------------------------------------


def test_task_list_never_shows_more_running_than_slots(emulator_factory: Any) -> None:
    # 2 simulated seconds at 5x: each task runs ~0.4 s wall, five of them in three waves.
    emu = emulator_factory(slots=2, speed=5.0)
    init_ee(emu.url, PROJECT)
    for i in range(5):
        start_image(ndvi(), f"tile_{i}")
    seen_running: list[int] = []
    seen_ready: list[int] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        listing = str(ee.batch.Task.list())
        seen_running.append(listing.count("RUNNING"))
        seen_ready.append(listing.count("READY"))
        if listing.count("COMPLETED") == 5:
            break
        time.sleep(0.01)
    assert max(seen_running) == 2 and all(n <= 2 for n in seen_running)
    assert max(seen_ready) >= 1
    assert str(ee.batch.Task.list()).count("COMPLETED") == 5


def test_priority_orders_the_queue(emulator_factory: Any) -> None:
    # One slot, held by tasks that never end on their own: the queue's order shows in which
    # task starts when the running one is cancelled, whatever the machine's load.
    emu = emulator_factory(slots=1, speed=10.0, task_overhead_seconds=100_000)
    init_ee(emu.url, PROJECT)
    first = start_image(ndvi(), "first")
    wait_state(first, "RUNNING")
    low_a = start_image(ndvi(), "low_a")
    low_b = start_image(ndvi(), "low_b")
    high = start_image(ndvi(), "high", priority=500)
    for running, nxt, waiting in ((first, high, (low_a, low_b)), (high, low_a, (low_b,)),
                                  (low_a, low_b, ())):
        assert all(t.status()["state"] == "READY" for t in (nxt, *waiting))
        running.cancel()
        wait_state(nxt, "RUNNING")
    low_b.cancel()
    ops = {t.id: wait_op(t.name) for t in (first, low_a, low_b, high)}
    start = {
        k: ops[t.id]["metadata"]["startTime"]
        for k, t in (("first", first), ("a", low_a), ("b", low_b), ("high", high))
    }
    assert start["first"] < start["high"] < start["a"] < start["b"]
    # One slot: the next task starts the moment the previous one ends.
    assert ops[high.id]["metadata"]["startTime"] == ops[first.id]["metadata"]["endTime"]
    assert ops[high.id]["metadata"]["priority"] == 500
    assert high.status()["priority"] == 500


def wait_state(task: Any, state: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while task.status()["state"] != state:
        assert time.monotonic() < deadline, f"{task.id} never {state}: {task.status()}"
        time.sleep(0.02)


def test_cancel_pending_and_running(emulator_factory: Any) -> None:
    emu = emulator_factory(slots=1, speed=10.0, task_overhead_seconds=100_000)
    init_ee(emu.url, PROJECT)
    running = start_image(ndvi(), "long")
    queued = start_image(ndvi(), "queued")
    deadline = time.monotonic() + 5
    while running.status()["state"] != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert queued.status()["state"] == "READY"
    queued.cancel()
    st = queued.status()  # PENDING is cancelled at once
    assert st["state"] == "CANCELLED" and st["error_message"] == "Cancelled."
    running.cancel()
    assert running.status()["state"] == "CANCEL_REQUESTED"
    assert running.active()
    op = wait_op(running.name)
    assert op["metadata"]["state"] == "CANCELLED"
    assert op["error"] == {"code": 1, "message": "Cancelled."}
    # A finished task cannot be cancelled.
    emu2 = emulator_factory()
    init_ee(emu2.url, PROJECT)
    done = start_image(ndvi(), "done")
    wait_status(done)
    with pytest.raises(ee.EEException, match="already finished"):
        done.cancel()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"memory_limit_pixels": 10_000}, "User memory limit exceeded."),
        ({"memory_limit_pixels": 10**12, "timeout_pixels": 10_000}, "Computation timed out."),
        ({"internal_error_rate": 1.0}, "Internal error."),
    ],
)
def test_oversized_and_unlucky_exports_fail_like_ee(
    emulator_factory: Any, overrides: dict[str, Any], message: str
) -> None:
    emu = emulator_factory(**overrides)
    init_ee(emu.url, PROJECT)
    task = start_image(ndvi(), "fails", folder="never")
    st = wait_status(task)
    assert st["state"] == "FAILED" and st["error_message"] == message
    op = ee.data.getOperation(task.name)
    assert op["done"] and op["error"]["message"] == message and "response" not in op
    assert "endTime" in op["metadata"]
    assert emu.drive.find_folders("never") == []


def test_max_pixels_and_unbounded_exports_fail(ee_emulator: Any) -> None:
    task = start_image(ndvi(), "capped", maxPixels=1000)
    st = wait_status(task)
    assert st["state"] == "FAILED"
    m = re.fullmatch(
        r"Export too large: specified (\d+) pixels \(max: 1000\)\. Specify higher maxPixels "
        r"value if you intend to export a large area\.",
        st["error_message"],
    )
    assert m and int(m.group(1)) > 1000
    task = ee.batch.Export.image.toDrive(ndvi(), description="nowhere", scale=30)
    task.start()
    assert wait_status(task)["error_message"] == "Unable to export unbounded image."


def test_request_id_deduplicates_exports(ee_emulator: Any) -> None:
    task = ee.batch.Export.image.toDrive(
        ndvi(), description="once", region=ee.Geometry.Rectangle(TILE_BOX), scale=30
    )
    op1 = ee.data.exportImage("fixed-request-id-1", task.config)
    op2 = ee.data.exportImage("fixed-request-id-1", dict(task.config))
    assert op1["name"] == op2["name"]
    assert [o["name"] for o in ee.data.listOperations()] == [op1["name"]]
    op3 = ee.data.exportImage("fixed-request-id-2", dict(task.config))
    assert op3["name"] != op1["name"]


def test_list_operations_pages_newest_first(emulator_factory: Any) -> None:
    emu = emulator_factory(max_page_size=2)
    init_ee(emu.url, PROJECT)
    names = [start_image(ndvi(), f"page_{i}").name for i in range(5)]
    before = count(emu, "GET ee operations.list")
    ops = ee.data.listOperations()
    assert count(emu, "GET ee operations.list") - before == 3  # pages of 2, 2, 1
    assert [o["name"] for o in ops] == names[::-1]
    created = [o["metadata"]["createTime"] for o in ops]
    assert created == sorted(created, reverse=True)
    assert len(ee.batch.Task.list()) == 5
    # Another project's operations are not listed.
    init_ee(emu.url, "other-project")
    assert ee.data.listOperations() == []


# -- tables, video, assets --------------------------------------------------------------------


def features() -> Any:
    return ee.FeatureCollection(
        [
            ee.Feature(ee.Geometry.Point([10.01, 45.01]), {"name": "a", "value": 1}),
            ee.Feature(ee.Geometry.Point([10.02, 45.02]), {"name": "b", "value": 2}),
        ]
    )


def test_table_export_writes_csv_and_geojson(ee_emulator: Any, tmp_path: Path) -> None:
    t1 = ee.batch.Export.table.toDrive(
        features(), description="tbl", folder="tables", selectors=["name", "value"]
    )
    t2 = ee.batch.Export.table.toDrive(features(), description="full", folder="tables")
    t3 = ee.batch.Export.table.toDrive(
        features(), description="geo", folder="tables", fileFormat="GeoJSON"
    )
    for t in (t1, t2, t3):
        t.start()
    for t in (t1, t2, t3):
        st = wait_status(t)
        assert st["state"] == "COMPLETED" and st["task_type"] == "EXPORT_FEATURES"
    _, files = drive_files(ee_emulator, "tables")
    by_title = {f["title"]: f for f in files}
    assert sorted(by_title) == ["full.csv", "geo.geojson", "tbl.csv"]
    text = download(by_title["tbl.csv"], tmp_path).read_text()
    assert list(csv.reader(io.StringIO(text))) == [["name", "value"], ["a", "1"], ["b", "2"]]
    rows = list(csv.DictReader(io.StringIO(download(by_title["full.csv"], tmp_path).read_text())))
    assert list(rows[0]) == ["system:index", "name", "value", ".geo"]
    assert json.loads(rows[1][".geo"]) == {"type": "Point", "coordinates": [10.02, 45.02]}
    fc = json.loads(download(by_title["geo.geojson"], tmp_path).read_text())
    assert [f["properties"]["name"] for f in fc["features"]] == ["a", "b"]


def test_video_export_lands_in_drive(ee_emulator: Any) -> None:
    frames = (
        ee.ImageCollection("LANDSAT/LC08/C02/T1_L2")
        .filterDate("2023-06-01", "2023-09-01")
        .limit(4)
        .map(lambda i: i.visualize(bands=["SR_B4", "SR_B3", "SR_B2"], min=0, max=3000))
    )
    task = ee.batch.Export.video.toDrive(
        frames,
        description="vid",
        folder="videos",
        region=ee.Geometry.Rectangle(TILE_BOX),
        dimensions=64,
        framesPerSecond=2,
    )
    task.start()
    st = wait_status(task)
    assert st["state"] == "COMPLETED" and st["task_type"] == "EXPORT_VIDEO"
    _, files = drive_files(ee_emulator, "videos")
    assert [f["title"] for f in files] == ["vid.mp4"]


def test_assets_create_list_delete(emulator_factory: Any) -> None:
    emu = emulator_factory(max_page_size=2)
    init_ee(emu.url, PROJECT)
    root = f"projects/{PROJECT}/assets"
    ee.data.createFolder(f"{root}/exports")
    for sub in ("c_sub", "a_sub", "b_sub"):
        ee.data.createFolder(f"{root}/exports/{sub}")
    ee.data.createAsset({"type": "ImageCollection"}, f"{root}/exports/coll")
    with pytest.raises(ee.EEException, match="Cannot overwrite"):
        ee.data.createFolder(f"{root}/exports/a_sub")
    with pytest.raises(ee.EEException, match="does not exist"):
        ee.data.createFolder(f"{root}/missing/child")
    listed = ee.data.listAssets({"parent": f"{root}/exports"})["assets"]  # follows 2 pages
    assert [a["name"] for a in listed] == [
        f"{root}/exports/{n}" for n in ("a_sub", "b_sub", "c_sub", "coll")
    ]
    assert [a["type"] for a in listed] == ["FOLDER", "FOLDER", "FOLDER", "IMAGE_COLLECTION"]
    page = ee.data.listAssets({"parent": f"{root}/exports", "pageSize": 2})
    assert len(page["assets"]) == 2 and page["nextPageToken"]
    assert [a["id"] for a in ee.data.getList({"id": f"{root}/exports"})][-1].endswith("coll")
    assert [a["name"] for a in ee.data.listAssets({"parent": root})["assets"]] == [
        f"{root}/exports"
    ]
    info = ee.data.getInfo(f"{root}/exports")
    assert info["type"] == "FOLDER" and info["updateTime"].endswith("Z")
    with pytest.raises(ee.EEException, match="non-empty"):
        ee.data.deleteAsset(f"{root}/exports")
    for sub in ("a_sub", "b_sub", "c_sub", "coll"):
        ee.data.deleteAsset(f"{root}/exports/{sub}")
    ee.data.deleteAsset(f"{root}/exports")
    assert ee.data.getInfo(f"{root}/exports") is None
    assert ee.data.getInfo(f"{root}/never-existed") is None
    with pytest.raises(ee.EEException, match="does not exist"):
        ee.data.getAsset(f"{root}/never-existed")
    # A few public catalog ids resolve, so getInfo on a collection id works.
    assert ee.data.getInfo("LANDSAT/LC08/C02/T1_L2")["type"] == "IMAGE_COLLECTION"


def test_to_asset_export_creates_the_asset(ee_emulator: Any) -> None:
    root = f"projects/{PROJECT}/assets"
    ee.data.createFolder(f"{root}/exports")

    def to_asset(name: str, **kw: Any) -> Any:
        task = ee.batch.Export.image.toAsset(
            ndvi(),
            description=name,
            assetId=f"{root}/exports/{name}",
            region=ee.Geometry.Rectangle(TILE_BOX),
            scale=30,
            **kw,
        )
        task.start()
        return task

    task = to_asset("ndvi")
    st = wait_status(task)
    assert st["state"] == "COMPLETED"
    assert st["destination_uris"] == [
        f"https://code.earthengine.google.com/?asset={root}/exports/ndvi"
    ]
    asset = ee.data.getAsset(f"{root}/exports/ndvi")
    assert asset["type"] == "IMAGE" and int(asset["sizeBytes"]) > 0
    assert [b["id"] for b in asset["bands"]] == ["nd"]
    with pytest.raises(ee.EEException, match="Cannot overwrite"):
        to_asset("ndvi")
    assert wait_status(to_asset("ndvi", overwrite=True))["state"] == "COMPLETED"
    ee.data.copyAsset(f"{root}/exports/ndvi", f"{root}/ndvi_copy")
    ee.data.renameAsset(f"{root}/ndvi_copy", f"{root}/exports/ndvi_moved")
    names = [a["name"] for a in ee.data.listAssets({"parent": f"{root}/exports"})["assets"]]
    assert names == [f"{root}/exports/ndvi", f"{root}/exports/ndvi_moved"]
    ee.data.setAssetProperties(f"{root}/exports/ndvi", {"tile": "r1c1"})
    assert ee.data.getAsset(f"{root}/exports/ndvi")["properties"] == {"tile": "r1c1"}
    table = ee.batch.Export.table.toAsset(
        features(), description="pts", assetId=f"{root}/exports/points"
    )
    table.start()
    assert wait_status(table)["state"] == "COMPLETED"
    assert ee.data.getAsset(f"{root}/exports/points")["type"] == "TABLE"
    with pytest.raises(ee.EEException, match="does not exist"):
        to_asset_missing = ee.batch.Export.image.toAsset(
            ndvi(),
            description="x",
            assetId=f"{root}/nope/x",
            region=ee.Geometry.Rectangle(TILE_BOX),
            scale=30,
        )
        to_asset_missing.start()


def test_gcs_export_succeeds_without_storage(ee_emulator: Any) -> None:
    task = ee.batch.Export.image.toCloudStorage(
        ndvi(),
        description="gcs",
        bucket="my-bucket",
        fileNamePrefix="tiles/t1",
        region=ee.Geometry.Rectangle(TILE_BOX),
        scale=30,
    )
    task.start()
    st = wait_status(task)
    assert st["state"] == "COMPLETED" and st["destination_uris"] == ["gs://my-bucket/tiles/t1"]


def test_project_config_sets_the_slots(emulator_factory: Any) -> None:
    emu = emulator_factory(slots=2)
    init_ee(emu.url, PROJECT)
    assert ee.data.getProjectConfig()["maxConcurrentExports"] == 2
    ee.data.updateProjectConfig({"maxConcurrentExports": 5}, ["max_concurrent_exports"])
    assert ee.data.getProjectConfig()["maxConcurrentExports"] == 5
    assert emu.ee.model.slots_for(PROJECT) == 5


def test_operations_filter_and_unknown_task_status(ee_emulator: Any) -> None:
    from googleapiclient.errors import HttpError

    done = start_image(ndvi(), "filtered")
    wait_status(done)
    ops = ee.data._get_cloud_projects().operations()
    res = ops.list(name=f"projects/{PROJECT}", filter='metadata.state = "SUCCEEDED"').execute()
    assert [o["name"] for o in res["operations"]] == [done.name]
    assert ops.list(name=f"projects/{PROJECT}", filter='metadata.state="RUNNING"').execute() == {}
    with pytest.raises(HttpError) as err:
        ops.list(name=f"projects/{PROJECT}", filter="createTime > 5").execute()
    assert err.value.resp.status == 400
    (status,) = ee.data.getTaskStatus(["NOSUCHTASK00000000000000"])
    assert status["state"] == "UNKNOWN"


def test_discovery_document_declares_what_the_client_calls(emulator: Any) -> None:
    import urllib.parse
    import urllib.request

    import httplib2
    from googleapiclient.discovery import build_from_document

    url = f"{emulator.url}/$discovery/rest?version=v1&prettyPrint=false"
    with urllib.request.urlopen(url, timeout=10) as resp:
        doc = json.loads(resp.read())
    p = build_from_document(doc, http=httplib2.Http()).projects()
    a = "projects/p/assets/f/x"
    calls = {
        "algorithms": p.algorithms().list(parent="projects/p", prettyPrint=False),
        "root": p.listAssets(parent="projects/p", pageSize=2, pageToken="t", view="BASIC"),
        "list": p.assets().listAssets(parent=a, filter="x", view="FULL", pageSize=1),
        "get": p.assets().get(name=a, prettyPrint=False),
        "create": p.assets().create(
            parent="projects/p", assetId="f/x", body={}, overwrite=True, prettyPrint=False
        ),
        "delete": p.assets().delete(name=a),
        "patch": p.assets().patch(name=a, body={}),
        "copy": p.assets().copy(sourceName=a, body={}),
        "move": p.assets().move(sourceName=a, body={}),
        "features": p.assets().listFeatures(asset=a, pageSize=1, region="r", filter="f"),
        "export": p.image().export(project="projects/p", body={}),
        "import": p.image().import_(project="projects/p", body={}),
        "ops": p.operations().list(name="projects/p", pageSize=500, pageToken="s1"),
        "op": p.operations().get(name="projects/p/operations/X"),
        "cancel": p.operations().cancel(name="projects/p/operations/X", body={}),
        "value": p.value().compute(project="projects/p", body={}, prettyPrint=False),
        "thumb": p.thumbnails().create(parent="projects/p", fields="name", body={}),
        "tiles": p.maps().tiles().get(parent="projects/p/maps/m", zoom=1, x=2, y=3),
        "config": p.getConfig(name="projects/p/config"),
    }
    paths = {k: urllib.parse.urlsplit(c.uri).path for k, c in calls.items()}
    assert paths["root"] == "/v1/projects/p:listAssets"
    assert paths["list"] == "/v1/projects/p/assets/f/x:listAssets"
    assert paths["create"] == "/v1/projects/p/assets" and "assetId=f%2Fx" in calls["create"].uri
    assert paths["ops"] == "/v1/projects/p/operations"
    assert paths["tiles"] == "/v1/projects/p/maps/m/tiles/1/2/3"
    # Without nextPageToken in the list responses no *_next() would exist.
    assert hasattr(p.operations(), "list_next") and hasattr(p.assets(), "listAssets_next")
    assert hasattr(p, "listAssets_next")


def test_service_account_token_endpoint(emulator: Any, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from core.connect import _catalog_fetch_kept_local

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    key_file = tmp_path / "sa.json"
    key_file.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "sa-project",
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": "robot@sa-project.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": f"{emulator.url}/token",
            }
        )
    )
    ee.Reset()
    creds = ee.ServiceAccountCredentials(None, str(key_file))
    with _catalog_fetch_kept_local(emulator.url):
        ee.Initialize(credentials=creds, url=emulator.url)  # no project: earthengine-legacy
    task = start_image(ndvi(), "sa_export")
    assert task.name.startswith("projects/earthengine-legacy/operations/")
    assert wait_status(task)["state"] == "COMPLETED"
    assert count(emulator, "POST ee token") >= 1


# -- nothing leaves the machine --------------------------------------------------------------


def test_no_request_leaves_loopback(emulator: Any, connections: Any, tmp_path: Path) -> None:
    import urllib.request

    # An earlier urlopen() caches an opener built without the proxy trick; init_ee must cope.
    with urllib.request.urlopen(f"{emulator.url}/_emulator/state", timeout=10) as resp:
        assert resp.status == 200
    with connections.recording() as events:
        init_ee(emulator.url, PROJECT)  # includes the hidden catalog fetch
        task = start_image(ndvi(), "audit", folder="audit")
        assert wait_status(task)["state"] == "COMPLETED"
        _, files = drive_files(emulator, "audit")
        download(files[0], tmp_path)
    connects = [addr for ev, addr in events if ev == "socket.connect"]
    assert connects, "the recorder saw no connections"
    hosts = {a[0] for a in connects if isinstance(a, tuple)}
    assert hosts == {"127.0.0.1"}, hosts
    lookups = {h for ev, h in events if ev == "socket.getaddrinfo"}
    assert lookups <= {"127.0.0.1", "localhost", None}, lookups
    # The catalog fetch went to the emulator as a CONNECT and was refused there.
    assert count(emulator, "GET ee discovery") == 2
