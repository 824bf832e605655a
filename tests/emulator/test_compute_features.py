"""Direct tables (issue 16): the emulator's table:computeFeatures through the real
earthengine-api, and the adapter's EarthEngine.compute_table.

A table unit of the stats and sample recipes (units of the examples, built by the recipes)
fetched directly is its batch export's CSV from Drive: the same columns, order and values,
byte for byte. Pages at EE's 1,000 features (and the emulator's page cap); the 40 requests in
flight are computePixels' (a 429 beyond, for either); time paced on the simulated clock and
EECU charged by the work model; memory and time failures with EE's messages (classified as
EE's: split); requests EE refuses, with Google's texts."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from googleapiclient.errors import HttpError

from core.backends.earthengine import EarthEngine
from core.backends.failures import Kind, classify
from core.connect import make_drive
from core.emulator.batch import MEMORY_MSG, TIMEOUT_MSG
from core.emulator.clock import ManualClock
from core.emulator.pixels import CONCURRENCY_MSG
from tests.emulator.test_compute_pixels import direct, wait_until

ee = pytest.importorskip("ee")

PROJECT = "test-project"
EXAMPLES = Path(__file__).parents[2] / "examples"
STATS = ("california-ndvi-stats", "r13c14_20230101")  # a tile meeting three zones
SAMPLE = ("field-points", "r204c233_20230401")  # a tile holding three points
CALLS = "POST ee table.computeFeatures"


def unit_collection(example: str, unit_id: str) -> Any:
    """The FeatureCollection the example's recipe builds for one unit (what the worker
    sends, by either route)."""
    from core.plan import make_plan
    from core.recipes.base import UnitWork
    from core.recipes.build import build
    from core.spec import load_spec

    spec = load_spec(EXAMPLES / f"{example}.toml")
    row = next(r for r in make_plan(spec).unit_rows() if r[0] == unit_id)
    kind, collection = build(spec, UnitWork(row[0], (row[7], row[8], row[9], row[10]),
                                            row[5], row[6]))
    assert kind == "table"
    return collection


def image() -> Any:
    return (ee.ImageCollection("LANDSAT/LC08/C02/T1_L2").filterDate("2023-06-01", "2023-07-01")
            .median().select(["SR_B3", "SR_B4", "SR_B5"]))


def pixel_sample() -> Any:
    """image.sample() without geometries (EE's empty MultiPoint in .geo), and a text property
    that needs quoting in a CSV."""
    region = ee.Geometry.Rectangle([-122.30, 37.70, -122.29, 37.71], None, False)
    return image().sample(region=region, scale=30, numPixels=12, seed=3).map(
        lambda f: f.set("note", 'a "quoted", text'))


def export_csv(emu: Any, collection: Any, name: str) -> bytes:
    """The batch export of `collection` to Drive as CSV (as the worker sends a table unit),
    downloaded from the emulator's Drive."""
    task = ee.batch.Export.table.toDrive(collection, description=name, folder="direct",
                                         fileNamePrefix=name, fileFormat="CSV")
    task.start()
    status = wait_until(lambda: (s := task.status())["state"] in ("COMPLETED", "FAILED") and s,
                        f"export {name}")
    assert status["state"] == "COMPLETED", status
    drive = make_drive(emu.url)
    (f,) = drive.ListFile({"q": f"title = '{name}.csv' and trashed = false"}).GetList()
    return f.GetContentString(encoding="utf-8").encode("utf-8")


def frame(data: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(data), keep_default_na=False)


UNIT = ["tile", "start", "end"]


@pytest.mark.parametrize(("make", "columns", "rows"), [
    (lambda: unit_collection(*STATS),
     ["system:index", "NDVI_count", "NDVI_mean", "NDVI_p10", "NDVI_p90", "NDVI_stdDev", "end",
      "start", "tile", "zone", ".geo"], 3),
    (lambda: unit_collection(*SAMPLE),
     ["system:index", "NDVI", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "crop", "end", "site",
      "start", "tile", ".geo"], 3),
    (pixel_sample, ["system:index", "SR_B3", "SR_B4", "SR_B5", "note", ".geo"], 12),
], ids=["stats", "sample", "pixel-sample"])
def test_a_table_fetched_directly_is_its_batch_exports_csv(emulator_factory, make, columns,
                                                           rows):
    emu = emulator_factory()
    client = EarthEngine.for_emulator(emu.url, PROJECT)
    collection = make()
    exported = export_csv(emu, collection, "unit")
    fetched = client.compute_table(collection, workload_tag="job-a")
    got, want = frame(fetched), frame(exported)
    # What a user reads: the same table, column for column, row for row, value for value.
    pd.testing.assert_frame_equal(got, want)
    assert list(got.columns) == columns and len(got) == rows
    assert fetched == exported  # and the same file, byte for byte
    # Computed from the world, not constants: the first statistic or band differs by row.
    assert got[columns[1]].nunique() > 1
    state = direct(emu)
    assert state["tables"] == {"pages": 1, "features": rows, "failed": {}}
    assert state["succeeded"] == 1 and state["eecu_by_tag"]["job-a"] > 0


def test_a_sample_without_geometries_gets_ees_empty_multipoint(emulator_factory):
    emu = emulator_factory()
    client = EarthEngine.for_emulator(emu.url, PROJECT)
    got = frame(client.compute_table(pixel_sample()))
    assert set(got[".geo"]) == {'{"type":"MultiPoint","coordinates":[]}'}
    assert set(got["note"]) == {'a "quoted", text'}


def test_a_table_larger_than_a_page_comes_in_pages(emulator_factory):
    emu = emulator_factory(max_page_size=2)
    client = EarthEngine.for_emulator(emu.url, PROJECT)
    collection = unit_collection(*SAMPLE)
    exported = export_csv(emu, collection, "unit")
    # Three features at two a page: two requests, and the export's file.
    assert client.compute_table(collection) == exported
    assert emu.state()["requests"][CALLS] == 2
    assert direct(emu)["tables"] == {"pages": 2, "features": 3, "failed": {}}
    # The raw pages: pageSize is respected below the cap, capped above it.
    one = ee.data.computeFeatures({"expression": collection, "pageSize": 1})
    assert one["type"] == "FeatureCollection" and len(one["features"]) == 1
    big = ee.data.computeFeatures({"expression": collection, "pageSize": 5000})
    assert len(big["features"]) == 2 and big["nextPageToken"]
    last = ee.data.computeFeatures({"expression": collection, "pageSize": 5000,
                                    "pageToken": big["nextPageToken"]})
    assert len(last["features"]) == 1 and "nextPageToken" not in last
    # EE's Feature message: type, geometry and properties, no id.
    assert set(last["features"][0]) == {"type", "geometry", "properties"}
    # earthengine-api's own pager follows the tokens to the end.
    table = ee.data.computeFeatures({"expression": collection, "fileFormat": "PANDAS_DATAFRAME"})
    assert len(table) == 3 and list(table["site"]) == list(frame(exported)["site"])
    # A token is good for its own expression only.
    with pytest.raises(ee.EEException, match=r"^Invalid pageToken '"):
        ee.data.computeFeatures({"expression": unit_collection(*STATS),
                                 "pageToken": big["nextPageToken"]})


def test_a_page_holds_at_most_1000_features(emulator_factory):
    emu = emulator_factory()
    EarthEngine.for_emulator(emu.url, PROJECT)
    points = ee.FeatureCollection([ee.Feature(ee.Geometry.Point([i * 1e-3, 0.0]), {"i": i})
                                   for i in range(1001)])
    page = ee.data.computeFeatures({"expression": points, "pageSize": 5000})
    assert len(page["features"]) == 1000 and page["nextPageToken"]
    rest = ee.data.computeFeatures({"expression": points, "pageToken": page["nextPageToken"]})
    assert [f["properties"]["i"] for f in rest["features"]] == [1000]


def manual(emu: Any) -> ManualClock:
    """Direct requests timed by a clock the test moves (nothing finishes until it does)."""
    clock = ManualClock()
    emu.ee.direct.clock = clock
    return clock


def test_table_requests_share_computepixels_forty_slots_and_a_41st_gets_429(emulator_factory):
    emu = emulator_factory()
    clock = manual(emu)
    client = EarthEngine.for_emulator(emu.url, PROJECT)
    collection = unit_collection(*SAMPLE)
    results: list[bytes | BaseException] = []

    def one() -> None:
        try:
            results.append(client.compute_table(collection))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(40)]
    for t in threads:
        t.start()
    # All 40 in flight at once: the adapter does not hold its lock while EE computes.
    wait_until(lambda: direct(emu)["in_flight"] == 40, "40 requests in flight")
    with pytest.raises(HttpError) as err:
        client.compute_table(collection)
    assert err.value.resp.status == 429 and err.value.reason == CONCURRENCY_MSG
    assert classify(err.value).kind is Kind.TRANSIENT  # retried with backoff, not failed
    # The slots are the project's, whatever the request: computePixels finds none either.
    with pytest.raises(HttpError) as err:
        client.compute_pixels(image(), crs="EPSG:4326", transform=[1e-3, 0, 0, 0, -1e-3, 0],
                              width=8, height=8)
    assert err.value.resp.status == 429
    clock.advance(600)
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 40 and all(isinstance(r, bytes) for r in results), results[:3]
    assert len(set(results)) == 1 and len(frame(results[0])) == 3  # type: ignore[arg-type]
    state = direct(emu)
    assert state["peak_concurrency"] == 40 and state["in_flight"] == 0
    assert state["rejected"] == {"429": 2} and state["tables"]["pages"] == 40


def points(n: int) -> Any:
    """n features at single points (one pixel each), sampled with their geometry."""
    return ee.FeatureCollection([ee.Feature(ee.Geometry.Point([-122.3 + i * 0.01, 37.7]),
                                            {"id": i}) for i in range(n)])


def test_time_is_paced_by_the_work_on_the_simulated_clock_and_eecu_charged(emulator_factory):
    # Half a pixel-band a simulated second, 2 s of latency, no time limit to speak of. Four
    # points sampled in three bands read 4 x 3 pixel-bands, and four features answered count
    # 100 each: 412 pixel-bands, 824 s of work (0.8 s of the test's wall time).
    emu = emulator_factory(direct_pixel_rate=0.5, direct_latency_seconds=2.0,
                           direct_timeout_seconds=1e6)
    client = EarthEngine.for_emulator(emu.url, PROJECT)
    sampled = image().sampleRegions(collection=points(4), scale=30, geometries=True)
    start = emu.ee.clock.now()
    assert len(frame(client.compute_table(sampled, workload_tag="job-a"))) == 4
    assert emu.ee.clock.now() - start >= 826.0  # never answered before its time
    assert direct(emu)["eecu_by_tag"] == {"job-a": pytest.approx(824.0, abs=1e-3)}
    # Each page is a computation of its own: two pages of the same table cost it twice.
    emu2 = emulator_factory(direct_pixel_rate=10.0, max_page_size=2)
    client2 = EarthEngine.for_emulator(emu2.url, PROJECT)
    client2.compute_table(sampled, workload_tag="job-b")
    assert direct(emu2)["eecu_by_tag"] == {"job-b": pytest.approx(2 * 41.2, abs=1e-3)}


def test_memory_and_time_limits_fail_with_ees_messages_and_cost_eecu(emulator_factory):
    # The stats unit reads a 4-degree tile at 500 m: some 600,000 model pixels of one band.
    collection = unit_collection(*STATS)
    emu = emulator_factory(direct_pixel_rate=1000.0, direct_timeout_seconds=30.0)
    client = EarthEngine.for_emulator(emu.url, PROJECT)
    start = emu.ee.clock.now()
    with pytest.raises(HttpError) as err:
        client.compute_table(collection)
    assert err.value.resp.status == 400 and err.value.reason == TIMEOUT_MSG
    assert classify(err.value).kind is Kind.SPLIT
    assert emu.ee.clock.now() - start >= 30.0  # failed at the interactive limit
    state = direct(emu)
    assert state["failed"] == {TIMEOUT_MSG: 1} and state["succeeded"] == 0
    assert state["eecu_seconds"] == pytest.approx(28.0, abs=1e-3)  # the limit less latency
    # Within the limits (a few points): served by the same emulator.
    assert len(frame(client.compute_table(unit_collection(*SAMPLE)))) == 3
    # Over the memory of one interactive computation: EE's memory error, early.
    emu = emulator_factory(direct_memory_limit_pixels=10_000)
    client = EarthEngine.for_emulator(emu.url, PROJECT)
    with pytest.raises(HttpError) as err:
        client.compute_table(collection)
    assert err.value.resp.status == 400 and err.value.reason == MEMORY_MSG
    assert classify(err.value).kind is Kind.SPLIT
    state = direct(emu)
    assert state["failed"] == {MEMORY_MSG: 1} and state["tables"]["failed"] == {MEMORY_MSG: 1}
    assert state["eecu_seconds"] > 0


def test_requests_ee_refuses_get_googles_texts(ee_emulator):
    emu = ee_emulator
    collection = points(2)

    def refused(params: dict[str, Any]) -> str:
        before = emu.state()["requests"].get(CALLS, 0)
        with pytest.raises(ee.EEException) as err:
            ee.data.computeFeatures({"expression": collection, **params})
        # A 400: answered once, never retried by the client.
        assert emu.state()["requests"][CALLS] == before + 1
        return str(err.value)

    assert refused({"pageSz": 10}) == (
        'Invalid JSON payload received. Unknown name "pageSz": Cannot find field.')
    assert refused({"pageSize": "ten"}) == "Invalid value at 'page_size' (TYPE_INT32), 'ten'"
    assert refused({"pageSize": -1}).startswith("Invalid value at 'page_size' (-1)")
    assert refused({"pageToken": "nonsense"}) == "Invalid pageToken 'nonsense'."
    assert direct(emu)["rejected"] == {"400": 4} and direct(emu)["requests"] == 0
    # An image is no table: refused by the computation, with EE's status.
    with pytest.raises(ee.EEException, match="must be a FeatureCollection"):
        ee.data.computeFeatures({"expression": image()})
    # A collection that can be computed is served on the same emulator.
    assert len(ee.data.computeFeatures({"expression": collection})["features"]) == 2
