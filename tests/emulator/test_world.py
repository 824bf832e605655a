"""One synthetic world (issue 14, item 3): through the real earthengine-api, a band's value at a
place is the same in an exported GeoTIFF, a reduceRegion(s) statistic, a sampled point and the
features a classifier sees; collections batch by limit/offset; FeatureCollections merge.

Statistics are checked against numpy on the GeoTIFF the emulator exports (pixel centres inside
the polygon), read back with rasterio; nothing of the emulator's own code computes the expected
numbers."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.emulator.world import LANDSAT89, World, season
from tests.emulator.test_ee import TILE_BOX, download, drive_files, start_image, wait_status

ee = pytest.importorskip("ee")
rasterio = pytest.importorskip("rasterio")

PROJECT = "test-project"
# A pentagon inside TILE_BOX, its edges clear of the 30 m lattice's pixel centres.
POLYGON = [
    [10.0031, 45.0052],
    [10.0417, 45.0013],
    [10.0473, 45.0219],
    [10.0262, 45.0371],
    [10.0057, 45.0288],
]
POINTS = [
    (10.0113, 45.0071, "a", 1),
    (10.0248, 45.0192, "b", 2),
    (10.0391, 45.0305, "c", 3),
    (10.0459, 45.0037, "d", 4),
]


def composite(start: str = "2023-06-01", end: str = "2023-09-01") -> Any:
    return (
        ee.ImageCollection("LANDSAT/LC08/C02/T1_L2")
        .filterDate(start, end)
        .filterBounds(ee.Geometry.Rectangle(TILE_BOX))
        .median()
    )


def features_image() -> Any:
    """Reflectance (the Landsat C2 L2 scale factors applied) plus NDVI and NDWI."""
    sr = composite().select(["SR_B2", "SR_B3", "SR_B4", "SR_B5"]).multiply(0.0000275).add(-0.2)
    ndvi = sr.normalizedDifference(["SR_B5", "SR_B4"]).rename("NDVI")
    ndwi = sr.normalizedDifference(["SR_B3", "SR_B5"]).rename("NDWI")
    return sr.addBands(ndvi).addBands(ndwi)


def ndvi() -> Any:
    return features_image().select(["NDVI"])


def polygon() -> Any:
    return ee.Geometry.Polygon([POLYGON])


def points() -> Any:
    return ee.FeatureCollection(
        [ee.Feature(ee.Geometry.Point([x, y]), {"name": n, "plot": p}) for x, y, n, p in POINTS]
    )


def run(task: Any) -> None:
    task.start()
    st = wait_status(task)
    assert st["state"] == "COMPLETED", st


def fetch(emu: Any, folder: str, tmp_path: Path) -> dict[str, Path]:
    _, files = drive_files(emu, folder)
    return {f["title"]: download(f, tmp_path) for f in files}


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    text = path.read_text()
    header = next(csv.reader(io.StringIO(text)))
    return header, list(csv.DictReader(io.StringIO(text)))


def raster(path: Path) -> tuple[np.ndarray, Any, str]:
    with rasterio.open(path) as ds:
        return ds.read(), ds.transform, ds.crs.to_string()


def inside_values(path: Path, ring: list[list[float]]) -> np.ndarray:
    """The GeoTIFF's pixels (bands, n) whose centre lies inside the polygon (numpy + shapely
    on the file's own georeferencing)."""
    import shapely
    from pyproj import Transformer
    from shapely.geometry import Polygon

    data, tr, crs = raster(path)
    geom = Polygon(ring)
    if crs != "EPSG:4326":
        to_crs = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        geom = shapely.transform(geom, lambda x, y: to_crs.transform(x, y), interleaved=False)
    rows, cols = np.mgrid[0 : data.shape[1], 0 : data.shape[2]]
    x = tr.c + (cols + 0.5) * tr.a
    y = tr.f + (rows + 0.5) * tr.e
    mask = shapely.contains_xy(geom, x, y)
    return data[:, mask].astype(np.float64)


def pixel_at(path: Path, lon: float, lat: float) -> np.ndarray:
    data, tr, crs = raster(path)
    assert crs == "EPSG:4326"
    col = int(np.floor((lon - tr.c) / tr.a))
    row = int(np.floor((lat - tr.f) / tr.e))
    return data[:, row, col]


# -- (a) + (b): statistics equal numpy on the exported GeoTIFF ----------------------------------


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:32632"])
def test_region_statistics_equal_numpy_on_the_exported_geotiff(
    ee_emulator: Any, tmp_path: Path, crs: str
) -> None:
    folder = f"stats_{crs.replace(':', '_')}"
    image = features_image().select(["NDVI"]).addBands(composite().select(["SR_B4"]))
    reducer = (
        ee.Reducer.mean()
        .combine(ee.Reducer.stdDev(), sharedInputs=True)
        .combine(ee.Reducer.minMax(), sharedInputs=True)
        .combine(ee.Reducer.median(), sharedInputs=True)
        .combine(ee.Reducer.percentile([10, 90]), sharedInputs=True)
        .combine(ee.Reducer.count(), sharedInputs=True)
    )
    zones = ee.FeatureCollection([ee.Feature(polygon(), {"zone": "pentagon"})])
    # The image over the whole tile (a bigger window than the zone): the same lattice.
    run(
        ee.batch.Export.image.toDrive(
            image,
            description="img",
            folder=folder,
            region=ee.Geometry.Rectangle(TILE_BOX),
            scale=30,
            crs=crs,
        )
    )
    run(
        ee.batch.Export.table.toDrive(
            image.reduceRegions(collection=zones, reducer=reducer, scale=30, crs=crs),
            description="zones",
            folder=folder,
        )
    )
    files = fetch(ee_emulator, folder, tmp_path)
    inside = inside_values(files["img.tif"], POLYGON)
    assert inside.shape[1] > 1000  # a real polygon's worth of pixels
    header, rows = read_csv(files["zones.csv"])
    stats = ["count", "max", "mean", "median", "min", "p10", "p90", "stdDev"]
    assert header == [
        "system:index",
        *[f"{b}_{s}" for b in ("NDVI", "SR_B4") for s in stats],
        "zone",
        ".geo",
    ]
    (row,) = rows
    assert row["zone"] == "pentagon" and row["system:index"] == "0"
    assert json.loads(row[".geo"])["type"] == "Polygon"
    for i, band in enumerate(("NDVI", "SR_B4")):
        v = inside[i]
        expected = {
            "count": v.size,
            "max": v.max(),
            "mean": v.mean(),
            "median": np.median(v),
            "min": v.min(),
            "p10": np.percentile(v, 10),
            "p90": np.percentile(v, 90),
            "stdDev": v.std(),
        }
        for stat, want in expected.items():
            assert float(row[f"{band}_{stat}"]) == pytest.approx(want, rel=1e-9, abs=1e-12), stat
    assert float(row["NDVI_stdDev"]) > 0.005  # the world varies inside a zone

    # (b) reduceRegion through getInfo() gives what the exported table holds.
    got = image.reduceRegion(reducer, polygon(), 30, crs).getInfo()
    assert sorted(got) == sorted(h for h in header if "_" in h and h != "system:index")
    for key, value in got.items():
        assert value == pytest.approx(float(row[key]), rel=1e-12), key
    # A single-output reducer on a multi-band image is keyed by band name.
    means = image.reduceRegion(ee.Reducer.mean(), polygon(), 30, crs).getInfo()
    assert means == pytest.approx(
        {"NDVI": float(row["NDVI_mean"]), "SR_B4": float(row["SR_B4_mean"])}, rel=1e-12
    )
    # ... and a one-band image's reduceRegions gets the reducer's own output names.
    one = ndvi().reduceRegions(collection=zones, reducer=ee.Reducer.mean(), scale=30, crs=crs)
    (feature,) = one.getInfo()["features"]
    assert feature["properties"] == {
        "zone": "pentagon",
        "mean": pytest.approx(float(row["NDVI_mean"])),
    }


def test_reduce_region_needs_a_region_and_counts_its_pixels(ee_emulator: Any) -> None:
    with pytest.raises(ee.EEException, match="Provide 'geometry' parameter"):
        ndvi().reduceRegion(ee.Reducer.mean(), None, 30).getInfo()
    with pytest.raises(
        ee.EEException,
        match=r"Too many pixels in the region\. Found \d+, but "
        r"maxPixels allows only 1000\.",
    ):
        ndvi().reduceRegion(ee.Reducer.mean(), polygon(), 30, maxPixels=1000).getInfo()
    coarse = (
        ndvi()
        .reduceRegion(ee.Reducer.count(), polygon(), 30, maxPixels=1000, bestEffort=True)
        .getInfo()
    )
    assert 0 < coarse["NDVI"] <= 1000


# -- (c): samples are the GeoTIFF's pixels ----------------------------------------------------


def test_sample_regions_are_the_pixels_of_the_geotiff(ee_emulator: Any, tmp_path: Path) -> None:
    image = features_image().select(["NDVI", "NDWI"]).addBands(composite().select(["SR_B5"]))
    run(
        ee.batch.Export.image.toDrive(
            image.toFloat(),
            description="img",
            folder="samples",
            region=ee.Geometry.Rectangle(TILE_BOX),
            scale=30,
        )
    )
    run(
        ee.batch.Export.image.toDrive(
            composite().select(["SR_B5"]),
            description="sr",
            folder="samples",
            region=ee.Geometry.Rectangle(TILE_BOX),
            scale=30,
        )
    )
    run(
        ee.batch.Export.table.toDrive(
            image.sampleRegions(collection=points(), scale=30), description="pts", folder="samples"
        )
    )
    files = fetch(ee_emulator, "samples", tmp_path)
    header, rows = read_csv(files["pts.csv"])
    assert header == ["system:index", "NDVI", "NDWI", "SR_B5", "name", "plot", ".geo"]
    assert [r["system:index"] for r in rows] == ["0_0", "1_0", "2_0", "3_0"]
    assert all(json.loads(r[".geo"]) == {"type": "MultiPoint", "coordinates": []} for r in rows)
    uint16 = composite().select(["SR_B5"]).sampleRegions(collection=points(), scale=30)
    dns = [f["properties"]["SR_B5"] for f in uint16.getInfo()["features"]]
    for (lon, lat, name, plot), row, dn in zip(POINTS, rows, dns, strict=True):
        assert (row["name"], row["plot"]) == (name, str(plot))  # the point's own properties
        pixel = pixel_at(files["img.tif"], lon, lat)  # float32: the bands as one type
        assert [np.float32(row[b]) for b in ("NDVI", "NDWI", "SR_B5")] == list(pixel)
        assert isinstance(dn, int) and dn == pixel_at(files["sr.tif"], lon, lat)[0]
    # Only the asked-for properties, and each point's own place as its geometry when asked.
    got = (
        image.select(["NDVI"])
        .sampleRegions(collection=points(), properties=["plot"], scale=30, geometries=True)
        .getInfo()
    )
    first = got["features"][0]
    assert set(first["properties"]) == {"NDVI", "plot"}
    assert first["geometry"] == {"type": "Point", "coordinates": list(POINTS[0][:2])}


def test_sample_draws_seeded_pixels_of_the_region(ee_emulator: Any) -> None:
    def draw(seed: int) -> list[Any]:
        fc = ndvi().sample(region=polygon(), scale=30, numPixels=25, seed=seed, geometries=True)
        return fc.getInfo()["features"]

    one, again, other = draw(1), draw(1), draw(2)
    assert len(one) == 25 and one == again and one != other
    from shapely.geometry import Point, Polygon

    assert all(Polygon(POLYGON).contains(Point(f["geometry"]["coordinates"])) for f in one)
    assert all(-1 <= f["properties"]["NDVI"] <= 1 for f in one)


# -- (d): a classifier trained on NDVI classes ------------------------------------------------

# Two tiles on the same 30 m lattice, overlapping.
TILE_A = [10.0, 45.0, 10.03, 45.03]
TILE_B = [10.015, 45.01, 10.05, 45.04]


def _training_points() -> tuple[Any, list[int]]:
    """A grid of points over both tiles, labelled by their NDVI (terciles → 0, 1, 2)."""
    xs = np.linspace(10.001, 10.049, 14)
    ys = np.linspace(45.001, 45.039, 12)
    pts = ee.FeatureCollection(
        [
            ee.Feature(ee.Geometry.Point([float(x), float(y)]), {"i": i})
            for i, (x, y) in enumerate((x, y) for y in ys for x in xs)
        ]
    )
    got = ndvi().sampleRegions(collection=pts, scale=30).getInfo()["features"]
    values = np.array([f["properties"]["NDVI"] for f in got])
    cuts = np.percentile(values, [33.3, 66.7])
    labels = [int(np.searchsorted(cuts, v)) for v in values]
    labelled = ee.FeatureCollection(
        [
            ee.Feature(ee.Geometry.Point(f_xy), {"landcover": label})
            for f_xy, label in zip(
                [(float(x), float(y)) for y in ys for x in xs], labels, strict=True
            )
        ]
    )
    return labelled, cuts.tolist()


def classified(labelled: Any) -> Any:
    training = features_image().sampleRegions(
        collection=labelled, properties=["landcover"], scale=30
    )
    forest = ee.Classifier.smileRandomForest(numberOfTrees=15, seed=4).train(
        features=training, classProperty="landcover", inputProperties=["NDVI", "NDWI"]
    )
    return features_image().classify(forest)


def test_a_random_forest_classifies_tiles_into_the_trained_classes_alike(
    ee_emulator: Any, tmp_path: Path
) -> None:
    labelled, cuts = _training_points()
    for name, box in (("a", TILE_A), ("b", TILE_B)):
        # Each tile builds (and trains) its own classifier, as eebatch's units would.
        run(
            ee.batch.Export.image.toDrive(
                classified(labelled),
                description=f"lc_{name}",
                folder="classes",
                region=ee.Geometry.Rectangle(box),
                scale=30,
            )
        )
    run(
        ee.batch.Export.image.toDrive(
            ndvi(),
            description="ndvi_a",
            folder="classes",
            region=ee.Geometry.Rectangle(TILE_A),
            scale=30,
        )
    )
    files = fetch(ee_emulator, "classes", tmp_path)
    (a,), ta, _ = raster(files["lc_a.tif"])
    (b,), tb, _ = raster(files["lc_b.tif"])
    assert set(np.unique(a)) == {0, 1, 2} and set(np.unique(b)) <= {0, 1, 2}
    # The overlap: the same lattice, so whole pixels; identical classes there.
    col = round((tb.c - ta.c) / ta.a)  # B's first column in A's columns
    row = round((tb.f - ta.f) / ta.e)  # B's first row in A's rows (B reaches further north)
    assert abs(tb.c - (ta.c + col * ta.a)) < 1e-9 and abs(tb.f - (ta.f + row * ta.e)) < 1e-9
    assert col > 0 and row < 0
    overlap_a = a[: b.shape[0] + row, col:]
    overlap_b = b[-row:, : overlap_a.shape[1]]
    assert overlap_a.shape == overlap_b.shape and overlap_a.size > 3000
    assert np.array_equal(overlap_a, overlap_b)
    # It learnt the NDVI classes: most pixels get the class their NDVI says.
    (nd,), _, _ = raster(files["ndvi_a.tif"])
    truth = np.searchsorted(cuts, nd)
    assert (truth == a).mean() > 0.9


def test_a_classifier_without_data_or_bands_fails_the_export(ee_emulator: Any) -> None:
    pts = ee.FeatureCollection([ee.Feature(ee.Geometry.Point([10.01, 45.01]), {"c": 1, "x": 2})])
    no_data = ee.Classifier.smileRandomForest(5).train(pts, "c", ["NDVI"])
    wrong_band = ee.Classifier.smileRandomForest(5).train(pts, "c", ["x"])
    one = start_image(features_image().classify(no_data), "no_data")
    two = start_image(features_image().classify(wrong_band), "wrong_band")
    st = wait_status(one)
    assert st["state"] == "FAILED"
    assert st["error_message"] == "Classifier training failed: 'No valid training data were found.'"
    st = wait_status(two)
    assert st["state"] == "FAILED" and "Property 'x'" in st["error_message"]


# -- (e): collections in batches ----------------------------------------------------------------


def test_collection_size_limit_and_batches_by_offset(ee_emulator: Any) -> None:
    year = ee.ImageCollection("LANDSAT/LC08/C02/T1_L2").filterDate("2020-01-01", "2021-01-01")
    total = year.size().getInfo()
    assert total == 23 * 4  # an acquisition every 16 days, of 4 scenes
    assert year.limit(5).size().getInfo() == 5
    ids = year.aggregate_array("system:index").getInfo()
    assert ids[:2] == ["LC08_044033_20200109", "LC08_044034_20200109"]
    sizes, firsts, means = [], [], []
    region = ee.Geometry.Rectangle(TILE_BOX)
    for offset in range(0, total, 20):
        batch = ee.ImageCollection.fromImages(year.toList(20, offset))
        sizes.append(batch.size().getInfo())
        firsts.append(ee.Image(batch.first()).get("system:index").getInfo())
        means.append(
            batch.median()
            .select(["SR_B5"])
            .reduceRegion(ee.Reducer.mean(), region, 300)
            .getInfo()["SR_B5"]
        )
    assert sizes == [20, 20, 20, 20, 12] and sum(sizes) == total
    assert firsts == ids[::20]
    # A batch's composite uses its own images' dates: the seasons differ.
    assert len({round(m, 3) for m in means}) == len(means)
    assert ee.ImageCollection(year.toList(10, 85)).size().getInfo() == 7  # the constructor too
    # limit with a key sorts; filters on properties count.
    clouds = year.limit(6, "CLOUD_COVER").aggregate_array("CLOUD_COVER").getInfo()
    assert clouds == sorted(clouds) and len(clouds) == 6
    clear = year.filter(ee.Filter.lt("CLOUD_COVER", 50)).size().getInfo()
    cloudy = year.filter(ee.Filter.gte("CLOUD_COVER", 50)).size().getInfo()
    assert clear + cloudy == total and 0 < clear < total


def test_a_batch_composite_exports_what_its_statistic_says(
    ee_emulator: Any, tmp_path: Path
) -> None:
    year = ee.ImageCollection("LANDSAT/LC08/C02/T1_L2").filterDate("2020-01-01", "2021-01-01")
    batch = ee.ImageCollection.fromImages(year.toList(5, 10)).median().select(["SR_B4"])
    run(
        ee.batch.Export.image.toDrive(
            batch, description="batch_2", folder="batches", region=polygon(), scale=30
        )
    )
    files = fetch(ee_emulator, "batches", tmp_path)
    inside = inside_values(files["batch_2.tif"], POLYGON)[0]
    got = batch.reduceRegion(ee.Reducer.mean(), polygon(), 30).getInfo()["SR_B4"]
    assert got == pytest.approx(inside.mean(), rel=1e-12)


# -- (f): merged FeatureCollections -------------------------------------------------------------


def test_merge_of_geojson_and_a_table_asset_exports_both(ee_emulator: Any, tmp_path: Path) -> None:
    root = f"projects/{PROJECT}/assets"
    ee.data.createFolder(f"{root}/tables")
    run(
        ee.batch.Export.table.toAsset(
            points(), description="pts_asset", assetId=f"{root}/tables/points"
        )
    )
    assert ee.data.getAsset(f"{root}/tables/points")["featureCount"] == "4"
    geojson = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [[*POLYGON, POLYGON[0]]]},
                "properties": {"name": "zone", "area_class": "big"},
            },
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [10.02, 45.02]},
                "properties": {"name": "well"},
            },
        ],
    }
    merged = ee.FeatureCollection(geojson).merge(ee.FeatureCollection(f"{root}/tables/points"))
    assert merged.size().getInfo() == 6
    run(ee.batch.Export.table.toDrive(merged, description="merged", folder="merge"))
    header, rows = read_csv(fetch(ee_emulator, "merge", tmp_path)["merged.csv"])
    assert header == ["system:index", "area_class", "name", "plot", ".geo"]
    assert [r["system:index"] for r in rows] == ["1_0", "1_1", "2_0", "2_1", "2_2", "2_3"]
    assert [r["name"] for r in rows] == ["zone", "well", "a", "b", "c", "d"]
    assert [r["plot"] for r in rows] == ["", "", "1", "2", "3", "4"]
    assert json.loads(rows[2][".geo"]) == {"type": "Point", "coordinates": list(POINTS[0][:2])}
    # flatten() of a collection of collections holds them all too (ids "<outer>_<inner>").
    both = [ee.FeatureCollection(geojson), ee.FeatureCollection(f"{root}/tables/points")]
    flat = ee.FeatureCollection(both).flatten().getInfo()["features"]
    assert [f["id"] for f in flat] == ["0_0", "0_1", "1_0", "1_1", "1_2", "1_3"]
    # A table asset that does not exist fails the export, as EE's would.
    missing = ee.FeatureCollection(f"{root}/tables/nope")
    task = ee.batch.Export.table.toDrive(missing, description="missing", folder="merge")
    task.start()
    st = wait_status(task)
    assert st["state"] == "FAILED" and "not found" in st["error_message"]


# -- the world itself ---------------------------------------------------------------------------


def test_the_world_is_deterministic_bounded_and_seasonal() -> None:
    lon, lat = np.meshgrid(np.linspace(-124, -114, 60), np.linspace(32, 42, 60))
    world, other = World(7), World(8)
    summer = (1_689_000_000_000.0, 1_689_000_000_000.0)  # mid-July 2023
    winter = (1_673_000_000_000.0, 1_673_000_000_000.0)  # January 2023
    b4 = world.value("SR_B4", lon, lat, summer, LANDSAT89)
    assert np.array_equal(b4, World(7).value("SR_B4", lon, lat, summer, LANDSAT89))
    assert not np.array_equal(b4, other.value("SR_B4", lon, lat, summer, LANDSAT89))
    assert b4.min() > 7000 and b4.max() < 30_000
    nd = world.value("NDVI", lon, lat, summer)
    assert -1 <= nd.min() < 0 < 0.6 < nd.max() <= 1  # water and dense vegetation
    classes = world.value("landcover", lon, lat, summer)
    assert set(np.unique(classes)) == {0.0, 1.0, 2.0, 3.0}
    assert season(summer) > 0.9 and season(winter) < -0.8
    assert (
        world.value("NDVI", lon, lat, summer).mean() > world.value("NDVI", lon, lat, winter).mean()
    )


def test_shards_and_a_single_file_hold_the_same_pixels(
    emulator_factory: Any, tmp_path: Path
) -> None:
    from core.connect import init_ee

    emu = emulator_factory(file_split_bytes=256 * 1024)
    init_ee(emu.url, PROJECT)
    for name, dims in (("whole", [4096, 4096]), ("parts", [256, 256])):
        task = start_image(
            composite().select(["SR_B4", "SR_B5"]),
            name,
            folder="seams",
            crs="EPSG:32632",
            scale=10,
            fileDimensions=dims,
        )
        assert wait_status(task)["state"] == "COMPLETED"
    files = fetch(emu, "seams", tmp_path)
    whole, tr, _ = raster(files["whole.tif"])
    parts = [n for n in files if n.startswith("parts-")]
    assert len(parts) > 1
    for name in parts:
        data, t, _ = raster(files[name])
        col, row = round((t.c - tr.c) / tr.a), round((t.f - tr.f) / tr.e)
        assert np.array_equal(data, whole[:, row : row + data.shape[1], col : col + data.shape[2]])
    # The pixels are the world's at their centres (within the anchors' interpolation).
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True)
    rows, cols = np.mgrid[0 : whole.shape[1] : 37, 0 : whole.shape[2] : 41]
    lon, lat = to_lonlat.transform(tr.c + (cols + 0.5) * tr.a, tr.f + (rows + 0.5) * tr.e)
    year = ee.ImageCollection("LANDSAT/LC08/C02/T1_L2").filterDate("2023-06-01", "2023-09-01")
    times = year.aggregate_array("system:time_start").getInfo()
    span = (float(min(times)), float(max(times)))
    exact = World(7).value("SR_B4", lon, lat, span, LANDSAT89)
    assert np.abs(whole[0][rows, cols] - exact).max() < 0.05 * (exact.max() - exact.min() + 1000)
