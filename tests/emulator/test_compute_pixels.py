"""Direct pixels (issue 16): the emulator's computePixels and getDownloadURL through the real
earthengine-api, and the adapter's EarthEngine.compute_pixels from many threads at once.

The same image on the same grid gives the same pixels as its batch export (read back from
Drive with rasterio); EE's per-request limits and texts; 40 requests in flight and a 429
beyond them; time paced on the simulated clock and EECU charged per request; memory and time
failures with EE's messages (classified as EE's: split); the high-volume URL."""

from __future__ import annotations

import io
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from googleapiclient.errors import HttpError
from rasterio.io import MemoryFile

from core.backends.earthengine import EarthEngine
from core.backends.failures import Kind, classify
from core.connect import make_drive
from core.emulator.batch import MEMORY_MSG, TIMEOUT_MSG
from core.emulator.clock import ManualClock
from core.emulator.pixels import CONCURRENCY_MSG

ee = pytest.importorskip("ee")

PROJECT = "test-project"
BANDS = ["SR_B3", "SR_B4", "SR_B5"]
REGION = [-122.30, 37.70, -122.22, 37.76]  # ~8 x 6 km
SCALE = 30.0
DEG = 30 / 111_319.49  # a 30 m pixel in degrees, as EE (and the emulator's exports) use it


def image() -> Any:
    return (ee.ImageCollection("LANDSAT/LC08/C02/T1_L2").filterDate("2023-06-01", "2023-07-01")
            .median().select(BANDS))


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def direct(emu: Any) -> dict[str, Any]:
    return emu.state()["ee"]["direct"]


def export_tif(emu: Any, crs: str, tmp: Path, name: str) -> Path:
    """The batch export of image() over REGION at SCALE in `crs` (as the worker sends a
    unit: region, scale, crs), downloaded from the emulator's Drive."""
    task = ee.batch.Export.image.toDrive(
        image(), description=name, folder="direct", fileNamePrefix=name,
        region=ee.Geometry.Rectangle(REGION, None, False), scale=SCALE, crs=crs)
    task.start()
    status = wait_until(lambda: (s := task.status())["state"] in ("COMPLETED", "FAILED") and s,
                        f"export {name}")
    assert status["state"] == "COMPLETED", status
    drive = make_drive(emu.url)
    (f,) = drive.ListFile({"q": f"title = '{name}.tif' and trashed = false"}).GetList()
    path = tmp / f"{name}.tif"
    f.GetContentFile(str(path))
    return path


def read(data: bytes) -> tuple[np.ndarray, Any, Any]:
    with MemoryFile(data) as mem, mem.open() as ds:
        return ds.read(), ds.transform, ds.crs


def grid_of(path: Path) -> dict[str, Any]:
    """The export's grid, as compute_pixels takes it."""
    with rasterio.open(path) as ds:
        t = ds.transform
        return {"crs": ds.crs.to_string(), "transform": [t.a, t.b, t.c, t.d, t.e, t.f],
                "width": ds.width, "height": ds.height}


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:32610"])
def test_direct_pixels_are_the_batch_exports_pixels_on_its_grid(emulator_factory, tmp_path,
                                                                crs):
    emu = emulator_factory()
    client = EarthEngine.for_emulator(emu.url, PROJECT)
    path = export_tif(emu, crs, tmp_path, "unit")
    grid = grid_of(path)
    data = client.compute_pixels(image(), **grid)
    with rasterio.open(path) as ds:
        exported, e_transform, e_crs = ds.read(), ds.transform, ds.crs
    pixels, transform, got_crs = read(data)
    # Exactly the requested grid, and the export's pixels bit for bit.
    assert pixels.shape == exported.shape == (3, grid["height"], grid["width"])
    assert transform == e_transform and got_crs == e_crs
    assert pixels.dtype == exported.dtype == np.uint16
    assert np.array_equal(pixels, exported)
    assert np.ptp(exported) > 0  # the world varies over the tile: equal by content, not by luck
    # band_ids picks and orders bands by name.
    picked, _, _ = read(client.compute_pixels(image(), band_ids=["SR_B5", "SR_B3"], **grid))
    assert np.array_equal(picked, exported[[2, 0]])
    # A window of the export's grid (a split quarter, a request under the size limit): the
    # export's pixels of that window.
    t = grid["transform"]
    quarter = {**grid, "width": grid["width"] // 2, "height": grid["height"] // 2,
               "transform": [t[0], 0.0, t[2] + 7 * t[0], 0.0, t[4], t[5] + 5 * t[4]]}
    part, _, _ = read(client.compute_pixels(image(), **quarter))
    h, w = quarter["height"], quarter["width"]
    assert np.array_equal(part, exported[:, 5:5 + h, 7:7 + w])
    state = direct(emu)
    assert state["succeeded"] == 3 and state["failed"] == {}
    assert state["pixel_bands"] == 3 * grid["width"] * grid["height"] + 2 * (
        grid["width"] * grid["height"]) + 3 * w * h


def test_download_url_gives_the_export_pixels(emulator_factory, tmp_path):
    import requests

    emu = emulator_factory()
    EarthEngine.for_emulator(emu.url, PROJECT)
    exported_path = export_tif(emu, "EPSG:4326", tmp_path, "unit")
    with rasterio.open(exported_path) as ds:
        exported = ds.read()
    params = {"region": ee.Geometry.Rectangle(REGION, None, False), "scale": SCALE,
              "crs": "EPSG:4326"}
    url = image().getDownloadURL({**params, "format": "GEO_TIFF"})
    answer = requests.get(url, timeout=60)
    assert answer.status_code == 200
    pixels, _, _ = read(answer.content)
    assert np.array_equal(pixels, exported)
    # The default of getDownloadURL: one GeoTIFF per band in a zip, named name.band.tif.
    zipped = requests.get(image().getDownloadURL({**params, "name": "tile"}), timeout=60)
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as zf:
        assert sorted(zf.namelist()) == [f"tile.{b}.tif" for b in BANDS]
        nir, _, _ = read(zf.read("tile.SR_B5.tif"))
    assert np.array_equal(nir[0], exported[2])
    # Over getDownloadURL's 10,000 pixels a side: refused when the id is asked for.
    with pytest.raises(ee.EEException, match=r"Pixel grid dimensions \(\d+x\d+\) must be "
                                             r"less than or equal to 10000\."):
        image().getDownloadURL({"region": ee.Geometry.Rectangle([-123, 37, -121, 38], None,
                                                                False), "scale": 10})
    assert direct(emu)["succeeded"] == 2


def grid(width: int, height: int, **extra: Any) -> dict[str, Any]:
    return {"dimensions": {"width": width, "height": height},
            "affineTransform": {"scaleX": DEG, "shearX": 0, "translateX": -4000 * DEG,
                                "shearY": 0, "scaleY": -DEG, "translateY": 1300 * DEG},
            "crsCode": "EPSG:4326", **extra}


def test_requests_over_ees_limits_or_with_a_bad_grid_are_refused_with_ees_texts(ee_emulator):
    emu = ee_emulator

    def refused(params: dict[str, Any]) -> str:
        before = emu.state()["requests"].get("POST ee image.computePixels", 0)
        with pytest.raises(ee.EEException) as err:
            ee.data.computePixels({"expression": image(), "fileFormat": "GEO_TIFF", **params})
        # A 400: answered once, never retried by the client.
        assert emu.state()["requests"]["POST ee image.computePixels"] == before + 1
        return str(err.value)

    assert refused({"grid": grid(32_769, 10)}) == (
        "Pixel grid dimensions (32769x10) must be less than or equal to 32768.")
    # 3 uint16 bands of 2,900 x 2,900 pixels: 50,460,000 bytes, just over 48 MB.
    assert refused({"grid": grid(2900, 2900)}) == (
        "Total request size (50460000 bytes) must be less than or equal to 50331648 bytes.")
    assert "unbounded image" in refused({})
    assert refused({"grid": {**grid(10, 10), "origin": [0, 0]}}) == (
        "Invalid JSON payload received. Unknown name \"origin\" at 'grid': Cannot find field.")
    assert refused({"grid": grid(10, 10, crsCode=None) | {"crsCode": "EPSG:0"}}).startswith(
        "Invalid CRS")
    no_transform = grid(10, 10)
    del no_transform["affineTransform"]
    assert "grid.affineTransform is required" in refused({"grid": no_transform})
    assert refused({"grid": {**grid(10, 10), "dimensions": {"width": "ten", "height": 10}}}) == (
        "Invalid value at 'grid.dimensions.width' (TYPE_INT32), 'ten'")
    assert refused({"grid": grid(10, 10), "bandIds": ["SR_B9"]}).startswith(
        "Image.select: Band pattern 'SR_B9' did not match any bands.")
    state = direct(emu)
    assert state["rejected"] == {"400": 8} and state["requests"] == 0
    # Right under the limit is served: 3 bands of 2,896 x 2,896 uint16 are 50,320,896 bytes.
    data = ee.data.computePixels({"expression": image(), "fileFormat": "GEO_TIFF",
                                  "grid": grid(2896, 2896)})
    assert read(data)[0].shape == (3, 2896, 2896)


def manual(emu: Any) -> ManualClock:
    """Direct requests timed by a clock the test moves (nothing finishes until it does)."""
    clock = ManualClock()
    emu.ee.direct.clock = clock
    return clock


def test_forty_requests_from_threads_run_at_once_and_a_41st_gets_429(emulator_factory,
                                                                     caplog):
    emu = emulator_factory()
    clock = manual(emu)
    client = EarthEngine.for_emulator(emu.url, PROJECT)
    args = {"crs": "EPSG:4326", "transform": [DEG, 0, 0, 0, -DEG, 0], "width": 16,
            "height": 16, "band_ids": ["SR_B4"]}
    img = image()
    results: list[bytes | BaseException] = []

    def one() -> None:
        try:
            results.append(client.compute_pixels(img, **args))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(40)]
    for t in threads:
        t.start()
    # All 40 in flight at once: the adapter does not hold its lock while EE computes.
    wait_until(lambda: direct(emu)["in_flight"] == 40, "40 requests in flight")
    with pytest.raises(HttpError) as err:
        client.compute_pixels(img, **args)
    assert err.value.resp.status == 429 and err.value.reason == CONCURRENCY_MSG
    assert classify(err.value).kind is Kind.TRANSIENT  # retried with backoff, not failed
    clock.advance(60)
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 40 and all(isinstance(r, bytes) for r in results), results[:3]
    assert all(read(r)[0].shape == (1, 16, 16) for r in results if isinstance(r, bytes))
    state = direct(emu)
    assert state["peak_concurrency"] == 40 and state["in_flight"] == 0
    assert state["succeeded"] == 40 and state["rejected"] == {"429": 1}
    # Every connection kept for the next request (a pool of 10 would throw 30 away, loudly).
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


# A projected grid: model pixels are width x height (a geographic one counts ground area).
UTM = {"crs": "EPSG:32610", "transform": [30.0, 0, 500_010.0, 0, -30.0, 4_200_000.0]}


def test_time_is_paced_per_pixel_on_the_simulated_clock_and_eecu_charged(emulator_factory):
    # 1,000 pixel-bands a simulated second, 2 s of latency: 64 x 64 x 1 band is 4.096 s of
    # computing, 6.096 s until the answer.
    emu = emulator_factory(direct_pixel_rate=1000.0, direct_latency_seconds=2.0)
    client = EarthEngine.for_emulator(emu.url, PROJECT)
    start = emu.ee.clock.now()
    client.compute_pixels(image(), width=64, height=64, band_ids=["SR_B4"],
                          workload_tag="job-a", **UTM)
    assert emu.ee.clock.now() - start >= 6.096  # never answered before its time
    assert direct(emu)["eecu_seconds"] == pytest.approx(4.096, abs=1e-3)
    # Four times the pixels and three bands: twelve times the work and the charge.
    start = emu.ee.clock.now()
    client.compute_pixels(image(), width=128, height=128, band_ids=BANDS,
                          workload_tag="job-b", **UTM)
    assert emu.ee.clock.now() - start >= 2 + 12 * 4.096
    state = direct(emu)
    assert state["eecu_by_tag"] == {"job-a": pytest.approx(4.096, abs=1e-3),
                                    "job-b": pytest.approx(12 * 4.096, abs=1e-3)}
    assert state["eecu_seconds"] == pytest.approx(13 * 4.096, abs=1e-3)


def test_memory_and_time_limits_fail_with_ees_messages_and_cost_eecu(emulator_factory):
    # 100 pixel-bands a second, 2 s of latency, 30 s to answer, 5,000 pixels of memory.
    emu = emulator_factory(direct_memory_limit_pixels=5_000, direct_pixel_rate=100.0,
                           direct_timeout_seconds=30.0)
    client = EarthEngine.for_emulator(emu.url, PROJECT)
    # 100 x 100 pixels: over the memory, failing a quarter into its 100 s of work.
    with pytest.raises(HttpError) as err:
        client.compute_pixels(image(), width=100, height=100, band_ids=["SR_B4"], **UTM)
    assert err.value.resp.status == 400 and err.value.reason == MEMORY_MSG
    assert classify(err.value).kind is Kind.SPLIT
    # 50 x 50 x 3 bands fit the memory but take 75 s: cut at the interactive limit.
    with pytest.raises(HttpError) as err:
        client.compute_pixels(image(), width=50, height=50, band_ids=BANDS, **UTM)
    assert err.value.resp.status == 400 and err.value.reason == TIMEOUT_MSG
    assert classify(err.value).kind is Kind.SPLIT
    # Within both (4 s of work): served.
    assert client.compute_pixels(image(), width=20, height=20, band_ids=["SR_B4"], **UTM)
    state = direct(emu)
    assert state["failed"] == {MEMORY_MSG: 1, TIMEOUT_MSG: 1} and state["succeeded"] == 1
    # Charged what they computed: a quarter of 100 s, 30 s less the latency, and 4 s.
    assert state["eecu_seconds"] == pytest.approx(25.0 + 28.0 + 4.0, abs=1e-3)


def test_pixels_go_to_their_own_endpoint_when_told(emulator_factory):
    # As the high-volume endpoint for Google: exports on one URL, computePixels on another.
    main, high_volume = emulator_factory(), emulator_factory()
    client = EarthEngine.for_emulator(main.url, PROJECT, pixels_url=high_volume.url)
    client.compute_pixels(image(), crs="EPSG:4326", transform=[DEG, 0, 0, 0, -DEG, 0],
                          width=8, height=8)
    assert direct(high_volume)["succeeded"] == 1
    assert direct(main)["requests"] == 0
    assert client.ping() == 0  # everything else stays on the main URL
    assert main.state()["requests"].get("GET ee operations.list", 0) >= 1


def test_a_tile_heavy_in_content_is_heavy_by_either_route(emulator_factory):
    # Tiles that differ in content (size_spread): the ones over the memory limit as batch
    # exports are exactly the ones over it as direct requests, so a unit that fails for memory
    # one way is known to fail the other (the auto route's fallback rests on it).
    scale, side = 500.0, 0.5
    limit = 3 * 112 * 112  # 3x a tile's pixels
    emu = emulator_factory(size_spread=10.0, size_cell=side, memory_limit_pixels=limit,
                           direct_memory_limit_pixels=limit, slots=8)
    client = EarthEngine.for_emulator(emu.url, PROJECT)
    img = image().select(["SR_B4"])
    step = scale / 111_319.49
    batch, direct_ = {}, {}
    tasks = {}
    for i in range(8):
        box = [i * side, 0.0, (i + 1) * side, side]
        tasks[i] = ee.batch.Export.image.toDrive(
            img, description=f"t{i}", folder="heavy", fileNamePrefix=f"t{i}",
            region=ee.Geometry.Rectangle(box, None, False), scale=scale)
        tasks[i].start()
        # The grid EE gives the export: the box snapped outward onto the CRS-origin lattice.
        c0, c1 = np.floor(box[0] / step + 1e-9), np.ceil(box[2] / step - 1e-9)
        r0, r1 = np.floor(-box[3] / step + 1e-9), np.ceil(-box[1] / step - 1e-9)
        try:
            client.compute_pixels(img, crs="EPSG:4326", width=int(c1 - c0),
                                  height=int(r1 - r0),
                                  transform=[step, 0, c0 * step, 0, -step, -r0 * step])
            direct_[i] = "ok"
        except HttpError as exc:
            direct_[i] = exc.reason
    for i, task in tasks.items():
        status = wait_until(lambda t=task: (s := t.status())["state"] in (
            "COMPLETED", "FAILED") and s, f"export t{i}")
        batch[i] = "ok" if status["state"] == "COMPLETED" else status["error_message"]
    assert direct_ == batch
    assert set(batch.values()) == {"ok", MEMORY_MSG}  # both kinds of tile among them
