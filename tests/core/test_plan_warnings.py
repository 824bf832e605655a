"""Mistakes caught before anything runs (issue 11): a box typed (lat, lon), tiles tiny against the
export scale, an emulator job without its emulator; and the EE time and Drive peak `plan` shows."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from core.demo import write_demo_job
from core.grid import make_tiles
from core.plan import BATCH_MODEL, make_plan, plan_warnings
from core.spec import SpecError, load_spec
from tests.conftest import BASE_JOB, write_job
from tests.core.test_spec import FILE_REGION, geojson_text

EMULATOR = '\n[backend]\nkind = "emulator"\nurl = "http://127.0.0.1:8787"\n'


def job(tmp_path: Path, body: str, **files: str) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return write_job(tmp_path, body + EMULATOR)


def with_bbox(bbox: str) -> str:
    return BASE_JOB.replace("[0, 0, 4, 2]", bbox)


# -- a region in (lat, lon) order --------------------------------------------------------------

def test_a_polar_box_that_is_a_mid_latitude_box_typed_lat_first_is_warned(tmp_path: Path) -> None:
    # Florida (lon -87..-80, lat 25..31) typed latitude first lands in Antarctica.
    spec = load_spec(job(tmp_path, with_bbox("[25, -87, 31, -80]")))
    assert spec.region.bounds == (25, -87, 31, -80)  # a warning, not a correction
    assert len(spec.warnings) == 1
    assert spec.warnings[0].startswith("region.bbox: [25, -87, 31, -80] lies wholly south of "
                                       "60°S"), spec.warnings
    assert "the box meant is [-87, 25, -80, 31]" in spec.warnings[0]
    assert f"warning: {spec.warnings[0]}" in plan_warnings(make_plan(spec))


@pytest.mark.parametrize("bbox", [
    "[0, 0, 4, 2]",              # the tropics
    "[-165, 60, -140, 70]",      # Alaska: its longitudes could not be latitudes
    "[-25, 55, -13, 67]",        # Iceland's box reaches south of 60°N
])
def test_boxes_that_are_not_a_swap_give_no_warning(tmp_path: Path, bbox: str) -> None:
    assert load_spec(job(tmp_path, with_bbox(bbox))).warnings == ()


def test_a_region_file_in_lat_lon_order_is_warned(tmp_path: Path) -> None:
    # India's box written [lat, lon] in GeoJSON reads as the Arctic.
    ring = [[8, 68], [35, 68], [35, 89], [8, 89], [8, 68]]
    spec = load_spec(job(tmp_path, FILE_REGION, **{"r.geojson": geojson_text(ring)}))
    assert spec.warnings == ("region.file: 'r.geojson' lies wholly north of 60°N; if it was "
                             "written in (lat, lon) order, the box meant is [68, 8, 89, 35] "
                             "(west, south, east, north)",)


def named(body: str, name: str) -> str:
    return body.replace('name = "t"', f'name = "{name}"', 1)


def test_a_box_typed_lat_first_that_misses_the_place_the_job_names_is_warned(
        tmp_path: Path) -> None:
    # Kenya (lon 34..42, lat -5..5) typed latitude first lands in Spain and Algeria: on the
    # globe, not polar, so only the job's name ("kenya-ndvi-2023") can tell.
    spec = load_spec(job(tmp_path, named(with_bbox("[-4.9, 33.9, 4.6, 41.9]"),
                                         "kenya-ndvi-2023")))
    assert spec.region.bounds == (-4.9, 33.9, 4.6, 41.9)  # a warning, not a correction
    assert len(spec.warnings) == 1
    warning = spec.warnings[0]
    assert warning.startswith("region.bbox: [-4.9, 33.9, 4.6, 41.9] lies far from Kenya ("), warning
    assert warning.endswith("which the job's name names; if it was written in (lat, lon) order, "
                            "the box meant is [33.9, -4.9, 41.9, 4.6] (west, south, east, north)")
    assert f"warning: {warning}" in plan_warnings(make_plan(spec))


def test_the_job_files_name_names_the_place_too(tmp_path: Path) -> None:
    # Kenya drawn as a GeoJSON outline in [lat, lon] order, in a job file named kenya.toml.
    ring = [[-4.9, 33.9], [4.6, 33.9], [4.6, 41.9], [-4.9, 41.9], [-4.9, 33.9]]
    (tmp_path / "r.geojson").write_text(geojson_text(ring))
    path = tmp_path / "kenya.toml"
    path.write_text(FILE_REGION + EMULATOR)
    (warning,) = load_spec(path).warnings
    assert warning.startswith("region.file: 'r.geojson' lies far from Kenya ("), warning
    assert "the box meant is [33.9, -4.9, 41.9, 4.6]" in warning


@pytest.mark.parametrize(("name", "bbox"), [
    ("kenya-ndvi-2023", "[33.9, -4.9, 41.9, 4.6]"),   # Kenya where Kenya is
    ("kenya-ndvi-2023", "[0, 0, 4, 2]"),              # elsewhere, but no swap lands there
    ("ndvi-2023", "[-4.9, 33.9, 4.6, 41.9]"),         # names no place
    ("new-mexico-fire", "[-109, 31.4, -103, 37]"),    # New Mexico, not Mexico
])
def test_a_region_that_is_no_swap_of_the_named_place_gives_no_warning(
        tmp_path: Path, name: str, bbox: str) -> None:
    assert load_spec(job(tmp_path, named(with_bbox(bbox), name))).warnings == ()


def test_a_region_file_off_the_globe_names_the_swap(tmp_path: Path) -> None:
    ring = [[32, -124], [42, -124], [42, -114], [32, -114], [32, -124]]  # California, lat first
    path = job(tmp_path, FILE_REGION, **{"r.geojson": geojson_text(ring)})
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.problems == [
        f"{path}: region.file: {str(tmp_path / 'r.geojson')!r} reaches off the globe (bounds "
        "32, -124, 42, -114 in EPSG:4326): south and north must be latitudes between -90 and "
        "90; is its CRS right?; read as (lat, lon) it would be [-124, 32, -114, 42] (west, "
        "south, east, north)"]


# -- tiles tiny against the export scale -------------------------------------------------------

def tiny_tiles_job(tmp_path: Path, bbox: str = "[0, 0, 4, 2]", size: float = 0.01) -> Path:
    return job(tmp_path, with_bbox(bbox).replace("size = 1", f"size = {size}")
               + "\n[export]\nscale = 30\n")


def test_tiny_tiles_are_warned_with_a_grid_size_that_gives_fewer_tasks(tmp_path: Path) -> None:
    spec = load_spec(tiny_tiles_job(tmp_path))
    plan = make_plan(spec)
    assert plan.units == 80_000
    # 0.01° at 30 m is 37 pixels; 2048 pixels of 30 m are 0.552°, rounded to 0.55.
    better = dataclasses.replace(spec, grid=dataclasses.replace(spec.grid, size=0.55))
    tasks = len(make_tiles(better))
    assert tasks < 100
    assert plan_warnings(plan) == [
        "warning: grid.size: tiles of about 37×37 pixels at 30 m make 80,000 tasks that spend "
        f"most of their time starting; grid.size = 0.55 makes tiles of about 2,041 pixels a side "
        f"and {tasks} tasks"]


def test_tiles_of_a_few_thousand_pixels_are_not_warned(tmp_path: Path) -> None:
    assert plan_warnings(make_plan(load_spec(tiny_tiles_job(tmp_path, size=1)))) == []


def test_a_region_no_bigger_than_one_tile_is_not_warned(tmp_path: Path) -> None:
    """Tiny tiles of a tiny region: larger tiles would not make fewer tasks."""
    plan = make_plan(load_spec(tiny_tiles_job(tmp_path, bbox="[0.001, 0.001, 0.009, 0.009]")))
    assert plan.units == 1
    assert plan_warnings(plan) == []


def test_a_job_of_few_tasks_is_not_warned_for_small_tiles(tmp_path: Path) -> None:
    """The demo: 97 tiles of about 75 pixels finish in a minute; warning would be noise."""
    plan = make_plan(load_spec(write_demo_job("http://127.0.0.1:8787")))
    assert plan.units < 1000 and float(np.median(plan.tile_pixels)) < 256 ** 2
    assert plan_warnings(plan) == []


# -- EE time and the Drive peak ----------------------------------------------------------------

MONTHS = '\n[time]\nstart = 2023-01-01\nend = 2023-04-01\nstep = "1 month"\n'


def test_ee_time_follows_the_batch_model_at_the_projects_slots(tmp_path: Path) -> None:
    plan = make_plan(load_spec(job(tmp_path, BASE_JOB + MONTHS)))
    assert (plan.units, plan.bands, plan.slots) == (24, 3, BATCH_MODEL.slots)
    work = (plan.units * BATCH_MODEL.task_overhead_seconds
            + plan.pixels * 3 / BATCH_MODEL.pixel_rate)
    assert plan.ee_seconds == pytest.approx(work / BATCH_MODEL.slots)
    # max_tasks below the project's slots is what runs at once
    one = make_plan(load_spec(job(tmp_path, BASE_JOB + MONTHS + "\n[limits]\nmax_tasks = 1\n")))
    assert one.slots == 1 and one.ee_seconds == pytest.approx(work)


def test_ee_time_is_at_least_the_longest_task(tmp_path: Path) -> None:
    plan = make_plan(load_spec(job(tmp_path, BASE_JOB)))  # 8 tiles of 1° at 30 m
    longest = (BATCH_MODEL.task_overhead_seconds
               + float(plan.tile_pixels.max()) * plan.bands / BATCH_MODEL.pixel_rate)
    assert plan.ee_seconds >= longest
    single = make_plan(load_spec(job(tmp_path, with_bbox("[0, 0, 1, 1]"))))
    assert single.units == 1
    assert single.ee_seconds == pytest.approx(
        BATCH_MODEL.task_overhead_seconds
        + float(single.tile_pixels[0]) * single.bands / BATCH_MODEL.pixel_rate)


def test_drive_peak_is_the_largest_exports_max_tasks_can_hold(tmp_path: Path) -> None:
    # Tiles from the equator to 40°N: the southern ones hold the most pixels.
    body = with_bbox("[0, 0, 1, 40]") + MONTHS + "\n[limits]\nmax_tasks = 4\n"
    plan = make_plan(load_spec(job(tmp_path, body)))
    largest = np.sort(plan.tile_pixels)[::-1]
    # three periods of the largest tile and one of the next
    expected = (3 * largest[0] + largest[1]) * plan.bytes_per_pixel
    assert plan.drive_peak == int(expected)
    assert plan.drive_peak < plan.est_bytes


def test_drive_peak_never_passes_the_budget(tmp_path: Path) -> None:
    body = BASE_JOB + '\n[limits]\ndrive_budget = "1 MB"\n'
    plan = make_plan(load_spec(job(tmp_path, body)))
    assert plan.est_bytes > 10**6
    assert plan.drive_peak == 10**6


# -- the backend -------------------------------------------------------------------------------

def test_a_job_without_backend_plans_with_a_warning(tmp_path: Path) -> None:
    spec = load_spec(write_job(tmp_path, BASE_JOB))
    assert spec.warnings == ('[backend]: is missing: the job can be planned but not run; add '
                             'kind = "earthengine" with project, or kind = "emulator" with url',)


def test_the_demo_job_names_its_emulator(tmp_path: Path) -> None:
    """The packaged demo job has no url (its emulator starts with the demo); the job the demo
    stores names the emulator's, so it passes the check a user's job must pass."""
    path = write_demo_job("http://127.0.0.1:8787")
    spec = load_spec(path)
    assert (spec.backend.kind, spec.backend.url) == ("emulator", "http://127.0.0.1:8787")
    assert spec.warnings == ()
    bare = write_job(tmp_path, path.read_text().replace('url = "http://127.0.0.1:8787"\n', ""))
    (tmp_path / "california.geojson").write_bytes((path.parent / "california.geojson").read_bytes())
    with pytest.raises(SpecError, match=r"backend\.url: is required"):
        load_spec(bare)


def test_a_bad_date_that_is_not_the_problem_keeps_the_parsers_message(tmp_path: Path) -> None:
    path = write_job(tmp_path, BASE_JOB + "\n[time]\nstart = 2023-06-01 junk\nend = 2023-07-01\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.problems[0].startswith(f"{path}: not valid TOML: ")
