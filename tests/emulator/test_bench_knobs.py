"""The emulator's knobs for realistic jobs (issue 15, part 2), through the real clients:
tiles that differ in content (size_spread: work, memory and bytes scale together, the same
tile always alike, its quarters too), Drive download bandwidth in simulated seconds
(download_rate, download_total_rate), and Drive's peak use in GET /_emulator/state."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import tifffile

from core.connect import init_ee, make_drive
from core.emulator import faults
from core.emulator.batch import MEMORY_MSG

ee = pytest.importorskip("ee")

PROJECT = "test-project"
FOLDER_MIME = "application/vnd.google-apps.folder"
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
SCALE = 500  # m: a 0.5° tile is 112 x 112 pixels
PIXELS = 112 * 112
TILES = [[x * 0.5, 0.0, x * 0.5 + 0.5, 0.5] for x in range(8)]  # one content cell each
OVERHEAD = 2.0
ROUNDING = 1e-9  # of the pacing's float arithmetic
RATE = 1000.0  # pixel-bands per simulated second: a tile's work is ~12 s x its content


def wait_status(task: Any, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = task.status()
        if status["state"] in TERMINAL:
            return status
        time.sleep(0.02)
    raise AssertionError(f"task {task.id} did not finish: {task.status()}")


def export(emu: Any, boxes: dict[str, list[float]]) -> dict[str, tuple[dict, dict]]:
    """Export each tile (name -> box) through earthengine-api, all at once; name -> (its
    status, its operation) once every one has ended."""
    init_ee(emu.url, PROJECT)
    image = ee.ImageCollection("LANDSAT/LC08/C02/T1_L2").filterDate(
        "2023-06-01", "2023-07-01").median().select(["SR_B4"])
    tasks = {}
    for name, box in boxes.items():
        tasks[name] = ee.batch.Export.image.toDrive(
            image, description=name, folder="knobs", fileNamePrefix=name,
            region=ee.Geometry.Rectangle(box, None, False), scale=SCALE, maxPixels=1e13)
        tasks[name].start()
    out = {}
    for name, task in tasks.items():
        status = wait_status(task)
        out[name] = (status, ee.data.getOperation(status["name"]))
    return out


def seconds(op: dict[str, Any]) -> float:
    """A finished operation's run time in simulated seconds."""
    from datetime import datetime

    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    meta = op["metadata"]
    start = datetime.strptime(meta["startTime"], fmt)
    return (datetime.strptime(meta["endTime"], fmt) - start).total_seconds()


def fetch(emu: Any, name: str, dest: Path) -> Path:
    drive = make_drive(emu.url)
    q = f"title = '{name}.tif' and trashed = false"
    (f,) = drive.ListFile({"q": q}).GetList()
    path = dest / f"{emu.server.port}_{name}.tif"
    f.GetContentFile(str(path))
    assert hashlib.md5(path.read_bytes()).hexdigest() == f["md5Checksum"]
    return path


def tiff_bytes(path: Path) -> int:
    """Where the TIFF's own data ends (tifffile writes the image data last)."""
    with tifffile.TiffFile(path) as tf:
        return max(off + n for page in tf.pages
                   for off, n in zip(page.dataoffsets, page.databytecounts, strict=True))


def test_content_scales_work_memory_and_bytes_of_a_tile_alike(emulator_factory, tmp_path):
    plain = emulator_factory(task_overhead_seconds=OVERHEAD, pixel_rate=RATE, slots=8)
    # Work above 3x a tile's pixels is over the memory limit.
    rich = emulator_factory(task_overhead_seconds=OVERHEAD, pixel_rate=RATE, slots=8,
                            size_spread=10.0, size_cell=0.5, memory_limit_pixels=3 * PIXELS)
    names = {f"t{i}": box for i, box in enumerate(TILES)}
    plain_runs, rich_runs = export(plain, names), export(rich, names)
    factors, heavy = {}, []
    for i in range(len(TILES)):
        (base_status, base_op), (status, op) = plain_runs[f"t{i}"], rich_runs[f"t{i}"]
        assert base_status["state"] == "COMPLETED"
        if status["state"] == "FAILED":
            # Heavy in content, not in pixels: EE refuses it for memory.
            assert status["error_message"] == MEMORY_MSG
            heavy.append(i)
            continue
        base, padded = fetch(plain, f"t{i}", tmp_path), fetch(rich, f"t{i}", tmp_path)
        work = (seconds(op) - OVERHEAD) / (seconds(base_op) - OVERHEAD)
        factors[i] = work
        # The file grew by the factor the run's work did (pixels rounded: ~1 %).
        assert padded.stat().st_size / tiff_bytes(padded) == pytest.approx(work, rel=0.02)
        # Same pixels, same georeference: only bytes after the TIFF's own data were added.
        with tifffile.TiffFile(base) as a, tifffile.TiffFile(padded) as b:
            assert (a.asarray() == b.asarray()).all()
            assert a.pages[0].tags[33922].value == b.pages[0].tags[33922].value
    assert heavy and factors, (heavy, factors)
    assert all(1.0 <= f <= 3.05 for f in factors.values())
    assert max(factors.values()) / min(factors.values()) > 1.3  # tiles differ
    # The same tile again: the same content, whatever its name or order.
    light = min(factors)
    export(rich, {"again": TILES[light]})
    tile_size = fetch(rich, f"t{light}", tmp_path).stat().st_size
    assert fetch(rich, "again", tmp_path).stat().st_size == tile_size
    # A quarter holds its tile's content and a quarter of its pixels: it weighs a quarter
    # (and a TIFF header), and the quarter of a heavy tile is under the memory limit, its run
    # as heavy.
    quarters = {"q_light": quarter(TILES[light]), "q_heavy": quarter(TILES[heavy[0]])}
    plain_q, rich_q = export(plain, quarters), export(rich, quarters)
    assert rich_q["q_heavy"][0]["state"] == rich_q["q_light"][0]["state"] == "COMPLETED"
    assert fetch(rich, "q_light", tmp_path).stat().st_size == pytest.approx(
        tile_size / 4, rel=0.1)
    work = (seconds(rich_q["q_heavy"][1]) - OVERHEAD) / (
        seconds(plain_q["q_heavy"][1]) - OVERHEAD)
    assert work > 3.0


def quarter(box: list[float]) -> list[float]:
    w, s, e, n = box
    return [w, s, (w + e) / 2, (s + n) / 2]


class FakeTime:
    """Stands in for core.emulator.faults' `time`: every pacing wait moves this clock on and
    takes no wall time, so the test asserts what the emulator waited, not how long it took."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0.0

    def monotonic(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def upload(emu: Any, tmp_path: Path, name: str, size: int) -> dict[str, Any]:
    drive = make_drive(emu.url)
    src = tmp_path / name
    src.write_bytes(bytes(range(256)) * (size // 256))
    f = drive.CreateFile({"title": name})
    f.SetContentFile(str(src))
    f.Upload()
    return f


def test_download_bandwidth_is_simulated_per_download_and_in_total(
        emulator_factory, tmp_path, monkeypatch):
    clock = FakeTime()
    monkeypatch.setattr(faults, "time", clock)  # before the emulator makes its total bucket
    size = 256 * 1024
    speed = 100.0
    emu = emulator_factory(speed=speed, download_rate=1000.0)
    f = upload(emu, tmp_path, "a.bin", size)
    drive = make_drive(emu.url)
    before = clock.now
    drive.ListFile({"q": "trashed = false"}).GetList()
    assert clock.now == before  # answers other than downloads are not paced
    drive.CreateFile({"id": f["id"]}).GetContentFile(str(tmp_path / "a.out"))
    # 1,000 simulated bytes a second at 100x: 100 kB a wall second, never ahead of it by more
    # than the piece being sent.
    paced = clock.now - before
    assert paced >= (size - 16 * 1024) / (1000.0 * speed) - ROUNDING
    assert (tmp_path / "a.out").read_bytes() == (tmp_path / "a.bin").read_bytes()

    shared = emulator_factory(speed=speed, download_total_rate=2000.0)
    ids = [upload(shared, tmp_path, f"s{i}.bin", size)["id"] for i in range(2)]
    before = clock.now
    drive = make_drive(shared.url)
    threads = [threading.Thread(target=lambda i=i: drive.CreateFile({"id": i}).GetContentFile(
        str(tmp_path / f"{i}.out"))) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # Two downloads at once drew on one allowance of 2,000 simulated bytes a second.
    bucket = shared.drive.download_total
    assert bucket is not None and bucket.rate == 2000.0 * speed
    assert clock.now - before >= (2 * size - bucket.burst) / bucket.rate - ROUNDING
    assert all((tmp_path / f"{i}.out").stat().st_size == size for i in ids)

    free = emulator_factory(speed=speed)
    g = upload(free, tmp_path, "b.bin", size)
    before = clock.now
    make_drive(free.url).CreateFile({"id": g["id"]}).GetContentFile(str(tmp_path / "b.out"))
    assert clock.now == before  # no knob, no pacing


def test_state_reports_drive_peak_use(emulator_factory, tmp_path):
    emu = emulator_factory()
    a = upload(emu, tmp_path, "a.bin", 40_960)
    upload(emu, tmp_path, "b.bin", 20_480)
    a.Delete()
    upload(emu, tmp_path, "c.bin", 10_240)
    with urllib.request.urlopen(emu.url + "/_emulator/state", timeout=10) as r:
        drive = json.load(r)["drive"]
    assert drive["quota"]["used"] == 30_720
    assert drive["peak_used"] == 61_440
