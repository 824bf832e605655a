"""Bad job files: one line per problem naming file, key and reason; all problems at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.spec import SpecError, load_spec
from tests.conftest import BASE_JOB, write_job

EXAMPLES = Path(__file__).parents[2] / "examples"


def problems(tmp_path: Path, body: str) -> list[str]:
    path = write_job(tmp_path, body)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    for line in info.value.problems:
        assert line.startswith(f"{path}: "), line
    return info.value.problems


def one(tmp_path: Path, body: str, key: str, words: str) -> None:
    lines = problems(tmp_path, body)
    assert len(lines) == 1, lines
    assert f": {key}: " in lines[0], lines[0]
    assert words in lines[0], lines[0]


def test_examples_are_valid() -> None:
    for path in EXAMPLES.glob("*.toml"):
        spec = load_spec(path)
        assert spec.name


def test_california_example_is_the_classic_job() -> None:
    spec = load_spec(EXAMPLES / "california.toml")
    assert spec.region.bounds == (-124.5, 32.5, -114.0, 42.0)
    assert spec.grid.size == 2
    assert spec.recipe.params["collection"] == "LANDSAT/LC08/C02/T1_L2"
    assert spec.recipe.params["reducer"] == "median"
    assert (str(spec.time.start), str(spec.time.end)) == ("2023-06-01", "2023-09-01")


def test_unknown_key(tmp_path: Path) -> None:
    one(tmp_path, BASE_JOB + "\n[limits]\nmax_taks = 3\n", "limits.max_taks", "unknown key")


def test_unknown_section(tmp_path: Path) -> None:
    one(tmp_path, BASE_JOB + "\n[limit]\nmax_tasks = 3\n", "[limit]", "unknown section")


def test_wrong_type(tmp_path: Path) -> None:
    one(tmp_path, BASE_JOB.replace("size = 1", 'size = "two"'), "grid.size", "expected")


def test_unknown_recipe_parameter(tmp_path: Path) -> None:
    one(tmp_path, BASE_JOB + 'band = ["B1"]\n', "recipe.band", "unknown parameter")


def test_bbox_west_not_less_than_east(tmp_path: Path) -> None:
    one(tmp_path, BASE_JOB.replace("[0, 0, 4, 2]", "[4, 0, 0, 2]"), "region.bbox",
        "west (4) must be less than east (0)")


def test_region_file_missing(tmp_path: Path) -> None:
    body = BASE_JOB.replace("bbox = [0, 0, 4, 2]", 'file = "nowhere.geojson"')
    one(tmp_path, body, "region.file", "does not exist")


def test_region_file_unreadable(tmp_path: Path) -> None:
    (tmp_path / "bad.geojson").write_text("this is not geojson")
    body = BASE_JOB.replace("bbox = [0, 0, 4, 2]", 'file = "bad.geojson"')
    one(tmp_path, body, "region.file", "cannot read")


def _geojson(tmp_path: Path, coords: list) -> None:
    feature = {"type": "Feature", "properties": {},
               "geometry": {"type": "Polygon", "coordinates": [coords]}}
    (tmp_path / "r.geojson").write_text(json.dumps({"type": "FeatureCollection",
                                                    "features": [feature]}))


def test_region_invalid_geometry(tmp_path: Path) -> None:
    _geojson(tmp_path, [[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]])  # a bow tie
    body = BASE_JOB.replace("bbox = [0, 0, 4, 2]", 'file = "r.geojson"')
    one(tmp_path, body, "region.file", "Self-intersection")


def test_region_empty(tmp_path: Path) -> None:
    (tmp_path / "r.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    body = BASE_JOB.replace("bbox = [0, 0, 4, 2]", 'file = "r.geojson"')
    one(tmp_path, body, "region.file", "no features")


def test_region_file_crs_is_honoured(tmp_path: Path) -> None:
    # A square in Web Mercator metres around (0°, 0°) .. (1°, 1°).
    coords = [[0, 0], [111319.49, 0], [111319.49, 111325.14], [0, 111325.14], [0, 0]]
    collection = {"type": "FeatureCollection",
                  "crs": {"type": "name", "properties": {"name": "EPSG:3857"}},
                  "features": [{"type": "Feature", "properties": {},
                                "geometry": {"type": "Polygon", "coordinates": [coords]}}]}
    (tmp_path / "r.geojson").write_text(json.dumps(collection))
    spec = load_spec(write_job(tmp_path, BASE_JOB.replace("bbox = [0, 0, 4, 2]",
                                                          'file = "r.geojson"')))
    west, south, east, north = spec.region.bounds
    assert south == pytest.approx(0, abs=1e-6)
    assert west == pytest.approx(0, abs=1e-6) and east == pytest.approx(1, abs=1e-4)
    assert north == pytest.approx(1, abs=1e-3)


def test_tile_size_gives_too_many_units(tmp_path: Path) -> None:
    body = BASE_JOB.replace("[0, 0, 4, 2]", "[-100, -50, 100, 50]").replace("size = 1",
                                                                             "size = 0.1")
    one(tmp_path, body, "grid.size", "more than 1,000,000")


def test_tile_size_gives_no_unit(tmp_path: Path) -> None:
    one(tmp_path, BASE_JOB.replace("size = 1", "size = 0"), "grid.size", "must be > 0")


def test_end_before_start(tmp_path: Path) -> None:
    body = BASE_JOB + "\n[time]\nstart = 2023-06-01\nend = 2023-05-01\n"
    one(tmp_path, body, "time.end", "is not after time.start")


def test_all_problems_at_once(tmp_path: Path) -> None:
    body = (BASE_JOB.replace("[0, 0, 4, 2]", "[4, 0, 0, 2]").replace("size = 1", 'size = "x"')
            + "\n[time]\nstart = 2023-06-01\nend = 2023-05-01\n[limits]\nspeed = 3\n")
    keys = {line.split(": ")[1] for line in problems(tmp_path, body)}
    assert keys == {"region.bbox", "grid.size", "time.end", "limits.speed"}


def test_not_toml(tmp_path: Path) -> None:
    lines = problems(tmp_path, "[job\nname=")
    assert "not valid TOML" in lines[0]


def test_earthengine_backend_needs_project(tmp_path: Path) -> None:
    one(tmp_path, BASE_JOB + '\n[backend]\nkind = "earthengine"\n', "backend.project",
        "is required")


def test_emulator_url_must_be_local(tmp_path: Path) -> None:
    one(tmp_path, BASE_JOB + '\n[backend]\nkind = "emulator"\nurl = "http://10.0.0.1:80"\n',
        "backend.url", "127.0.0.1")


def test_drive_budget_is_a_size(tmp_path: Path) -> None:
    one(tmp_path, BASE_JOB + '\n[limits]\ndrive_budget = "ten gigs"\n', "limits.drive_budget",
        "is not a size")
    spec = load_spec(write_job(tmp_path, BASE_JOB + '\n[limits]\ndrive_budget = "2.5 GB"\n'))
    assert spec.limits.drive_budget == 2_500_000_000
