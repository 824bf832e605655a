"""Expression decoding and the output grid, on graphs shaped exactly like earthengine-api's,
without a server."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import tifffile

from core.emulator.expression import (
    ExpressionError,
    ImageSpec,
    Region,
    analyze_image,
    analyze_table,
    analyze_video,
    constant_value,
    resolve,
)
from core.emulator.outputs import (
    METRES_PER_DEGREE,
    image_grid,
    model_pixels,
    shard_name,
    shard_plan,
    write_geotiff,
)


def call(name: str, **args: Any) -> dict[str, Any]:
    return {"functionInvocationValue": {"functionName": name, "arguments": args}}


def const(v: Any) -> dict[str, Any]:
    return {"constantValue": v}


def ref(k: str) -> dict[str, Any]:
    return {"valueReference": k}


LANDSAT = call("ImageCollection.load", id=const("LANDSAT/LC08/C02/T1_L2"))
MEDIAN = call("reduce.median", collection=LANDSAT)
RGB = call("Image.select", input=MEDIAN, bandSelectors=const(["SR_B4", "SR_B3", "SR_B2"]))
POLY = call(
    "GeometryConstructors.Polygon",
    coordinates=const([[[0, 1], [0, 0], [1, 0], [1, 1]]]),
    evenOdd=const(True),
)


def graph(root: dict[str, Any], **values: dict[str, Any]) -> dict[str, Any]:
    return {"result": "0", "values": {"0": root, **values}}


def notes_example() -> dict[str, Any]:
    """A full image:export expression as earthengine-api 1.7.50 sends it."""
    projected = call(
        "Image.setDefaultProjection",
        crs=call("Projection", crs=const("EPSG:32631")),
        crsTransform=const([1, 0, 0, 0, -1, 0]),
        image=RGB,
    )
    root = call("Image.clipToBoundsAndScale", geometry=ref("1"), scale=const(30), input=projected)
    return graph(root, **{"1": POLY})


def test_notes_example_decodes_region_scale_crs_and_bands() -> None:
    spec = analyze_image(notes_example())
    assert spec.region is not None and spec.region.bbox == (0, 0, 1, 1)
    assert (spec.scale, spec.crs, spec.crs_transform) == (30, "EPSG:32631", None)
    assert spec.bands == ["SR_B4", "SR_B3", "SR_B2"] and spec.dtype == "uint16"


def test_band_and_type_heuristics() -> None:
    nd = call("Image.normalizedDifference", input=MEDIAN, bandNames=const(["SR_B5", "SR_B4"]))
    assert analyze_image(graph(nd)).bands == ["nd"]
    assert analyze_image(graph(nd)).dtype == "float32"
    both = call("Image.addBands", dstImg=RGB, srcImg=nd)
    spec = analyze_image(graph(both))
    assert len(spec.bands) == 4 and spec.dtype == "float32"
    assert len(analyze_image(graph(MEDIAN)).bands) == 19  # all Landsat 8 L2 bands
    unknown = call("reduce.mean", collection=call("ImageCollection.load", id=const("X/Y")))
    assert analyze_image(graph(unknown)).bands == ["B0"]
    cast = call("Image.toUint8", value=nd)
    assert analyze_image(graph(cast)).dtype == "uint8"


def test_regions_of_every_shape() -> None:
    line = call("GeometryConstructors.LineString", coordinates=const([[-3, 40], [-2, 41]]))
    clip = call("Image.clip", input=RGB, geometry=line)
    spec = analyze_image(graph(clip))
    assert spec.region == Region((-3, 40, -2, 41), "EPSG:4326", spec.region.geojson)
    geojson = {"type": "MultiPolygon", "coordinates": [[[[5, 5], [6, 5], [6, 7], [5, 5]]]]}
    spec = analyze_image(graph(call("Image.clip", input=RGB, geometry=const(geojson))))
    assert spec.region is not None and spec.region.bbox == (5, 5, 6, 7)
    computed = call(
        "Collection.geometry", collection=call("Collection.loadTable", tableId=const("t"))
    )
    with pytest.raises(ExpressionError, match="computed geometry"):
        analyze_image(graph(call("Image.clip", input=RGB, geometry=computed)))


def test_reproject_dimensions_and_max_dimension() -> None:
    rep = call(
        "Image.reproject",
        image=RGB,
        crs=call("Projection", crs=const("EPSG:3857")),
        crsTransform=const([100, 0, 50, 0, -100, 1000]),
    )
    g = image_grid(analyze_image(graph(call("Image.clip", input=rep, geometry=POLY))))
    assert (g.dx, g.dy, g.epsg) == (100, 100, 3857)
    assert (g.x0 - 50) % 100 == 0 and (1000 - g.y0) % 100 == 0  # on the transform's lattice
    sized = call(
        "Image.clipToBoundsAndScale", input=RGB, geometry=POLY, width=const(200), height=const(100)
    )
    g = image_grid(analyze_image(graph(sized)))
    assert (g.width, g.height) == (200, 100)
    wide = call("GeometryConstructors.Polygon", coordinates=const([[[0, 0], [2, 0], [2, 1]]]))
    maxd = call("Image.clipToBoundsAndScale", input=RGB, geometry=wide, maxDimension=const(64))
    g = image_grid(analyze_image(graph(maxd)))
    assert (g.width, g.height) == (64, 32)


def test_video_wrappers_inside_collection_map() -> None:
    body = call(
        "Image.clipToBoundsAndScale",
        input={"argumentReference": "_MAPPING_VAR_0_0"},
        geometry=POLY,
        maxDimension=const(32),
    )
    vis = call("Image.visualize", image={"argumentReference": "_MAPPING_VAR_1_0"})
    frames = call("Collection.limit", collection=LANDSAT, limit=const(4))
    visualized = call("Collection.map", collection=frames, baseAlgorithm=ref("vis"))
    coll = call("Collection.map", collection=visualized, baseAlgorithm=ref("fn"))
    fn = {"functionDefinitionValue": {"argumentNames": ["_MAPPING_VAR_0_0"], "body": "b"}}
    vis_fn = {"functionDefinitionValue": {"argumentNames": ["_MAPPING_VAR_1_0"], "body": "v"}}
    g = {"result": "0", "values": {"0": coll, "fn": fn, "b": body, "vis": vis_fn, "v": vis}}
    spec = analyze_video(g, max_frames=10)
    assert spec.max_dimension == 32 and spec.region is not None and spec.frames == 4
    assert len(spec.bands) == 3 and spec.dtype == "uint8"


def test_tables_count_and_columns() -> None:
    feats = [
        call(
            "Feature",
            geometry=call("GeometryConstructors.Point", coordinates=const([1, 2])),
            metadata=const({"name": "a", "v": 1}),
        )
        for _ in range(3)
    ]
    fc = call("Collection", features={"arrayValue": {"values": feats}})
    spec = analyze_table(graph(call("Collection.limit", collection=fc, limit=const(2))))
    assert spec.count == 2 and spec.columns == ["name", "v"]
    loaded = analyze_table(graph(call("Collection.loadTable", tableId=const("TIGER/2018/States"))))
    assert loaded.count == 25 and loaded.index_width == 20


def test_constants_references_and_bad_graphs() -> None:
    g = {
        "result": "0",
        "values": {
            "0": {"dictionaryValue": {"values": {"a": ref("1"), "b": {"integerValue": "7"}}}},
            "1": {"arrayValue": {"values": [const(1), const("x")]}},
        },
    }
    assert constant_value(g) == {"a": [1, "x"], "b": 7}
    with pytest.raises(ExpressionError, match="only constant"):
        constant_value(graph(call("Number.add", left=const(1), right=const(2))))
    with pytest.raises(ExpressionError, match="missing"):
        resolve({"result": "0", "values": {"0": ref("9")}})
    with pytest.raises(ExpressionError, match="cyclic"):
        resolve({"result": "0", "values": {"0": ref("1"), "1": ref("0")}})


def test_model_pixels_use_ground_area_in_degrees() -> None:
    spec = ImageSpec(Region((10.0, 60.0, 11.0, 61.0)), "EPSG:4326", None, 100.0)
    grid = image_grid(spec)
    assert grid.dx == pytest.approx(100 / METRES_PER_DEGREE)
    # At 60° N a degree of longitude is half as long: the model charges about half the grid.
    shrink = math.cos(math.radians(60.5)) * 110_574 / METRES_PER_DEGREE
    assert model_pixels(grid) == pytest.approx(grid.pixels * shrink, rel=0.005)
    utm = image_grid(ImageSpec(Region((10.0, 60.0, 11.0, 61.0)), "EPSG:32632", None, 100.0))
    assert model_pixels(utm) == utm.pixels


def test_shard_plan_and_names() -> None:
    grid = image_grid(ImageSpec(Region((0, 0, 0.5, 0.5)), "EPSG:4326", None, 100.0))
    assert shard_plan(grid, 3, "uint16", 10**12) == [(0, 0, grid.height, grid.width)]
    windows = shard_plan(grid, 3, "uint16", 200_000)
    assert len(windows) > 1 and all(r % 256 == 0 and c % 256 == 0 for r, c, _, _ in windows)
    assert sum(h * w for _, _, h, w in windows) == grid.pixels
    assert shard_plan(grid, 1, "uint8", 10**12, (256, 512))[1][:2] == (0, 256)
    assert shard_name("p", 256, 1024) == "p-0000000256-0000001024.tif"


def test_a_large_geotiff_is_written_tiled(tmp_path: Path) -> None:
    spec = ImageSpec(Region((0, 0, 0.75, 0.75)), "EPSG:32631", None, 30.0)
    grid = image_grid(spec)  # ~2780 x 2780 px x 3 bands x 2 bytes ≈ 46 MB
    # Its speed is a benchmark's business (tests/bench), never a wall-clock assert here: CI
    # runs on a loaded 2-core machine.
    size = write_geotiff(tmp_path / "x.tif", grid, 3, "uint16", 1, (0, 0, 2048, 1707))
    assert size > 20_000_000
    with tifffile.TiffFile(tmp_path / "x.tif") as tf:
        assert tf.series[0].shape == (3, 2048, 1707) and tf.pages[0].is_tiled


def test_table_files_in_every_format(tmp_path: Path) -> None:
    import zipfile

    from pyogrio.raw import read

    from core.emulator.expression import TableSpec
    from core.emulator.outputs import write_kml, write_kmz, write_shp

    spec = TableSpec(3, ["name", "value"], [{"name": f"n{i}", "value": i} for i in range(3)])
    parts = write_shp(tmp_path, "pts", spec, None, seed=1)
    assert sorted(p.suffix for p in parts) == [".cpg", ".dbf", ".prj", ".shp", ".shx"]
    meta, _, geometry, fields = read(tmp_path / "pts.shp")
    assert list(meta["fields"]) == ["name", "value"] and len(geometry) == 3
    assert list(fields[0]) == ["n0", "n1", "n2"] and "4326" in meta["crs"]
    write_kml(tmp_path / "t.kml", spec, ["name"], seed=1)
    assert (tmp_path / "t.kml").read_text().count("<Placemark>") == 3
    write_kmz(tmp_path / "t.kmz", spec, None, seed=1)
    with zipfile.ZipFile(tmp_path / "t.kmz") as z:
        assert z.namelist() == ["doc.kml"] and b"n2" in z.read("doc.kml")
