"""The Earth Engine emulator as strict as Google (issue 13): early memory failures, the run-time
limit, request validation, the pending-task cap, operations order, a full Drive, restricted
mode and workload tags. Every rule is driven through the real, unmodified earthengine-api."""

from __future__ import annotations

import json
import urllib.request
import warnings
from datetime import datetime
from typing import Any

import pytest

from core.connect import init_ee
from tests.emulator.test_ee import RFC3339, TILE_BOX, composite, wait_status

ee = pytest.importorskip("ee")

PROJECT = "test-project"
DRIVE_FULL = "The user's Drive storage quota has been exceeded."
QUEUE_FULL = "Too many tasks already in the queue (3). Please wait for some of them to complete."


def ndvi() -> Any:
    return composite().normalizedDifference(["SR_B4", "SR_B3"])


def image_task(description: str = "strict", **kw: Any) -> Any:
    kw.setdefault("region", ee.Geometry.Rectangle(TILE_BOX))
    kw.setdefault("scale", 30)
    kw.setdefault("maxPixels", 1e13)
    return ee.batch.Export.image.toDrive(ndvi(), description=description, **kw)


def run_seconds(task: Any) -> float:
    """Simulated seconds from the operation's startTime to its endTime."""
    meta = ee.data.getOperation(task.name)["metadata"]
    start, end = (datetime.strptime(meta[k], RFC3339) for k in ("startTime", "endTime"))
    return (end - start).total_seconds()


def count(emu: Any, key: str) -> int:
    with emu.server.counters_lock:
        return emu.server.counters[key]


def post_json(url: str, body: Any) -> dict[str, Any]:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def state_tasks(emu: Any) -> dict[str, dict[str, Any]]:
    with urllib.request.urlopen(f"{emu.url}/_emulator/state", timeout=10) as resp:
        return {t["id"]: t for t in json.loads(resp.read())["ee"]["tasks"]}


# -- 1. memory failures early, the run-time limit -------------------------------------------


def test_memory_failure_comes_within_memory_fail_seconds_of_the_start(
    emulator_factory: Any,
) -> None:
    # A run planned at 4e6 simulated seconds: a quarter of it would be 11 days (17 min wall).
    emu = emulator_factory(memory_limit_pixels=1000, task_overhead_seconds=4_000_000)
    init_ee(emu.url, PROJECT)
    task = image_task("too_big")
    task.start()
    st = wait_status(task)
    assert st["state"] == "FAILED" and st["error_message"] == "User memory limit exceeded."
    assert 0 < run_seconds(task) <= 300  # memory_fail_seconds


def test_a_slow_export_times_out_at_the_run_time_limit(emulator_factory: Any) -> None:
    # 0.01 pixel-bands a second: the small tile would run for weeks. The default limit (12 h)
    # applies; 100,000x simulated time makes it 0.4 s of wall clock.
    emu = emulator_factory(speed=100_000.0, pixel_rate=0.01)
    assert emu.config.max_run_seconds == 43_200
    init_ee(emu.url, PROJECT)
    task = image_task("slow")
    task.start()
    st = wait_status(task)
    assert st["state"] == "FAILED" and st["error_message"] == "Computation timed out."
    assert run_seconds(task) == pytest.approx(43_200, abs=0.01)
    # 100x faster, the same export runs some hours, within the limit: it completes.
    emu = emulator_factory(speed=100_000.0, pixel_rate=1.0)
    init_ee(emu.url, PROJECT)
    task = image_task("slow_but_allowed")
    task.start()
    assert wait_status(task)["state"] == "COMPLETED"
    assert 3600 < run_seconds(task) < 43_200


# -- 2. validation as Google documents it -----------------------------------------------------


def refused(emu: Any, fn: Any, match: str) -> None:
    """fn() fails with a 400 naming the problem, sent once (a 400 is never retried)."""
    before = count(emu, "POST ee image.export")
    with pytest.raises(ee.EEException, match=match):
        fn()
    assert count(emu, "POST ee image.export") == before + 1


def test_request_id_letters_digits_dashes_at_most_60(ee_emulator: Any) -> None:
    config = image_task("rid").config
    refused(
        ee_emulator,
        lambda: ee.data.exportImage("bad_request_id", dict(config)),
        r"Invalid value for field 'requestId': character '_' is not allowed",
    )
    refused(
        ee_emulator,
        lambda: ee.data.exportImage("a" * 61, dict(config)),
        r"'requestId': must be at most 60 characters \(got 61\)",
    )
    assert ee.data.exportImage("A-z-0-9" + "x" * 53, dict(config))["name"]
    task = image_task("uuid")  # newTaskId: uuid4 with dashes
    task.start()
    assert wait_status(task)["state"] == "COMPLETED"


def test_description_at_most_100_characters_without_whitespace(ee_emulator: Any) -> None:
    refused(
        ee_emulator,
        lambda: image_task("d" * 101).start(),
        r"Invalid value for field 'description': must be at most 100 characters \(got 101\)",
    )
    refused(
        ee_emulator,
        lambda: image_task("my export").start(),
        r"'description': must not contain whitespace \(found ' '\)",
    )
    ok = image_task("d" * 100)
    ok.start()
    assert wait_status(ok)["state"] == "COMPLETED"


def test_strict_names_refuse_other_characters_in_descriptions_and_prefixes(
    ee_emulator: Any,
) -> None:
    refused(
        ee_emulator,
        lambda: image_task("eebatch:s1:u1").start(),
        r"Invalid value for field 'description': character ':' is not allowed; use only "
        r"letters, digits, '-' and '_'\.",
    )
    refused(
        ee_emulator,
        lambda: image_task("fine", fileNamePrefix=".tile_1").start(),
        r"'fileExportOptions\.driveDestination\.filenamePrefix': character '\.' is not allowed",
    )
    gcs = ee.batch.Export.image.toCloudStorage(
        ndvi(),
        description="gcs",
        bucket="b",
        fileNamePrefix="tiles/t.1",
        region=ee.Geometry.Rectangle(TILE_BOX),
        scale=30,
    )
    refused(
        ee_emulator,
        gcs.start,
        r"'fileExportOptions\.cloudStorageDestination\.filenamePrefix': character '\.'",
    )
    # Table exports follow the same rule.
    table = ee.batch.Export.table.toDrive(
        ee.FeatureCollection([ee.Feature(ee.Geometry.Point([10.01, 45.01]), {"a": 1})]),
        description="pts",
        fileNamePrefix="pts.v2",
    )
    with pytest.raises(ee.EEException, match=r"driveDestination\.filenamePrefix': character '\.'"):
        table.start()
    # Letters, digits, '-' and '_' pass; a Cloud Storage prefix keeps its '/' path separators.
    good = [
        image_task("tile_r1-c2", fileNamePrefix="Tile_r1-c2"),
        ee.batch.Export.image.toCloudStorage(
            ndvi(),
            description="gcs_ok",
            bucket="b",
            fileNamePrefix="tiles/t_1",
            region=ee.Geometry.Rectangle(TILE_BOX),
            scale=30,
        ),
    ]
    for task in good:
        task.start()
        assert wait_status(task)["state"] == "COMPLETED"


def test_without_strict_names_dots_pass_but_whitespace_still_fails(emulator_factory: Any) -> None:
    emu = emulator_factory(strict_names=False)
    init_ee(emu.url, PROJECT)
    task = image_task("eebatch:s1:u1.a1", fileNamePrefix=".tile.1")
    task.start()
    assert wait_status(task)["state"] == "COMPLETED"
    with pytest.raises(ee.EEException, match="must not contain whitespace"):
        image_task("two\twords").start()


def test_pending_cap_refuses_one_more_but_a_repeated_request_id_still_answers(
    emulator_factory: Any,
) -> None:
    from googleapiclient.errors import HttpError

    # No slot: every task stays PENDING, the queue never moves on its own.
    emu = emulator_factory(slots=0, max_pending_tasks=3)
    init_ee(emu.url, PROJECT)
    config = image_task("capped").config
    ops = [ee.data.exportImage(f"cap-{i}", dict(config)) for i in range(3)]
    # The client retries a 429 with backoff (~30 s); the refusal is seen on the first answer.
    ee.data.setMaxRetries(0)
    try:
        with pytest.raises(ee.EEException) as err:
            image_task("one_more").start()
        assert str(err.value) == QUEUE_FULL
    finally:
        ee.data.setMaxRetries(5)
    body = {**config, "expression": ee.serializer.encode(config["expression"], for_cloud_api=True)}
    call = ee.data._get_cloud_projects().image().export(project=f"projects/{PROJECT}", body=body)
    with pytest.raises(HttpError) as http_err:
        call.execute(num_retries=0)
    assert http_err.value.resp.status == 429
    assert json.loads(http_err.value.content)["error"]["status"] == "RESOURCE_EXHAUSTED"
    # Dedupe comes before the cap: a resend of an accepted request gets its task back.
    assert ee.data.exportImage("cap-1", dict(config))["name"] == ops[1]["name"]
    # A cancelled task frees its place in the queue.
    ee.data.cancelOperation(ops[0]["name"])
    assert ee.data.exportImage("cap-3", dict(config))["metadata"]["state"] == "PENDING"
    assert len(ee.data.listOperations()) == 4


def test_an_invalid_workload_tag_is_refused(ee_emulator: Any) -> None:
    config = dict(image_task("tagged").config, workloadTag="Not A Tag")
    refused(
        ee_emulator,
        lambda: ee.data.exportImage("bad-tag", config),
        r"Invalid value for field 'workloadTag': 'Not A Tag'\. Tags must be 1-63 characters",
    )


# -- 3. operations order ------------------------------------------------------------------------


@pytest.mark.parametrize("oldest_first", [False, True])
def test_operations_list_pages_in_either_order(emulator_factory: Any, oldest_first: bool) -> None:
    emu = emulator_factory(max_page_size=2, operations_oldest_first=oldest_first, slots=0)
    init_ee(emu.url, PROJECT)
    names = []
    for i in range(5):
        task = image_task(f"page_{i}")
        task.start()
        names.append(task.name)
    before = count(emu, "GET ee operations.list")
    ops = ee.data.listOperations()
    assert count(emu, "GET ee operations.list") - before == 3  # pages of 2, 2, 1
    assert [o["name"] for o in ops] == (names if oldest_first else names[::-1])
    created = [o["metadata"]["createTime"] for o in ops]
    assert created == sorted(created, reverse=not oldest_first)


# -- 4. a full Drive ------------------------------------------------------------------------------


def test_export_into_a_full_drive_fails_with_drives_own_text(emulator_factory: Any) -> None:
    emu = emulator_factory(drive_quota=50_000)
    init_ee(emu.url, PROJECT)
    task = image_task("no_room", folder="full")
    task.start()
    st = wait_status(task)
    assert st["state"] == "FAILED" and st["error_message"] == DRIVE_FULL
    assert emu.drive.find_folders("full") == []


# -- 5. restricted mode and workload tags --------------------------------------------------------


def test_restricted_mode_makes_the_client_warn(ee_emulator: Any) -> None:
    url = f"{ee_emulator.url}/_emulator/ee/quota_status"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ee.data.listOperations()
    assert not [w for w in seen if "restricted mode" in str(w.message)]
    assert post_json(url, {"parallelism_restricted": True}) == {"parallelism_restricted": True}
    with pytest.warns(UserWarning, match="restricted mode"):
        ee.data.listOperations()
    with pytest.warns(UserWarning, match="restricted mode"):
        image_task("while_restricted").start()
    post_json(url, {"parallelism_restricted": False})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ee.data.listOperations()
    assert not [w for w in seen if "restricted mode" in str(w.message)]


def test_workload_tag_is_kept_on_the_task(ee_emulator: Any) -> None:
    ee.data.setWorkloadTag("eebatch-job_7")
    try:
        tagged = image_task("tagged")  # the Task captures the tag when it is created
    finally:
        ee.data.resetWorkloadTag(True)
    tagged.start()
    untagged = image_task("untagged")
    untagged.start()
    tasks = state_tasks(ee_emulator)
    assert tasks[tagged.id]["workload_tag"] == "eebatch-job_7"
    assert tasks[untagged.id]["workload_tag"] == ""


# -- the batch model's part, on a manual clock ----------------------------------------------------


def test_model_dedupes_before_the_cap_and_fails_memory_early() -> None:
    from core.emulator.batch import MEMORY_MSG, BatchModel, QueueFull
    from core.emulator.clock import ManualClock
    from core.emulator.config import EmulatorConfig

    clock = ManualClock(1_800_000_000.0)
    cfg = EmulatorConfig(slots=1, max_pending_tasks=1, memory_limit_pixels=10, jitter=0.0)
    m = BatchModel(cfg, clock)
    big, _ = m.submit("p", "EXPORT_IMAGE", "big", request_id="r0", pixels=10**12)
    m.advance()  # big runs (planned for 5e5 s); one more may wait
    waiting, _ = m.submit("p", "EXPORT_IMAGE", "w", request_id="r1")
    with pytest.raises(QueueFull, match=r"queue \(1\)"):
        m.submit("p", "EXPORT_IMAGE", "x", request_id="r2")
    assert m.submit("p", "EXPORT_IMAGE", "w", request_id="r1") == (waiting, False)
    m.submit("other", "EXPORT_IMAGE", "x", request_id="r2")  # the cap is per project
    clock.advance(10_000)
    m.advance()
    assert big.error == {"code": 8, "message": MEMORY_MSG}
    assert big.end_time is not None and big.start_time is not None
    assert big.end_time - big.start_time == cfg.memory_fail_seconds
