"""The `python` recipe: the user's own module:function, imported from a path beside the job."""

from __future__ import annotations

import shutil
from pathlib import Path

import tifffile

from core.emulator.app import Emulator
from core.engine.runner import run_session
from core.session import create_session
from tests.engine.conftest import assert_all_done_and_verified
from tests.jobs import job_text

HERE = Path(__file__).parent


def _job(tmp_path: Path, url: str, function: str) -> Path:
    shutil.copy(HERE / "recipes" / "my_recipes.py", tmp_path / "my_recipes.py")
    job = tmp_path / "py.toml"
    job.write_text(job_text("py", output_dir="out", region={"bbox": [0, 0, 1, 0.5]},
                            grid={"size": 0.5},
                            recipe={"name": "python", "function": function,
                                    "args": {"cloud": 40}},
                            export={"folder": "py", "scale": 2000},
                            limits={"poll_seconds": 0.2}, emulator=url))
    return job


def test_own_function_exports_its_image(tmp_path: Path, emulator: Emulator) -> None:
    store, _ = create_session(_job(tmp_path, emulator.url, "my_recipes:ndvi"))
    assert run_session(store.path).ok
    assert_all_done_and_verified(store, emulator.url)
    path = store.conn.execute("SELECT local_path FROM files LIMIT 1").fetchone()[0]
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].dtype.kind == "f"  # one float band: the function's NDVI


def test_a_function_that_returns_no_image_fails_clearly(tmp_path: Path,
                                                        emulator: Emulator) -> None:
    store, _ = create_session(_job(tmp_path, emulator.url, "my_recipes:not_an_image"))
    summary = run_session(store.path)
    assert len(summary.failed) == 2
    assert all("returned int, not an ee.Image" in e for _, e in summary.failed), summary.failed
    assert emulator.state()["requests"].get("POST ee image.export", 0) == 0


def test_a_function_that_raises_fails_with_its_error(tmp_path: Path, emulator: Emulator) -> None:
    job = _job(tmp_path, emulator.url, "my_recipes:ndvi")
    job.write_text(job.read_text().replace("cloud = 40", "clouds = 40"))
    store, _ = create_session(job)
    summary = run_session(store.path)
    assert summary.failed and all(
        "my_recipes:ndvi raised TypeError" in e and "clouds" in e for _, e in summary.failed)
