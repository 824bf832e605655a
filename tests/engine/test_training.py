"""The classify recipe's classifier is trained once per job in EE: one classifier export
before any tile is sent, every tile classified with that asset, and the promise kept around it
(a restart adopts the same training, a failed training fails its tiles until a retry trains
again, a cancelled job cancels its training). The real worker and earthengine-api against the
emulator."""

from __future__ import annotations

from pathlib import Path

import ee
import numpy as np
import pytest
import rasterio

from core.engine.runner import run_session, start_worker
from core.states import M_READY, M_RUNNING, M_SUBMITTING
from core.store import Store
from tests.engine.conftest import emulator_with, make_session
from tests.engine.test_safety import wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TRAINING = EXAMPLES / "landcover-training.geojson"
CLASSES = {1, 2, 3, 4}  # the classes of the training file


def classify_session(tmp_path: Path, url: str, recipe: str = "") -> Store:
    return make_session(tmp_path, url, bbox="[0, 0, 1, 0.5]", recipe=(
        f'name = "classify"\ntraining_file = "{TRAINING}"\ntrees = 5\nseed = 3\n'
        'bands = ["SR_B4", "SR_B5"]\nindices = ["NDVI"]\n' + recipe))


def tasks_of(url: str, kind: str) -> list[dict]:
    """The metadata of EE's operations of one type (EXPORT_IMAGE, EXPORT_CLASSIFIER...), as
    the real client lists them."""
    del url  # ee is initialised on the emulator by the worker's backends
    return [op["metadata"] for op in ee.data.listOperations()
            if op["metadata"]["type"] == kind]


def test_the_classifier_is_trained_once_and_every_tile_uses_it(tmp_path: Path) -> None:
    with emulator_with() as emu:
        store = classify_session(tmp_path, emu.url)
        summary = run_session(store.path)
        assert summary.ok, summary.failed
        trainings = tasks_of(emu.url, "EXPORT_CLASSIFIER")
        assert [t["state"] for t in trainings] == ["SUCCEEDED"]  # once, for the whole job
        (model,) = store.models()
        assert model["state"] == M_READY and model["key"] == "job"
        assert model["asset"] == f"projects/eebatch-demo/assets/eebatch_{store.id}_classify"
        listed = ee.data.listAssets({"parent": "projects/eebatch-demo/assets"})["assets"]
        assert {"id": model["asset"].split("/assets/")[1], "type": "CLASSIFIER"}.items() <= {
            **next(a for a in listed if a["name"] == model["asset"]),
            "id": model["asset"].split("/assets/")[1]}.items()
        # every tile's export started after the classifier existed
        images = tasks_of(emu.url, "EXPORT_IMAGE")
        assert len(images) == 2
        trained_at = trainings[0]["endTime"]
        assert all(t["createTime"] >= trained_at for t in images)
        for path in sorted((tmp_path / "out").glob("*.tif")):
            with rasterio.open(path) as src:
                values = set(np.unique(src.read(1)).tolist())
            assert values <= CLASSES, (path.name, values)


def test_a_restart_adopts_the_training_it_had_sent(tmp_path: Path) -> None:
    # A slow EE: the training runs while the worker is stopped and started again.
    with emulator_with(speed=1.0, task_overhead_seconds=8.0) as emu:
        store = classify_session(tmp_path, emu.url)
        worker = start_worker(store.path)
        try:
            wait_for(lambda: (m := store.model("job")) and m["state"] == M_RUNNING,
                     "the training sent")
        finally:
            worker.stop()
            worker.join(30)
        # As if killed between EE's answer and the store's commit: the row still says
        # "submitting", so the restart sends the same requestId again.
        with store.tx():
            store.conn.execute("UPDATE models SET state = ?, operation = NULL", (M_SUBMITTING,))
        summary = run_session(store.path)
        assert summary.ok, summary.failed
        assert len(tasks_of(emu.url, "EXPORT_CLASSIFIER")) == 1  # adopted, not trained twice


def test_a_failed_training_fails_its_tiles_and_a_retry_trains_again(tmp_path: Path) -> None:
    with emulator_with() as emu:
        # The training points are an EE asset that does not exist: no classifier can be made.
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 1, 0.5]", recipe=(
            'name = "classify"\ntraining_asset = "projects/eebatch-demo/assets/no-such-table"\n'
            'trees = 5\nbands = ["SR_B4"]\nindices = []\n'))
        summary = run_session(store.path)
        assert not summary.ok
        assert len(summary.failed) == 2
        assert all("classifier could not be trained" in error for _, error in summary.failed)
        assert not tasks_of(emu.url, "EXPORT_IMAGE")  # no tile was sent without it
        for unit, _ in summary.failed:
            store.post_command("retry", unit)
        summary = run_session(store.path)
        assert len(summary.failed) == 2  # it fails again, but it was tried again
        assert store.model("job")["tries"] == 1
        events = [r["message"] for r in store.conn.execute(
            "SELECT message FROM events WHERE message LIKE '%could not be trained%'")]
        assert len(events) == 2, events


@pytest.mark.slow
def test_cancelling_the_job_cancels_its_training(tmp_path: Path) -> None:
    with emulator_with(speed=1.0, task_overhead_seconds=30.0) as emu:
        store = classify_session(tmp_path, emu.url)
        worker = start_worker(store.path)
        try:
            wait_for(lambda: (m := store.model("job")) and m["state"] == M_RUNNING,
                     "the training sent")
            for row in store.units():
                store.post_command("cancel", row["id"])
            wait_for(lambda: [t for t in tasks_of(emu.url, "EXPORT_CLASSIFIER")
                              if t["state"] == "CANCELLED"], "the training cancelled")
        finally:
            worker.stop()
            worker.join(30)
        assert not tasks_of(emu.url, "EXPORT_IMAGE")
