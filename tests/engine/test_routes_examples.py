"""The examples by the direct and auto routes give the outputs the batch route gives: the same
pixels for every image unit, the same rows for every table unit, and the same products (the
mosaic, the merged table). The real worker and earthengine-api against one emulator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio

from core.emulator.app import Emulator
from core.engine.runner import run_session
from core.session import create_session
from core.store import Store
from tests.engine.conftest import drive_files, md5
from tests.engine.recipes.test_stats_sample_classify import copy_example


def run(name: str, folder: Path, url: str, route: str) -> Store:
    """The example run to the end by `route` in `folder`."""
    folder.mkdir()
    job = copy_example(name, folder, url)
    text = (job.read_text().replace("poll_seconds = 2", "poll_seconds = 0.2")
            .replace("max_tasks = 8", "max_tasks = 16"))
    text = text.replace("[export]\n", f'[export]\nroute = "{route}"\n', 1)
    job.write_text(text.replace('folder = "', f'folder = "{route}-', 1))
    store, _ = create_session(job)
    summary = run_session(store.path)
    assert summary.ok, summary.failed[:3]
    for f in store.conn.execute("SELECT * FROM files"):
        assert md5(Path(f["local_path"])) == f["md5"], f["local_path"]
    return store


def outputs(store: Store) -> dict[str, Path]:
    """Each verified file by its name without the job's prefix (the same in both runs)."""
    rows = store.conn.execute("SELECT unit, title, local_path FROM files").fetchall()
    return {r["title"][r["title"].index(r["unit"]):]: Path(r["local_path"]) for r in rows}


def same_file(got: Path, want: Path) -> None:
    if got.suffix in (".tif", ".vrt"):
        with rasterio.open(got) as g, rasterio.open(want) as w:
            assert (g.transform, g.crs, g.count) == (w.transform, w.crs, w.count), got.name
            assert np.array_equal(g.read(), w.read(), equal_nan=True), got.name
    else:
        g, w = pd.read_csv(got), pd.read_csv(want)
        pd.testing.assert_frame_equal(g, w, obj=got.name)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "route"), [
    ("batches", "direct"),  # images of [batches]
    ("landcover", "auto"),  # the classifier trained once in EE, then every tile direct
    ("field-points", "direct"),  # tables of sampled points
])
def test_an_example_by_another_route_gives_the_batch_routes_outputs(
        name: str, route: str, tmp_path: Path, emulator: Emulator) -> None:
    batch = run(name, tmp_path / "batch", emulator.url, "batch")
    other = run(name, tmp_path / route, emulator.url, route)
    assert {r[0] for r in other.conn.execute("SELECT route FROM units")} == {"direct"}
    assert {r[0] for r in other.conn.execute("SELECT state FROM files")} == {"local"}
    want, got = outputs(batch), outputs(other)
    assert sorted(got) == sorted(want) and got
    for key, path in got.items():
        same_file(path, want[key])
    assert drive_files(emulator.url) == []
    # The products assembled from them agree too (mosaics, the merged table).
    products = [p for p in (tmp_path / "batch" / "output").rglob("*")
                if p.name == "table.csv" or p.suffix == ".vrt"]
    assert products
    for product in products:
        same_file(tmp_path / route / product.relative_to(tmp_path / "batch"), product)
