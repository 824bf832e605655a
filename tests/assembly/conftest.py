"""Assembly tests run real jobs on the emulator (the real worker, earthengine-api and pydrive2
over HTTP), then read the products back with rasterio and pandas and compare them with the
verified files themselves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from core.session import create_session
from core.store import Store
from tests.engine.conftest import emulator  # noqa: F401  (a fixture, for these tests too)
from tests.jobs import job_text

ROOT = Path(__file__).parents[2]
# 1° tiles at 2 km, aligned to the pixel grid: 56 × 56 pixels each (so a split part is 28 × 28),
# one column of ten rows from 40°N to 50°N. The emulator's memory limit lies between what a
# northern and a southern tile needs (a degree holds fewer metres further north), so the
# southern tiles split.
ALIGNED = {"region": {"bbox": [0.2, 40.0, 0.8, 50.0]}, "grid": {"size": 1.0, "align": True},
           "export": {"folder": "asm", "scale": 2000}}
MEMORY_LIMIT = 2200  # pixels: tiles south of about 45°N exceed it


def make_job(tmp_path: Path, url: str, *, name: str = "asm", **sections: Any) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    job = tmp_path / f"{name}.toml"
    parts = {**ALIGNED, **sections}
    parts.setdefault("limits", {"max_tasks": 8, "poll_seconds": 0.2, "download_workers": 3})
    job.write_text(job_text(name, output_dir="out", emulator=url, **parts))
    return job


def make_session(job: Path) -> Store:
    store, _ = create_session(job)
    return store


def eebatch(*args: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "tui", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ}, timeout=300)


def verified_files(store: Store) -> list[Path]:
    return sorted(Path(r["local_path"]) for r in store.product_files())


def assert_mosaic_is_its_files(vrt: Path, files: list[Path], *,
                               full: bool = True) -> dict[str, Any]:
    """The VRT covers every file with no overlap (and, `full`, no gap: each of its pixels
    comes from exactly one file), and reads back each file's own pixels where it lies."""
    with rasterio.open(vrt) as mosaic:
        t = mosaic.transform
        count = np.zeros((mosaic.height, mosaic.width), dtype=np.int32)
        for path in files:
            with rasterio.open(path) as tile:
                col = (tile.transform.c - t.c) / t.a
                row = (tile.transform.f - t.f) / t.e
                assert abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6, path
                window = Window(round(col), round(row), tile.width, tile.height)
                count[window.toslices()] += 1
                assert np.array_equal(mosaic.read(window=window), tile.read()), path.name
        assert count.max() == 1, "an overlap"
        assert count.min() == 1 or not full, "a gap"
        return {"covered": count.astype(bool), "width": mosaic.width,
                "height": mosaic.height, "bounds": mosaic.bounds,
                "descriptions": mosaic.descriptions, "count": mosaic.count}
