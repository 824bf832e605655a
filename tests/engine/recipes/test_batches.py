"""Collection batches run end to end on the emulator, through the real worker and
earthengine-api: one output per tile x batch, each export cut to its batch of the collection,
split children that stay in their batch, and sessions of schema 7 (before batches) that still
run."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import ee
import pytest
import rasterio

from core.batches import unit_batch
from core.emulator.app import Emulator
from core.engine.runner import run_session
from core.recipes.build import UnitWork, build
from core.session import load_session_spec
from core.store import SCHEMA_VERSION, Store
from tests.engine.conftest import assert_all_done_and_verified, emulator_with, make_session

THREE_BY_COUNT = '\n[batches]\nby = "count"\nsize = 2\ncount = 3\n'
BANDS = ["SR_B4", "SR_B3", "SR_B2"]  # the composite's defaults


def _box(bounds: Any) -> Any:
    return ee.Geometry.Rectangle(list(bounds), "EPSG:4326", False)


def _means(path: str, image: Any) -> tuple[list[float], list[float]]:
    """The mean of each band of an exported GeoTIFF, and what the emulator's world says the
    mean of `image` is on that file's very pixel grid (reduceRegion, EE's semantics)."""
    with rasterio.open(path) as tif:
        pixels, grid, bounds = tif.read().astype(float), tif.transform, tif.bounds
    said = image.reduceRegion(ee.Reducer.mean(), _box(bounds), crs="EPSG:4326",
                              crsTransform=list(grid)[:6]).getInfo()
    return [float(band.mean()) for band in pixels], [said[b] for b in BANDS]


def _calls(obj: Any, name: str) -> list[dict[str, Any]]:
    """The arguments of every call of `name` in an ee object's serialized graph."""
    graph = json.loads(obj.serialize())
    found = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            call = node.get("functionInvocationValue")
            if isinstance(call, dict) and call.get("functionName") == name:
                found.append(call["arguments"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(graph)
    return found


def _constant(graph_args: dict[str, Any], key: str, obj: Any) -> Any:
    """An argument's constant, following valueReferences of the graph."""
    values = json.loads(obj.serialize())["values"]
    node = graph_args[key]
    while "valueReference" in node:
        node = values[node["valueReference"]]
    return node["constantValue"]


def test_three_batches_make_one_output_per_tile_and_batch(tmp_path: Path,
                                                          emulator: Emulator) -> None:
    store = make_session(tmp_path, emulator.url, bbox="[0, 0, 1, 0.5]", extra=THREE_BY_COUNT)
    units = store.units()
    tiles = sorted({u["tile"] for u in units})
    assert len(tiles) == 2 and len(units) == 6
    summary = run_session(store.path)
    assert summary.ok, summary.failed
    assert_all_done_and_verified(store, emulator.url)
    files = store.conn.execute(
        "SELECT f.local_path, u.tile, u.batch FROM files f JOIN units u ON u.id = f.unit"
        " ORDER BY u.tile, u.batch").fetchall()
    assert [(f["tile"], f["batch"]) for f in files] == [(t, k) for t in tiles for k in range(3)]
    for f in files:
        assert Path(f["local_path"]).name == f"t_{f['tile']}_b{f['batch']}.tif"

    # Each file is its batch's composite: the median of the images 2k and 2k + 1 of the
    # collection over the job's region (below the composite's max_cloud), in date order, as
    # the emulator's world computes it independently of the export; not another batch's.
    collection = (ee.ImageCollection("LANDSAT/LC08/C02/T1_L2").filterBounds(_box([0, 0, 1, 0.5]))
                  .filter(ee.Filter.lt("CLOUD_COVER", 30)).sort("system:time_start"))
    batch = [ee.ImageCollection(collection.toList(2, 2 * k)).median().select(BANDS)
             for k in range(3)]
    for f in files:
        got, said = _means(f["local_path"], batch[f["batch"]])
        assert got == pytest.approx(said, rel=1e-12), f["local_path"]
        _, other = _means(f["local_path"], batch[(f["batch"] + 1) % 3])
        assert got != pytest.approx(other, rel=1e-7)

    # Each unit's export takes its own batch of the collection: the images 2k and 2k + 1 of
    # the collection over the job's region, in date order (graphs as earthengine-api builds
    # them for the worker; the emulator's client is initialized by the run).
    spec = load_session_spec(store)
    for row in units:
        work = UnitWork(row["id"], (row["west"], row["south"], row["east"], row["north"]),
                        row["start"], row["end"],
                        unit_batch(spec, row["batch"], row["start"], row["end"]))
        _, image = build(spec, work)
        (to_list,) = _calls(image, "Collection.toList")
        assert (_constant(to_list, "count", image), _constant(to_list, "offset", image)) == (
            2, 2 * row["batch"])
        # of the images over the job's region, not the unit's tile: the same on every tile
        (box,) = _calls(image, "GeometryConstructors.Rectangle")
        assert _constant(box, "coordinates", image) == [0, 0, 1, 0.5]
        # sort("system:time_start"), which earthengine-api sends as a limit by that key
        (sort,) = _calls(image, "Collection.limit")
        assert _constant(sort, "key", image) == "system:time_start" and "limit" not in sort
    store.close()


def test_date_batches_export_each_batch_of_days(tmp_path: Path, emulator: Emulator) -> None:
    extra = ('\n[time]\nstart = 2023-01-01\nend = 2023-04-01\n'
             '\n[batches]\nby = "date"\nstep = "1 month"\n')
    store = make_session(tmp_path, emulator.url, bbox="[0, 0, 0.5, 0.5]", extra=extra)
    assert run_session(store.path).ok
    assert_all_done_and_verified(store, emulator.url)
    rows = store.units()
    assert [(r["id"], r["start"], r["end"], r["batch"]) for r in rows] == [
        ("r179c360_20230101_b0", "2023-01-01", "2023-02-01", 0),
        ("r179c360_20230101_b1", "2023-02-01", "2023-03-01", 1),
        ("r179c360_20230101_b2", "2023-03-01", "2023-04-01", 2),
    ]
    spec = load_session_spec(store)
    row = rows[1]
    work = UnitWork(row["id"], (row["west"], row["south"], row["east"], row["north"]),
                    row["start"], row["end"],
                    unit_batch(spec, row["batch"], row["start"], row["end"]))
    _, image = build(spec, work)
    assert _calls(image, "Collection.toList") == []  # by date, the dates are the batch
    graph = image.serialize()
    assert "2023-02-01" in graph and "2023-03-01" in graph and "2023-01-01" not in graph
    # and the file is February's composite, as the emulator's world computes it
    (path,) = [f["local_path"] for f in store.conn.execute(
        "SELECT local_path FROM files WHERE unit = ?", (row["id"],))]
    february = (ee.ImageCollection("LANDSAT/LC08/C02/T1_L2").filterBounds(_box([0, 0, 0.5, 0.5]))
                .filterDate("2023-02-01", "2023-03-01").filter(ee.Filter.lt("CLOUD_COVER", 30))
                .median().select(BANDS))
    got, said = _means(path, february)
    assert got == pytest.approx(said, rel=1e-12)
    store.close()


def test_a_split_child_stays_in_its_batch(tmp_path: Path) -> None:
    # 0.5° tiles at 2 km hold about 770 pixels; the limit lets only quarter tiles through.
    with emulator_with(memory_limit_pixels=400) as emu:
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 0.5, 0.5]", split_depth=1,
                             extra='\n[batches]\nby = "count"\nsize = 5\ncount = 2\n')
        summary = run_session(store.path)
        assert summary.ok, summary.failed
        units = {r["id"]: r for r in store.units()}
        children = [u for u in units.values() if u["parent"]]
        assert len(children) == 8
        for child in children:
            parent = units[child["parent"]]
            assert parent["state"] == "split" and child["batch"] == parent["batch"]
            assert child["id"] == f"{child['tile']}_b{parent['batch']}"
        assert sorted(c["id"] for c in children if c["batch"] == 1) == [
            f"r179c360.{q}_b1" for q in range(4)]
        assert_all_done_and_verified(store, emu.url)
        store.close()


def test_a_session_of_schema_7_still_runs(tmp_path: Path, emulator: Emulator) -> None:
    """A session as eebatch wrote it before batches: the batch column dropped again and the
    schema version put back to 7 (the columns of units are then exactly schema 7's)."""
    store = make_session(tmp_path, emulator.url, bbox="[0, 0, 1, 0.5]")
    path = store.path
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    # What schemas 8 and later added, taken out again: triggers, tables, indexes, columns.
    v7_tables = {"session", "settings", "units", "attempts", "files", "events", "commands",
                 "workers", "worker_status"}
    v7_indexes = {"units_state", "attempts_unit", "files_unit", "units_updated",
                  "attempts_state", "attempts_updated", "files_state"}
    for kind, name in conn.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE"
                                   " 'sqlite_%' ORDER BY type = 'table'").fetchall():
        if kind == "trigger" or (kind == "index" and name not in v7_indexes) or (
                kind == "table" and name not in v7_tables):
            conn.execute(f"DROP {kind.upper()} {name}")
    columns = {r[1] for r in conn.execute("PRAGMA table_info(units)")}
    for column in ("batch", "seq", "route"):
        if column in columns:
            conn.execute(f"ALTER TABLE units DROP COLUMN {column}")
    conn.execute("PRAGMA user_version=7")
    conn.close()
    assert run_session(path).ok
    again = Store(path)
    assert again.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert {(r["id"], r["batch"]) for r in again.units()} == {("r179c360", None),
                                                              ("r179c361", None)}
    assert_all_done_and_verified(again, emulator.url)
    again.close()


@pytest.mark.parametrize("recipe", ["stats", "sample", "classify"])
def test_the_table_and_classify_recipes_take_their_units_batch(tmp_path: Path,
                                                               emulator: Emulator,
                                                               recipe: str) -> None:
    """stats, sample and classify cut their image to the unit's batch as the composite does:
    batch k reduces the images 2k and 2k + 1 of the collection over the job's region."""
    from core.connect import init_ee

    data = tmp_path / "points.geojson"
    data.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": i, "class": i % 2},
         "geometry": {"type": "Point", "coordinates": [0.1 + 0.2 * i, 0.2]}}
        for i in range(4)]}))
    params = {"stats": 'name = "stats"', "sample": f'name = "sample"\npoints_file = "{data}"',
              "classify": f'name = "classify"\ntraining_file = "{data}"'}[recipe]
    store = make_session(tmp_path, emulator.url, bbox="[0, 0, 1, 0.5]", extra=THREE_BY_COUNT,
                         recipe=params + '\nindices = ["NDVI"]\nbands = []')
    init_ee(emulator.url)
    spec = load_session_spec(store)
    offsets = []
    for row in store.units():
        work = UnitWork(row["id"], (row["west"], row["south"], row["east"], row["north"]),
                        row["start"], row["end"],
                        unit_batch(spec, row["batch"], row["start"], row["end"]),
                        model="projects/p/assets/forest")  # classify's trained classifier
        _, obj = build(spec, work)
        to_list = _calls(obj, "Collection.toList")
        assert to_list, f"{recipe} ignored its unit's batch"
        offsets.append(sorted(_constant(c, "offset", obj) for c in to_list))
    assert sorted({o for found in offsets for o in found}) == [0, 2, 4]
    store.close()
