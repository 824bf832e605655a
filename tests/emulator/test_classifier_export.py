"""A classifier trained once and exported to an asset (issue 14): `classifier:export` through
the real earthengine-api (Export.classifier.toAsset, ee.data.exportClassifier), the CLASSIFIER
asset it leaves, and `ee.Classifier.load` of that asset classifying tiles exactly as the
classifier trained inline does (both GeoTIFFs read back with rasterio). Refusals and failures
are checked by the texts users see."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.connect import init_ee
from tests.emulator.test_ee import count, start_image, wait_status
from tests.emulator.test_world import (
    TILE_A,
    TILE_B,
    _training_points,
    features_image,
    fetch,
    ndvi,
    raster,
)

ee = pytest.importorskip("ee")
pytest.importorskip("rasterio")

PROJECT = "test-project"
MODELS = f"projects/{PROJECT}/assets/models"
RF = f"{MODELS}/rf"
NOT_TRAINED = "Classifier export: the classifier has not been trained."


def forest(labelled: Any) -> Any:
    """A random forest trained on the image's features at the labelled points."""
    training = features_image().sampleRegions(
        collection=labelled, properties=["landcover"], scale=30
    )
    return ee.Classifier.smileRandomForest(numberOfTrees=15, seed=4).train(
        features=training, classProperty="landcover", inputProperties=["NDVI", "NDWI"]
    )


def points(flip: bool = False) -> Any:
    """Ten points with a number `x` and a class `c` (x < 5 → 0), or the classes swapped."""
    return ee.FeatureCollection(
        [
            ee.Feature(
                ee.Geometry.Point([10.01 + i * 0.001, 45.01]),
                {"x": float(i), "c": int((i >= 5) != flip)},
            )
            for i in range(10)
        ]
    )


def small_forest(flip: bool = False) -> Any:
    return ee.Classifier.smileRandomForest(5, seed=1).train(points(flip), "c", ["x"])


def export(classifier: Any, description: str, asset: str = RF, **kw: Any) -> Any:
    task = ee.batch.Export.classifier.toAsset(
        classifier, description=description, assetId=asset, **kw
    )
    task.start()
    return task


def predictions(asset: str) -> list[int]:
    """The classes a loaded classifier gives the ten points, by value:compute."""
    fc = points().classify(ee.Classifier.load(asset))
    return fc.aggregate_array("classification").getInfo()


def state_tasks(emu: Any) -> dict[str, dict[str, Any]]:
    with urllib.request.urlopen(f"{emu.url}/_emulator/state", timeout=10) as resp:
        return {t["id"]: t for t in json.loads(resp.read())["ee"]["tasks"]}


@pytest.fixture
def models(ee_emulator: Any) -> Any:
    """The FAST emulator with the folder the classifiers are exported into."""
    ee.data.createFolder(MODELS)
    return ee_emulator


def test_a_forest_exported_once_classifies_tiles_exactly_as_the_inline_one(
    models: Any, tmp_path: Path
) -> None:
    labelled, _ = _training_points()
    task = export(forest(labelled), "rf_export", priority=250)
    st = wait_status(task)
    assert st["state"] == "COMPLETED", st
    assert st["task_type"] == "EXPORT_CLASSIFIER" and st["priority"] == 250
    meta = ee.data.getOperation(task.name)["metadata"]
    assert meta["type"] == "EXPORT_CLASSIFIER" and meta["state"] == "SUCCEEDED"

    listed = ee.data.listAssets({"parent": MODELS})["assets"]
    assert [(a["name"], a["type"]) for a in listed] == [(RF, "CLASSIFIER")]
    asset = ee.data.getAsset(RF)
    assert asset["type"] == "CLASSIFIER" and int(asset["sizeBytes"]) > 0

    # Every tile classified with the loaded model, and with the forest trained inline.
    tasks = [
        start_image(
            features_image().classify(clf),
            f"lc_{how}_{name}",
            folder="classes",
            region=ee.Geometry.Rectangle(box),
        )
        for name, box in (("a", TILE_A), ("b", TILE_B))
        for how, clf in (("loaded", ee.Classifier.load(RF)), ("inline", forest(labelled)))
    ]
    tasks.append(
        start_image(ndvi(), "ndvi_a", folder="classes", region=ee.Geometry.Rectangle(TILE_A))
    )
    for t in tasks:
        done = wait_status(t)
        assert done["state"] == "COMPLETED", done
    files = fetch(models, "classes", tmp_path)
    for name in ("a", "b"):
        loaded, t_loaded, _ = raster(files[f"lc_loaded_{name}.tif"])
        inline, t_inline, _ = raster(files[f"lc_inline_{name}.tif"])
        assert t_loaded == t_inline and loaded.shape == inline.shape
        assert np.array_equal(loaded, inline)
    (a,), _, _ = raster(files["lc_loaded_a.tif"])
    assert set(np.unique(a)) == {0, 1, 2}  # the three NDVI classes, not a constant
    (nd,), _, _ = raster(files["ndvi_a.tif"])
    assert np.corrcoef(nd.ravel(), a.ravel())[0, 1] > 0.8  # classes follow NDVI


def test_a_resent_request_id_returns_the_same_classifier_export(models: Any) -> None:
    rid = ee.data.newTaskId()[0]
    ee.data.setWorkloadTag("eebatch-train")
    try:
        config = ee.batch.Export.classifier.toAsset(
            small_forest(), description="rf_once", assetId=RF
        ).config
        first = ee.data.exportClassifier(rid, config)
        again = ee.data.exportClassifier(rid, config)
    finally:
        ee.data.resetWorkloadTag(True)
    assert again["name"] == first["name"]
    assert first["metadata"]["type"] == "EXPORT_CLASSIFIER"
    ops = [op for op in ee.data.listOperations() if op["metadata"]["description"] == "rf_once"]
    assert [op["name"] for op in ops] == [first["name"]]
    task_id = first["name"].rsplit("/", 1)[-1]
    assert state_tasks(models)[task_id]["workload_tag"] == "eebatch-train"
    st = wait_status(ee.batch.Task(task_id, "EXPORT_CLASSIFIER", "READY", {}, first["name"]))
    assert st["state"] == "COMPLETED", st
    assert predictions(RF) == [0] * 5 + [1] * 5


def test_what_is_not_a_trained_exportable_classifier_is_refused_at_submit(
    models: Any,
) -> None:
    untrained = ee.Classifier.smileRandomForest(10)
    centroids = ee.Classifier.minimumDistance().train(points(), "c", ["x"])
    cases = [
        (untrained, NOT_TRAINED),
        (untrained.setOutputMode("PROBABILITY"), NOT_TRAINED),
        (ee.Image(1), "Classifier export: the exported value must be a Classifier, not Image."),
        (
            centroids,
            "Classifier export: only smileRandomForest, smileCart, DecisionTree and "
            "DecisionTreeEnsemble classifiers can be exported (got Classifier.minimumDistance).",
        ),
    ]
    for i, (value, message) in enumerate(cases):
        with pytest.raises(ee.EEException) as err:
            export(value, f"refused_{i}")
        assert str(err.value) == message
    # No destination: the request as a hand-built ExportClassifierRequest without one.
    with pytest.raises(ee.EEException, match=r"needs assetExportOptions\.earthEngineDestination"):
        ee.data.exportClassifier(
            ee.data.newTaskId()[0], {"expression": small_forest(), "description": "nowhere"}
        )
    # Refused with a 400: each request reached the emulator once (not retried), no task made.
    assert count(models, "POST ee classifier.export") == len(cases) + 1
    assert ee.data.listOperations() == []


def test_a_classifier_without_training_data_fails_its_task_and_makes_no_asset(
    models: Any,
) -> None:
    # The points have no NDVI property: only training finds there is nothing to learn from.
    no_data = ee.Classifier.smileRandomForest(5).train(points(), "c", ["NDVI"])
    st = wait_status(export(no_data, "no_data"))
    assert st["state"] == "FAILED"
    assert st["error_message"] == "Classifier training failed: 'No valid training data were found.'"
    assert ee.data.listAssets({"parent": MODELS}).get("assets", []) == []


def test_an_existing_classifier_asset_is_replaced_only_with_overwrite(
    emulator_factory: Any,
) -> None:
    # One slot and a slow image export holding it: both exports below are accepted while the
    # asset does not exist yet, and run one after the other once the blocker is cancelled.
    emu = emulator_factory(slots=1, pixel_rate=1000.0)
    init_ee(emu.url, PROJECT)
    ee.data.createFolder(MODELS)
    blocker = start_image(ndvi(), "blocker", region=ee.Geometry.Rectangle([10, 45, 11, 46]))
    first = export(small_forest(), "first")
    second = export(small_forest(), "second")
    assert ee.data.getOperation(second.name)["metadata"]["state"] == "PENDING"
    blocker.cancel()
    assert wait_status(first)["state"] == "COMPLETED"
    st = wait_status(second)
    assert st["state"] == "FAILED"
    assert st["error_message"] == f"Cannot overwrite asset '{RF}'."
    # Once it exists, a submit without overwrite is refused at once.
    with pytest.raises(ee.EEException, match=f"Cannot overwrite asset '{RF}'"):
        export(small_forest(flip=True), "third")
    assert predictions(RF) == [0] * 5 + [1] * 5
    # With overwrite the new model replaces the old: loading it gives the swapped classes.
    assert wait_status(export(small_forest(flip=True), "fourth", overwrite=True))[
        "state"
    ] == "COMPLETED"
    assert ee.data.getAsset(RF)["type"] == "CLASSIFIER"
    assert predictions(RF) == [1] * 5 + [0] * 5


def test_loading_a_missing_or_non_classifier_asset_fails_with_a_clear_text(
    models: Any,
) -> None:
    missing = f"projects/{PROJECT}/assets/nothing_here"
    gone = (
        f"Classifier.load: Asset '{missing}' does not exist or caller does not have access."
    )
    with pytest.raises(ee.EEException) as err:
        predictions(missing)
    assert str(err.value) == gone
    # An export that classifies with it fails its task with the same text.
    st = wait_status(start_image(features_image().classify(ee.Classifier.load(missing)), "lc"))
    assert st["state"] == "FAILED" and st["error_message"] == gone
    # A folder is not a classifier.
    with pytest.raises(ee.EEException) as err:
        predictions(MODELS)
    assert str(err.value) == (
        f"Classifier.load: Asset '{MODELS}' is not a Classifier (its type is FOLDER)."
    )
    # A deleted classifier asset is gone for Classifier.load too.
    assert wait_status(export(small_forest(), "to_delete"))["state"] == "COMPLETED"
    assert predictions(RF) == [0] * 5 + [1] * 5
    ee.data.deleteAsset(RF)
    with pytest.raises(ee.EEException, match=f"Asset '{RF}' does not exist"):
        predictions(RF)
