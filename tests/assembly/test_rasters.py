"""A period's mosaic: a VRT over every verified tile and split part, seamless on an aligned
grid, its quicklook, a COG on request, the same bytes when assembled again."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from core.assembly.products import assemble_session
from core.assembly.rasters import quicklook_size
from core.emulator.app import Emulator
from core.engine.runner import run_session
from core.session import load_session_spec
from tests.assembly.conftest import (
    MEMORY_LIMIT,
    ROOT,
    assert_mosaic_is_its_files,
    eebatch,
    make_job,
    make_session,
    verified_files,
)
from tests.engine.conftest import emulator_with

MONTHS = {"start": "2023-06-01", "end": "2023-08-01", "step": "1 month"}


@pytest.fixture(scope="module")
def split_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One job of two months on an aligned grid whose southern tiles split, run to its end;
    (session file, output dir)."""
    tmp = tmp_path_factory.mktemp("split-run")
    home = tmp / "home"
    mp = pytest.MonkeyPatch()
    mp.setenv("EEBATCH_HOME", str(home))
    try:
        with emulator_with(memory_limit_pixels=MEMORY_LIMIT) as emu:
            store = make_session(make_job(tmp, emu.url, time=MONTHS))
            assert run_session(store.path).ok
            path = store.path
            store.close()
    finally:
        mp.undo()
    return path, tmp / "out"


@pytest.fixture
def split_store(split_run: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from core.store import Store

    path, _ = split_run
    monkeypatch.setenv("EEBATCH_HOME", str(path.parents[2]))
    store = Store(path)
    yield store
    store.close()


def test_each_period_gets_a_seamless_mosaic_of_every_tile_and_split_part(split_store) -> None:  # type: ignore[no-untyped-def]
    store = split_store
    out = load_session_spec(store).output_dir
    for period in ("20230601", "20230701"):
        files = [f for f in verified_files(store) if f.parent.name == period]
        tiles = {r["tile"] for r in store.product_files([period])}
        assert any("." in t for t in tiles) and any("." not in t for t in tiles), tiles
        vrt = out / period / "mosaic.vrt"
        got = assert_mosaic_is_its_files(vrt, files)
        # The union of the period's tiles, as planned: the mosaic's extent, and every pixel.
        units = [u for u in store.units() if u["period"] == period and u["depth"] == 0]
        west, south = min(u["west"] for u in units), min(u["south"] for u in units)
        east, north = max(u["east"] for u in units), max(u["north"] for u in units)
        b = got["bounds"]
        assert np.allclose([b.left, b.bottom, b.right, b.top], [west, south, east, north],
                           atol=1e-9)
        pixels = 0
        for f in files:
            with rasterio.open(f) as tile:
                pixels += tile.width * tile.height
        assert pixels == got["width"] * got["height"]
        assert got["descriptions"] == ("SR_B4", "SR_B3", "SR_B2")
        # Sources are named relative to the VRT: the folder can move.
        assert f'relativeToVRT="1">{files[0].name}<' in vrt.read_text()


def test_the_quicklook_decodes_at_its_size(split_store) -> None:  # type: ignore[no-untyped-def]
    out = load_session_spec(split_store).output_dir
    with rasterio.open(out / "20230601" / "mosaic.vrt") as mosaic:
        size = quicklook_size(mosaic.width, mosaic.height)
    assert 256 <= max(size) <= 1024
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(out / "20230601" / "mosaic.png") as png:
            assert (png.width, png.height) == size and png.count == 3  # RGB: no empty corner
            rgb = png.read()
    assert rgb.dtype == np.uint8 and rgb.min() == 0 and rgb.max() == 255  # stretched


def test_assembling_again_gives_the_same_bytes_and_a_cog(split_store) -> None:  # type: ignore[no-untyped-def]
    store = split_store
    folder = load_session_spec(store).output_dir / "20230601"
    before = {n: (folder / n).read_bytes() for n in ("mosaic.vrt", "mosaic.png")}
    result = eebatch("assemble", store.id, "--cog")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("assembled mosaic of 2023") for line in lines)
    assert f"→ {folder / 'mosaic.vrt'}" in lines[0] and "COG mosaic.tif" in lines[0]
    assert {n: (folder / n).read_bytes() for n in before} == before
    with rasterio.open(folder / "mosaic.tif") as cog:
        assert cog.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert cog.overviews(1) and cog.descriptions == ("SR_B4", "SR_B3", "SR_B2")
        with rasterio.open(folder / "mosaic.vrt") as vrt:
            assert cog.shape == vrt.shape and cog.transform == vrt.transform
            assert np.array_equal(cog.read(), vrt.read())
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporaries left
    # In-process too, and a file the store does not record is never taken.
    (folder / "stray.tif").write_bytes((folder / "mosaic.tif").read_bytes())
    outcomes = assemble_session(store, load_session_spec(store))
    assert [o.made and not o.problem for o in outcomes] == [True, True]
    assert {n: (folder / n).read_bytes() for n in before} == before


def test_a_job_without_time_gets_one_mosaic_in_its_output_dir(tmp_path: Path,
                                                              emulator: Emulator) -> None:
    store = make_session(make_job(tmp_path, emulator.url,
                                  region={"bbox": [0.0, 40.0, 1.0, 41.0]}))
    assert run_session(store.path).ok
    out = tmp_path / "out"
    assert_mosaic_is_its_files(out / "mosaic.vrt", verified_files(store))
    events = [e["message"] for e in store.events(limit=1000)]
    (line,) = [m for m in events if m.startswith("assembled mosaic of all:")]
    assert f"→ {out / 'mosaic.vrt'}" in line and "quicklook mosaic.png" in line
    assert events.index(line) > next(i for i, m in enumerate(events) if m.startswith("finished"))


# An L of three aligned tiles (two in the south row, one north-west): the mosaic's box has an
# empty north-east corner.
L_REGION = {"type": "Polygon", "coordinates": [[
    [0.2, 40.0], [1.8, 40.0], [1.8, 40.5], [0.8, 40.5], [0.8, 41.5], [0.2, 41.5], [0.2, 40.0]]]}


def test_one_band_gets_a_colour_ramp_and_no_file_is_transparent(tmp_path: Path,
                                                                 emulator: Emulator) -> None:
    shutil.copy(ROOT / "tests" / "engine" / "recipes" / "my_recipes.py", tmp_path)
    (tmp_path / "l.geojson").write_text(json.dumps(L_REGION))
    store = make_session(make_job(tmp_path, emulator.url, region={"file": "l.geojson"},
                                  recipe={"name": "python", "function": "my_recipes:ndvi"}))
    assert run_session(store.path).ok
    out = tmp_path / "out"
    files = verified_files(store)
    assert len(files) == 3
    got = assert_mosaic_is_its_files(out / "mosaic.vrt", files, full=False)
    assert (got["width"], got["height"]) == (112, 112) and got["count"] == 1
    assert not got["covered"][:56, 56:].any() and got["covered"].sum() == 3 * 56 * 56
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(out / "mosaic.png") as png:
            assert (png.width, png.height) == (256, 256) and png.count == 4  # RGBA
            rgba = png.read()
    alpha = rgba[3]
    assert (alpha[:128, 128:] == 0).all() and (alpha[128:, :] == 255).all()
    assert (alpha[:128, :128] == 255).all()
    r, g, b = (rgba[i][alpha > 0] for i in range(3))
    assert not (np.array_equal(r, g) and np.array_equal(g, b))  # a colour ramp, not grey
