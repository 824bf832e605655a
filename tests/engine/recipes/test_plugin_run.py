"""A recipe added as one module runs end to end: the worker builds each unit with the recipe's
own build (core/recipes/build.py holds no list of recipes), EE exports it, and the GeoTIFF read
back holds the bands and bytes per pixel the recipe said it would."""

from __future__ import annotations

from pathlib import Path

import tifffile

from core.emulator.app import Emulator
from core.engine.runner import run_session
from core.outputs.bands import read_band_names
from core.recipes import RECIPES
from core.session import create_session
from tests.engine.conftest import assert_all_done_and_verified
from tests.engine.recipes.plugin import plugged_in
from tests.jobs import job_text


def test_a_plugged_in_recipe_exports_its_image(tmp_path: Path, emulator: Emulator) -> None:
    job = tmp_path / "ones.toml"
    job.write_text(job_text("ones", output_dir="out", region={"bbox": [0, 0, 1, 0.5]},
                            grid={"size": 0.5},
                            recipe={"name": "ones", "value": 2.5, "bands": 3},
                            export={"folder": "ones", "scale": 2000},
                            limits={"poll_seconds": 0.2}, emulator=emulator.url))
    with plugged_in(tmp_path / "plugins"):
        bands = RECIPES["ones"].bands({"value": 2.5, "bands": 3, "prefix": "one"})
        store, plan = create_session(job)
        assert plan.units == 2 and plan.bytes_per_pixel == 12
        assert run_session(store.path).ok
    assert_all_done_and_verified(store, emulator.url)
    paths = [row[0] for row in store.conn.execute("SELECT local_path FROM files")]
    assert len(paths) == 2
    for path in paths:
        with tifffile.TiffFile(path) as tif:
            (series,) = tif.series
            assert series.shape[0] == len(bands) == 3
            assert series.dtype.kind == "f" and series.dtype.itemsize == bands[0][1] == 4
        assert read_band_names(Path(path)) == ["one0", "one1", "one2"]  # named by the recipe
