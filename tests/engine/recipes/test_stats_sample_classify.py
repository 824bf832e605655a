"""The stats, sample and classify recipes: their parameters and the problems the plan reports
(a vector file read when the job is checked), the EE graph each unit builds (which algorithms,
which zones or points each tile gets, the same classifier in every tile), and the examples run
to the end on the emulator."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import shapely
from shapely.geometry import shape

from core.emulator.app import Emulator
from core.plan import make_plan
from core.plan_text import describe_plan
from core.recipes import RECIPES
from core.recipes.base import RecipeError, UnitWork
from core.spec import JobSpec, SpecError, load_spec
from tests.jobs import job_text

ROOT = Path(__file__).parents[3]
EXAMPLES = ROOT / "examples"
STATS, SAMPLE, CLASSIFY = "california-ndvi-stats", "field-points", "landcover"


# -- helpers ------------------------------------------------------------------------------------


def feature_collection(*features: tuple[dict[str, Any], dict[str, Any]]) -> str:
    return json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": props, "geometry": geometry}
        for geometry, props in features]})


def point(x: float, y: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [x, y]}


def square(x: float, y: float, side: float) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [[[x, y], [x + side, y], [x + side, y + side],
                                                [x, y + side], [x, y]]]}


def problems(path: Path) -> str:
    with pytest.raises(SpecError) as err:
        load_spec(path)
    return str(err.value)


def expand(encoded: dict[str, Any]) -> Any:
    """An ee.serializer cloud-API encoding as one nested tree: a call is a dict with "fn" and
    its arguments, references resolved."""
    values = encoded["values"]

    def walk(node: Any) -> Any:
        if "valueReference" in node:
            return walk(values[node["valueReference"]])
        if "constantValue" in node:
            return node["constantValue"]
        if "arrayValue" in node:
            return [walk(v) for v in node["arrayValue"]["values"]]
        if "dictionaryValue" in node:
            return {k: walk(v) for k, v in node["dictionaryValue"]["values"].items()}
        if "functionInvocationValue" in node:
            call = node["functionInvocationValue"]
            return {"fn": call["functionName"],
                    **{k: walk(v) for k, v in call.get("arguments", {}).items()}}
        return node  # argumentReference, functionDefinitionValue: not used by these recipes

    return walk(values[encoded["result"]])


def calls(tree: Any, name: str) -> list[dict[str, Any]]:
    """Every call of `name` in the tree, outermost first."""
    found = []
    if isinstance(tree, dict):
        if tree.get("fn") == name:
            found.append(tree)
        for value in tree.values():
            found += calls(value, name)
    elif isinstance(tree, list):
        for value in tree:
            found += calls(value, name)
    return found


@pytest.fixture(scope="module")
def ee_on_emulator() -> Iterator[Emulator]:
    """earthengine-api initialised against an emulator: building a unit asks EE for its
    algorithms, and nothing else."""
    from core.connect import init_ee

    with Emulator() as emu:
        init_ee(emu.url)
        yield emu


def unit_graphs(spec: JobSpec, model: str | None = None
                ) -> Iterator[tuple[UnitWork, str, Any]]:
    """(unit, "image" | "table", the expanded graph) of every unit of the job; `model`: the
    asset of the model the job trained (classify)."""
    import ee

    from core.recipes.build import build

    for row in make_plan(spec).unit_rows():
        unit = UnitWork(row[0], (row[7], row[8], row[9], row[10]), row[5], row[6],
                        model=model)
        kind, obj = build(spec, unit)
        yield unit, kind, expand(ee.serializer.encode(obj, for_cloud_api=True))


def features_of(collection: dict[str, Any]) -> list[tuple[Any, dict[str, Any]]]:
    """(shapely geometry, properties) of each feature of a constant FeatureCollection."""
    assert collection["fn"] == "Collection"
    out = []
    for feature in collection["features"]:
        geometry = feature["geometry"]
        kind = geometry["fn"].removeprefix("GeometryConstructors.")
        out.append((shape({"type": kind, "coordinates": geometry["coordinates"]}),
                    feature.get("metadata", {})))
    return out


def copy_example(name: str, tmp_path: Path, url: str) -> Path:
    """The example and its data files in tmp_path, run against the emulator at `url`."""
    for data in EXAMPLES.glob("*.geojson"):
        shutil.copy(data, tmp_path / data.name)
    text = (EXAMPLES / f"{name}.toml").read_text()
    text = text.replace('"../output/', '"output/').replace("http://127.0.0.1:8787", url)
    job = tmp_path / f"{name}.toml"
    job.write_text(text)
    return job


# -- the catalog and the plan ------------------------------------------------------------------


def test_the_three_recipes_are_in_the_catalog_with_their_outputs() -> None:
    assert {"stats", "sample", "classify"} <= set(RECIPES)
    assert RECIPES["stats"].output({}) == RECIPES["sample"].output({}) == "table"
    params, found = RECIPES["classify"].validate({"training_asset": "projects/p/assets/t"})
    assert found == [] and RECIPES["classify"].output(params) == "image"
    assert RECIPES["classify"].bands(params) == [("classification", 1)]


@pytest.mark.parametrize(("name", "recipe", "line"), [
    (STATS, "stats", 'statistics = ["mean", "stdDev", "count", "p10", "p90"], zones_file = '
                     '"california-zones.geojson", zone_id = "zone", scale = 500'),
    (SAMPLE, "sample", 'points_file = "field-points.geojson"'),
    (CLASSIFY, "classify", 'training_file = "landcover-training.geojson", seed = 14'),
])
def test_each_example_plans_with_its_recipe(name: str, recipe: str, line: str) -> None:
    text = "\n".join(describe_plan(make_plan(load_spec(EXAMPLES / f"{name}.toml"))))
    assert f"Recipe   {recipe}: {RECIPES[recipe].help}" in text
    assert f"         {line}" in text


def test_planning_the_examples_never_imports_earthengine() -> None:
    jobs = [str(EXAMPLES / f"{name}.toml") for name in (STATS, SAMPLE, CLASSIFY)]
    code = ("import sys; from core.spec import load_spec; from core.plan import make_plan; "
            "from core.plan_text import describe_plan; "
            f"[describe_plan(make_plan(load_spec(job))) for job in {jobs!r}]; "
            "assert 'ee' not in sys.modules, 'ee imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def _job(tmp_path: Path, recipe: dict[str, Any]) -> Path:
    job = tmp_path / "job.toml"
    job.write_text(job_text("t", region={"bbox": [0, 0, 2, 1]}, grid={"size": 0.5},
                            recipe=recipe))
    return job


def test_a_training_file_of_one_class_is_refused_at_plan(tmp_path: Path) -> None:
    training = tmp_path / "one.geojson"
    training.write_text(feature_collection((point(0.1, 0.1), {"class": 3}),
                                           (point(0.2, 0.2), {"class": 3})))
    text = problems(_job(tmp_path, {"name": "classify", "training_file": str(training)}))
    assert (f"recipe.training_file: {str(training)!r} holds only class 3 in 'class'; a "
            "classifier needs at least two classes") in text


@pytest.mark.parametrize(("props", "problem"), [
    ({"label": 1}, "recipe.class_property: 'class' is not a column of {file!r} (its columns: "
                   "label)"),
    ({"class": "forest"}, "recipe.class_property: feature 1 of {file!r} has class = 'forest'; "
                          "classes must be integers 0-255"),
    ({"class": 1.5}, "classes must be integers 0-255"),
    ({"class": 300}, "classes must be integers 0-255"),
])
def test_a_training_file_without_integer_classes_is_refused(tmp_path: Path, props: dict,
                                                            problem: str) -> None:
    training = tmp_path / "t.geojson"
    training.write_text(feature_collection((point(0.1, 0.1), props),
                                           (point(0.2, 0.2), {**props})))
    text = problems(_job(tmp_path, {"name": "classify", "training_file": str(training)}))
    assert problem.format(file=str(training)) in text


def test_classify_takes_a_training_file_or_an_asset(tmp_path: Path) -> None:
    recipe = RECIPES["classify"]
    _, found = recipe.validate({})
    assert found == [("training_file", "is required")]
    _, found = recipe.validate({"training_asset": "projects/p/assets/points"})
    assert found == []
    _, found = recipe.validate({"training_asset": "projects/p/assets/points",
                                "training_file": "t.geojson"})
    assert found == [("training_asset", "give training_file or training_asset, not both")]
    text = problems(_job(tmp_path, {"name": "classify",
                                    "training_file": str(tmp_path / "none.geojson")}))
    assert f"recipe.training_file: file {str(tmp_path / 'none.geojson')!r} does not exist" \
        in text
    _, found = recipe.validate({"training_asset": "x", "training_dates": ["2023-06-01"]})
    assert found == [("training_dates", "must be [] or two dates [YYYY-MM-DD, YYYY-MM-DD] "
                                        "(the end exclusive)")]


def test_relative_files_are_read_beside_the_job_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.geojson").write_text(feature_collection(
        (point(0.1, 0.1), {"class": 1}), (point(0.2, 0.2), {"class": 1})))
    _, found = RECIPES["classify"].validate({"training_file": "data/t.geojson"}, tmp_path)
    assert found == [("training_file", "'data/t.geojson' holds only class 1 in 'class'; a "
                                       "classifier needs at least two classes")]


def test_a_relative_file_is_checked_at_plan(tmp_path: Path) -> None:
    (tmp_path / "t.geojson").write_text(feature_collection(
        (point(0.1, 0.1), {"class": 1}), (point(0.2, 0.2), {"class": 1})))
    assert "a classifier needs at least two classes" in problems(
        _job(tmp_path, {"name": "classify", "training_file": "t.geojson"}))


def test_stats_zones_need_an_id_column_and_areas(tmp_path: Path) -> None:
    zones = tmp_path / "zones.geojson"
    zones.write_text(feature_collection((square(0, 0, 1), {"code": "a", "name": "A"})))
    text = problems(_job(tmp_path, {"name": "stats", "zones_file": str(zones)}))
    assert ("recipe.zone_id: is required with zones_file (a column of "
            f"{str(zones)!r}: code, name)") in text
    text = problems(_job(tmp_path, {"name": "stats", "zones_file": str(zones),
                                    "zone_id": "id"}))
    assert f"recipe.zone_id: 'id' is not a column of {str(zones)!r} (its columns: code, name)" \
        in text
    zones.write_text(feature_collection((point(0.5, 0.5), {"code": "a"})))
    text = problems(_job(tmp_path, {"name": "stats", "zones_file": str(zones),
                                    "zone_id": "code"}))
    assert "feature 1 is a Point; zones must be Polygon or MultiPolygon" in text
    zones.write_text(feature_collection((square(0, 0, 1), {"code": None})))
    text = problems(_job(tmp_path, {"name": "stats", "zones_file": str(zones),
                                    "zone_id": "code"}))
    assert f"recipe.zone_id: feature 1 of {str(zones)!r} has no 'code'" in text


@pytest.mark.parametrize(("recipe", "problem"), [
    ({"statistics": ["mean", "mode"]}, "recipe.statistics: unknown statistic 'mode'; known: "
                                       "mean, stdDev, min, max, median, count, sum, and "
                                       "percentiles p0 to p100 (e.g. p10, p90)"),
    ({"statistics": ["p101"]}, "unknown statistic 'p101'"),
    ({"statistics": []}, "recipe.statistics: must name at least one statistic"),
    ({"statistics": ["mean", "mean"]}, "recipe.statistics: names a statistic twice"),
    ({"indices": []}, "recipe.bands: with no indices, give at least one band"),
    ({"indices": ["EVI"]}, "recipe.indices: unknown index 'EVI'; known: NDVI, NDWI"),
    ({"zone_id": "code"}, "recipe.zone_id: only applies with zones_file"),
    ({"scale": 0}, "recipe.scale: must be more than 0"),
])
def test_stats_parameters_are_checked(tmp_path: Path, recipe: dict[str, Any],
                                      problem: str) -> None:
    assert problem in problems(_job(tmp_path, {"name": "stats", **recipe}))


def test_sample_points_must_be_points_with_the_columns_asked(tmp_path: Path) -> None:
    points = tmp_path / "p.geojson"
    points.write_text(feature_collection((square(0, 0, 0.1), {"site": "a"})))
    text = problems(_job(tmp_path, {"name": "sample", "points_file": str(points)}))
    assert "feature 1 is a Polygon; points must be Point" in text
    points.write_text(feature_collection((point(0.1, 0.1), {"site": "a", "tile": "x"})))
    text = problems(_job(tmp_path, {"name": "sample", "points_file": str(points)}))
    assert (f"recipe.points_file: {str(points)!r} has a column 'tile', a name the recipe "
            "writes in each row") in text
    spec = load_spec(_job(tmp_path, {"name": "sample", "points_file": str(points),
                                     "properties": ["site"]}))  # "tile" is left out: fine
    assert spec.recipe.params["properties"] == ["site"]
    text = problems(_job(tmp_path, {"name": "sample", "points_file": str(points),
                                    "properties": ["crop"]}))
    assert f"recipe.properties: 'crop' is not a column of {str(points)!r}" in text


def test_a_geopackage_in_another_crs_is_read_in_degrees(tmp_path: Path) -> None:
    import pyogrio.raw
    from pyproj import Transformer

    to_albers = Transformer.from_crs("EPSG:4326", "EPSG:3310", always_xy=True)
    x, y = to_albers.transform([-121.2, -121.8], [38.6, 38.9])
    wkb = shapely.to_wkb([shapely.Point(x[0], y[0]), shapely.Point(x[1], y[1])])
    import numpy as np

    path = tmp_path / "t.gpkg"
    pyogrio.raw.write(path, wkb, [np.array([1, 2], dtype=np.int32)], ["class"],
                      geometry_type="Point", crs="EPSG:3310", driver="GPKG")
    from core.recipes._vector import read_features

    points = read_features(path, "t.gpkg")
    assert [(round(g.x, 6), round(g.y, 6)) for g in points.geometries] == \
        [(-121.2, 38.6), (-121.8, 38.9)]
    assert points.properties == ({"class": 1}, {"class": 2})


# -- the graphs each unit builds ----------------------------------------------------------------


def test_stats_reduces_each_tiles_zone_parts_with_one_combined_reducer(
        ee_on_emulator: Emulator) -> None:
    spec = load_spec(EXAMPLES / f"{STATS}.toml")
    zones = {f["properties"]["zone"]: shape(f["geometry"]) for f in
             json.loads((EXAMPLES / "california-zones.geojson").read_text())["features"]}
    parts: dict[tuple[str, str], list[Any]] = {}
    for unit, kind, graph in unit_graphs(spec):
        assert kind == "table"
        assert graph["fn"] == "Image.reduceRegions" and graph["scale"] == 500
        reducer = graph["reducer"]  # one band (NDVI): the outputs are named NDVI_statistic
        assert reducer["fn"] == "Reducer.setOutputs"
        assert reducer["outputs"] == ["NDVI_mean", "NDVI_stdDev", "NDVI_count", "NDVI_p10",
                                      "NDVI_p90"]
        combines = calls(reducer, "Reducer.combine")
        assert len(combines) == 3 and all(c["sharedInputs"] is True for c in combines)
        assert [c["percentiles"] for c in calls(reducer, "Reducer.percentile")] == [[10, 90]]
        assert calls(graph["image"], "Image.normalizedDifference")[0]["bandNames"] == \
            ["SR_B5", "SR_B4"]
        dates = calls(graph["image"], "DateRange")[0]
        assert (dates["start"], dates["end"]) == (unit.start, unit.end)
        tile = shapely.box(*unit.bounds)
        for geometry, props in features_of(graph["collection"]):
            assert set(props) == {"zone", "tile", "start", "end"}
            assert props["tile"] == unit.id.split("_")[0]
            assert (props["start"], props["end"]) == (unit.start, unit.end)
            assert tile.buffer(1e-9).contains(geometry) and geometry.area > 0
            parts.setdefault((unit.start or "", props["zone"]), []).append(geometry)
    months = {start for start, _ in parts}
    assert len(months) == 12
    for (_, zone), pieces in parts.items():  # every month: the parts make up the zone
        union = shapely.union_all(pieces)
        assert abs(sum(p.area for p in pieces) - zones[zone].area) < 1e-6  # no overlap
        assert union.symmetric_difference(zones[zone]).area < 1e-6  # no gap
    assert {zone for _, zone in parts} == set(zones)
    assert sum(len(p) for p in parts.values()) > 12 * len(zones)  # zones cut by the grid


def test_stats_without_zones_reduces_the_region_within_each_tile(ee_on_emulator: Emulator,
                                                                  tmp_path: Path) -> None:
    """The region ends halfway through the second tile: that tile's row is of the region's
    part of it, not of the whole tile."""
    job = tmp_path / "tiles.toml"
    job.write_text(job_text("tiles", region={"bbox": [0, 0, 1.5, 1]}, grid={"size": 1},
                            recipe={"name": "stats", "bands": ["SR_B4", "SR_B5"],
                                    "indices": [], "statistics": ["median"]}))
    graphs = list(unit_graphs(load_spec(job)))
    assert len(graphs) == 2
    areas = []
    for unit, _, graph in graphs:
        # two bands, one statistic: EE names the outputs by band, so the bands are renamed
        assert graph["reducer"] == {"fn": "Reducer.median"}
        assert graph["image"]["fn"] == "Image.rename"
        assert graph["image"]["names"] == ["SR_B4_median", "SR_B5_median"]
        ((geometry, properties),) = features_of(graph["collection"])
        assert properties == {"tile": unit.id, "start": "", "end": ""}
        region_part = shapely.box(*unit.bounds).intersection(shapely.box(0, 0, 1.5, 1))
        assert geometry.symmetric_difference(region_part).area < 1e-9
        areas.append(round(geometry.area, 6))
    assert sorted(areas) == [0.5, 1.0]


def test_sample_sends_each_point_to_exactly_one_tile(ee_on_emulator: Emulator) -> None:
    spec = load_spec(EXAMPLES / f"{SAMPLE}.toml")
    sites = {f["properties"]["site"]: f for f in
             json.loads((EXAMPLES / "field-points.geojson").read_text())["features"]}
    seen: dict[str, list[tuple[str, str]]] = {}
    for unit, kind, graph in unit_graphs(spec):
        assert kind == "table" and graph["fn"] == "Image.sampleRegions"
        assert graph["geometries"] is True and graph["scale"] == 30
        assert graph["properties"] == ["site", "crop", "tile", "start", "end"]
        assert calls(graph["image"], "Image.select")[0]["bandSelectors"] == \
            ["SR_B2", "SR_B3", "SR_B4", "SR_B5"]
        west, south, east, north = unit.bounds
        for geometry, props in features_of(graph["collection"]):
            assert west <= geometry.x < east and south <= geometry.y < north
            assert props["crop"] == sites[props["site"]]["properties"]["crop"]
            assert [geometry.x, geometry.y] == sites[props["site"]]["geometry"]["coordinates"]
            seen.setdefault(props["site"], []).append((unit.start or "", props["tile"]))
    periods = 6
    assert set(seen) == set(sites)
    assert all(len(v) == periods == len({s for s, _ in v}) for v in seen.values())
    assert {t for _, t in seen["F25"]} == {"r204c234"}  # on a corner: the tile east and north
    assert len({t for v in seen.values() for _, t in v}) > 1


def test_sample_splits_points_on_a_projected_grid(ee_on_emulator: Emulator,
                                                  tmp_path: Path) -> None:
    """On an Albers grid a point is placed by its projected coordinates, half-open: points on
    and about the tile edges each go to one tile, the one holding them."""
    from pyproj import Transformer

    to_degrees = Transformer.from_crs("EPSG:3310", "EPSG:4326", always_xy=True)
    to_albers = Transformer.from_crs("EPSG:4326", "EPSG:3310", always_xy=True)
    near = [-50_000.0, -25_000.0, -1e-6, 0.0, 1e-6, 25_000.0, 50_000.0]
    features = [(point(*to_degrees.transform(x, y)), {"n": i})
                for i, (x, y) in enumerate((x, y) for x in near for y in near)]
    (tmp_path / "p.geojson").write_text(feature_collection(*features))
    job = tmp_path / "albers.toml"
    job.write_text(job_text("albers", region={"bbox": [-120.8, 37.0, -119.2, 38.6]},
                            grid={"size": 50_000, "crs": "EPSG:3310"},
                            recipe={"name": "sample",
                                    "points_file": str(tmp_path / "p.geojson")},
                            export={"crs": "EPSG:3310", "scale": 1000}))
    found: dict[int, tuple[float, ...]] = {}
    for unit, _, graph in unit_graphs(load_spec(job)):
        west, south, east, north = unit.bounds
        for geometry, props in features_of(graph["collection"]):
            assert props["n"] not in found
            found[props["n"]] = unit.bounds
            x, y = to_albers.transform(geometry.x, geometry.y)
            assert west <= x < east and south <= y < north
    assert sorted(found) == list(range(len(features)))
    assert {(0.0, 0.0), (-50_000.0, 0.0), (0.0, -50_000.0), (-50_000.0, -50_000.0)} <= {
        bounds[:2] for bounds in found.values()}  # the four tiles that meet at (0, 0)


def model_graph(spec: JobSpec, start: str | None = None, end: str | None = None) -> Any:
    """The expanded graph of the classifier the job trains once in EE."""
    import ee

    recipe = RECIPES[spec.recipe.name]
    model = recipe.model(spec.recipe.params, spec.path.parent, start, end)
    return expand(ee.serializer.encode(model, for_cloud_api=True))


def test_classify_trains_one_forest_and_every_tile_loads_it(ee_on_emulator: Emulator) -> None:
    spec = load_spec(EXAMPLES / f"{CLASSIFY}.toml")
    training = json.loads((EXAMPLES / "landcover-training.geojson").read_text())["features"]
    train = model_graph(spec)
    assert train["fn"] == "Classifier.train" and train["classProperty"] == "class"
    bands = ["SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7", "NDVI", "NDWI"]
    assert train["inputProperties"] == bands
    forest = train["classifier"]
    assert forest["fn"] == "Classifier.smileRandomForest"
    assert (forest["numberOfTrees"], forest["seed"]) == (50, 14)
    samples = train["features"]
    assert samples["fn"] == "Image.sampleRegions" and samples["properties"] == ["class"]
    points = features_of(samples["collection"])
    assert [p for _, p in points] == [{"class": f["properties"]["class"]} for f in training]
    asset = "projects/eebatch-demo/assets/eebatch_s_classify"
    graphs = list(unit_graphs(spec, model=asset))
    assert len(graphs) == 12
    for unit, kind, graph in graphs:
        assert kind == "image"
        assert graph["fn"] == "Image.toUint8"
        classified = graph["value"]
        assert classified["fn"] == "Image.classify"
        assert classified["outputName"] == "classification"
        # no tile trains: each loads the one classifier the job trained
        assert calls(classified, "Classifier.train") == []
        assert classified["classifier"] == {"fn": "Classifier.load", "id": asset}
        # the image classified is the unit's own tile
        tile_filter = calls(classified["image"], "Filter.intersects")[0]
        assert tile_filter["rightValue"]["geometry"]["coordinates"] == list(unit.bounds)


def test_a_tile_without_its_trained_classifier_is_refused(ee_on_emulator: Emulator) -> None:
    from core.recipes.build import build

    spec = load_spec(EXAMPLES / f"{CLASSIFY}.toml")
    row = next(iter(make_plan(spec).unit_rows()))
    with pytest.raises(RecipeError, match="not been trained"):
        build(spec, UnitWork(row[0], (row[7], row[8], row[9], row[10]), row[5], row[6]))


def test_classify_from_an_asset_trains_on_the_asset(ee_on_emulator: Emulator,
                                                    tmp_path: Path) -> None:
    job = tmp_path / "asset.toml"
    job.write_text(job_text("asset", region={"bbox": [0, 0, 1, 1]}, grid={"size": 1},
                            recipe={"name": "classify", "training_asset": "projects/p/assets/t",
                                    "class_property": "lc", "trees": 10, "bands": [],
                                    "indices": ["NDVI"],
                                    "training_dates": ["2022-06-01", "2022-09-01"]}))
    train = model_graph(load_spec(job), "2020-01-01", "2020-02-01")
    assert train["features"]["collection"] == {"fn": "Collection.loadTable",
                                               "tableId": "projects/p/assets/t"}
    assert train["inputProperties"] == ["NDVI"]
    dates = calls(train["features"]["image"], "DateRange")[0]
    # training_dates, not the period's
    assert (dates["start"], dates["end"]) == ("2022-06-01", "2022-09-01")


# -- the examples, run to the end on the emulator ---------------------------------------------


def run_example(name: str, tmp_path: Path, emulator: Emulator,
                edits: dict[str, str] | None = None) -> tuple[JobSpec, dict[str, Path]]:
    """Run the example (with `edits`: text replaced in its job file) on the emulator; (its
    spec, each unit's verified file)."""
    from core.engine.runner import run_session
    from core.session import create_session
    from tests.engine.conftest import assert_all_done_and_verified

    job = copy_example(name, tmp_path, emulator.url)
    text = (job.read_text().replace("poll_seconds = 2", "poll_seconds = 0.2")
            .replace("max_tasks = 8", "max_tasks = 16"))
    for old, new in (edits or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    job.write_text(text)
    store, _ = create_session(job)
    summary = run_session(store.path)
    assert summary.ok, summary.failed[:3]
    assert_all_done_and_verified(store, emulator.url)
    files = {row["unit"]: Path(row["local_path"])
             for row in store.conn.execute("SELECT unit, local_path FROM files")}
    return load_spec(job), files


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    import csv

    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def number(text: str) -> float:
    value = float(text)
    assert math.isfinite(value), text
    return value


@pytest.mark.slow
def test_the_stats_example_gives_a_row_per_zone_part_and_month(tmp_path: Path,
                                                               emulator: Emulator) -> None:
    from core.recipes._vector import read_features, zone_parts

    spec, files = run_example(STATS, tmp_path, emulator)
    zones = read_features(tmp_path / "california-zones.geojson", "zones")
    stats = [f"NDVI_{s}" for s in ("mean", "stdDev", "count", "p10", "p90")]
    rows_per_month: dict[str, int] = {}
    for row in make_plan(spec).unit_rows():
        unit, tile, start, end, bounds = row[0], row[1], row[5], row[6], row[7:11]
        columns, rows = read_rows(files[unit])
        assert set(columns) == {"system:index", "zone", "tile", "start", "end", *stats, ".geo"}
        expected = sorted(zones.properties[i]["zone"] for i, _ in
                          zone_parts(zones, bounds, "EPSG:4326"))
        assert sorted(r["zone"] for r in rows) == expected, unit
        for r in rows:
            assert (r["tile"], r["start"], r["end"]) == (tile, start, end)
            values = {s: number(r[s]) for s in stats}
            assert values["NDVI_count"] > 0 and values["NDVI_stdDev"] >= 0
            assert -1 <= values["NDVI_p10"] <= values["NDVI_p90"] <= 1
            assert -1 <= values["NDVI_mean"] <= 1
        rows_per_month[start] = rows_per_month.get(start, 0) + len(rows)
    assert len(rows_per_month) == 12 and len(set(rows_per_month.values())) == 1
    assert next(iter(rows_per_month.values())) > len(zones)  # zones cut by the grid
    assert_parts_recombine(spec, files, zones, "2023-03-01", "2023-04-01", emulator)


def assert_parts_recombine(spec: JobSpec, files: dict[str, Path], zones: Any, start: str,
                           end: str, emulator: Emulator) -> None:
    """A month's rows of each zone, recombined (counts summed, means weighted by count, the
    pooled standard deviation), are the statistics of the whole zone, as EE computes them
    (`reduceRegion` over the zone, uncut, on the same emulator)."""
    import ee

    from core.connect import init_ee
    from core.recipes import _image

    parts: dict[str, list[tuple[float, float, float]]] = {}
    for path in files.values():
        for r in read_rows(path)[1]:
            if r["start"] == start:
                parts.setdefault(r["zone"], []).append(
                    (number(r["NDVI_count"]), number(r["NDVI_mean"]), number(r["NDVI_stdDev"])))
    init_ee(emulator.url)
    reducer = ee.Reducer.mean().combine(ee.Reducer.count(), sharedInputs=True).combine(
        ee.Reducer.stdDev(), sharedInputs=True)
    for geometry, props in zip(zones.geometries, zones.properties, strict=True):
        zone = ee.Geometry(shapely.geometry.mapping(geometry), None, False)
        image = _image.composite_image(spec.recipe.params, zone, start, end)
        whole = image.reduceRegion(reducer, zone, 500, maxPixels=1e9).getInfo()
        rows = parts[props["zone"]]
        count = sum(c for c, _, _ in rows)
        mean = sum(c * m for c, m, _ in rows) / count
        pooled = math.sqrt(sum(c * (s * s + (m - mean) ** 2) for c, m, s in rows) / count)
        assert count == whole["NDVI_count"], props
        assert mean == pytest.approx(whole["NDVI_mean"], abs=1e-9), props
        assert pooled == pytest.approx(whole["NDVI_stdDev"], abs=1e-9), props


@pytest.mark.slow
def test_the_sample_example_gives_a_row_per_point_and_month(tmp_path: Path,
                                                            emulator: Emulator) -> None:
    spec, files = run_example(SAMPLE, tmp_path, emulator)
    sites = {f["properties"]["site"]: f for f in
             json.loads((tmp_path / "field-points.geojson").read_text())["features"]}
    bands = ["SR_B2", "SR_B3", "SR_B4", "SR_B5", "NDVI"]
    seen: dict[str, list[str]] = {}
    for row in make_plan(spec).unit_rows():
        unit, tile, start, end = row[0], row[1], row[5], row[6]
        columns, rows = read_rows(files[unit])
        if not rows:
            continue  # a tile without points
        assert set(columns) == {"system:index", "site", "crop", "tile", "start", "end",
                                *bands, ".geo"}
        for r in rows:
            assert (r["tile"], r["start"], r["end"]) == (tile, start, end)
            site = sites[r["site"]]
            assert r["crop"] == site["properties"]["crop"]
            assert json.loads(r[".geo"])["coordinates"] == site["geometry"]["coordinates"]
            nir, red = number(r["SR_B5"]), number(r["SR_B4"])
            # the index is of the same composite the bands are sampled from
            assert number(r["NDVI"]) == pytest.approx((nir - red) / (nir + red), abs=1e-5)
            assert all(number(r[b]) > 0 for b in bands[:4])
            seen.setdefault(r["site"], []).append(start)
    assert set(seen) == set(sites)
    assert all(sorted(v) == sorted(set(v)) and len(v) == 6 for v in seen.values())


@pytest.mark.slow
def test_the_classify_example_holds_only_the_trained_classes(tmp_path: Path,
                                                             emulator: Emulator) -> None:
    import numpy as np
    import rasterio

    from core.outputs.bands import read_band_names

    _, files = run_example(CLASSIFY, tmp_path, emulator)
    assert len(files) == 12
    trained = {f["properties"]["class"] for f in
               json.loads((tmp_path / "landcover-training.geojson").read_text())["features"]}
    found: set[int] = set()
    for path in files.values():
        with rasterio.open(path) as tif:
            assert tif.count == 1 and tif.dtypes == ("uint8",)
            values = set(np.unique(tif.read(1)).tolist())
        assert values <= trained, (path.name, values - trained)
        assert read_band_names(path) == ["classification"]
        found |= values
    assert len(found) >= 2  # a forest that tells the classes apart, not one class everywhere


@pytest.mark.slow
def test_the_batches_example_gives_a_mosaic_per_batch(tmp_path: Path,
                                                      emulator: Emulator) -> None:
    import numpy as np
    import rasterio

    # The example as it is, but for 3 batches of 4 images (its 100 each take a minute here)
    _, files = run_example("batches", tmp_path, emulator, edits={
        "size = 100 ": "size = 4 ", "images = 300": "images = 12"})
    assert len(files) == 12  # 4 tiles x 3 batches
    (period,) = {p.parent for p in files.values()}
    mosaics = []
    for k in range(3):
        with rasterio.open(period / f"mosaic_b{k}.vrt") as vrt:
            assert vrt.count == 4  # B4, B3, B2, NDVI
            mosaic = vrt.read()
            # every tile of batch k is in its mosaic, pixel for pixel
            for unit, path in files.items():
                if not unit.endswith(f"_b{k}"):
                    continue
                with rasterio.open(path) as tif:
                    window = vrt.window(*tif.bounds)
                    row, col = round(window.row_off), round(window.col_off)
                    part = mosaic[:, row:row + tif.height, col:col + tif.width]
                    assert np.array_equal(part, tif.read()), (unit, k)
        assert (period / f"mosaic_b{k}.png").stat().st_size > 0
        mosaics.append(mosaic)
    # each batch reduces its own images: the medians differ
    assert not np.array_equal(mosaics[0], mosaics[1])
