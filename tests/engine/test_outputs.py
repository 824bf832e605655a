"""Outputs a researcher can use without a script: a folder per period and a manifest of every
verified file, written as the job runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import tifffile

from core.emulator.app import Emulator
from core.engine.runner import run_session
from core.outputs.bands import read_band_names
from tests.engine.conftest import make_session, md5

MONTHLY = '\n[time]\nstart = 2023-06-01\nend = 2023-08-01\nstep = "1 month"\n'


def test_files_land_in_a_folder_per_period_with_a_manifest(tmp_path: Path,
                                                           emulator: Emulator) -> None:
    store = make_session(tmp_path, emulator.url, bbox="[0, 0, 1, 0.5]", extra=MONTHLY)
    assert run_session(store.path).ok
    out = tmp_path / "out"
    files = store.conn.execute("SELECT * FROM files").fetchall()
    assert len(files) == 4  # 2 tiles x 2 months
    for f in files:
        period = store.unit(f["unit"])["period"]
        assert Path(f["local_path"]) == out / period / f["title"]
    assert sorted(p.name for p in out.iterdir()) == ["20230601", "20230701", "manifest.csv"]

    manifest = pd.read_csv(out / "manifest.csv", dtype={"period": str})
    assert len(manifest) == 4
    for row in manifest.itertuples():
        local = out / row.file
        assert md5(local) == row.md5 and local.stat().st_size == row.size
        unit = store.unit(row.unit)
        assert (row.period, row.west, row.north) == (unit["period"], unit["west"], unit["north"])
        assert row.bands == "SR_B4 SR_B3 SR_B2" and row.crs == "EPSG:4326"


def test_period_folders_can_be_turned_off(tmp_path: Path, emulator: Emulator) -> None:
    store = make_session(tmp_path, emulator.url, bbox="[0, 0, 0.5, 0.5]",
                         extra=MONTHLY + "period_folders = false\n")
    assert run_session(store.path).ok
    out = tmp_path / "out"
    titles = [f["title"] for f in store.conn.execute("SELECT title FROM files")]
    periods = {u["period"] for u in store.units()}
    mosaics = [f"mosaic_{period}.{ext}" for period in periods for ext in ("vrt", "png")]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*titles, *(t + ".aux.xml" for t in titles), "manifest.csv", *mosaics])


def test_each_geotiff_gets_its_band_names(tmp_path: Path, emulator: Emulator) -> None:
    """Beside each GeoTIFF, as GDAL reads band descriptions; the file itself stays what EE
    wrote (its MD5 is Drive's)."""
    store = make_session(tmp_path, emulator.url, bbox="[0, 0, 0.5, 0.5]",
                         recipe='indices = ["NDVI"]')
    assert run_session(store.path).ok
    (f,) = store.conn.execute("SELECT * FROM files").fetchall()
    tif = Path(f["local_path"])
    assert md5(tif) == f["md5"]
    with tifffile.TiffFile(tif) as tiff:
        bands = tiff.series[0].shape[0]
    assert read_band_names(tif) == ["SR_B4", "SR_B3", "SR_B2", "NDVI"][:bands] and bands == 4


def test_the_end_of_a_job_says_where_the_files_are_and_what_they_cost(
        tmp_path: Path, emulator: Emulator) -> None:
    store = make_session(tmp_path, emulator.url, bbox="[0, 0, 1, 0.5]")
    assert run_session(store.path).ok
    (line,) = [e["message"] for e in store.events(limit=10_000)
               if e["message"].startswith("finished:")]
    assert f"2 files, 787 kB in {tmp_path / 'out'}" in line and "EECU-hours" in line
    assert run_session(store.path).ok  # run again when finished: said once, not again
    assert sum(e["message"].startswith("finished:") for e in store.events(limit=10_000)) == 1
