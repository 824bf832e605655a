"""Bad job files: one line per problem naming file, key and reason; all problems at once."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.problems import Problem
from core.spec import SpecError, load_spec
from tests.conftest import BASE_JOB, write_job

EXAMPLES = Path(__file__).parents[2] / "examples"


def found(tmp_path: Path, body: str) -> list[Problem]:
    """The job's problems as values; each prints as "FILE: KEY: MESSAGE"."""
    path = write_job(tmp_path, body)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    for problem in info.value.problems:
        assert isinstance(problem, Problem) and problem.path == path
        assert str(problem) == (f"{path}: {problem.key}: {problem.message}" if problem.key
                                else f"{path}: {problem.message}")
    return info.value.problems


def problems(tmp_path: Path, body: str) -> list[str]:
    path = write_job(tmp_path, body)
    lines = [str(problem) for problem in found(tmp_path, body)]
    for line in lines:
        assert line.startswith(f"{path}: "), line
    return lines


def one(tmp_path: Path, body: str, key: str, words: str) -> None:
    values = found(tmp_path, body)
    lines = [str(problem) for problem in values]
    assert len(lines) == 1, lines
    assert f": {key}: " in lines[0], lines[0]
    assert words in lines[0], lines[0]
    assert values[0].key == key and words in values[0].message, values[0]


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


def geojson_text(coords: list, crs: str | None = None) -> str:
    feature = {"type": "Feature", "properties": {},
               "geometry": {"type": "Polygon", "coordinates": [coords]}}
    collection: dict = {"type": "FeatureCollection", "features": [feature]}
    if crs:
        collection["crs"] = {"type": "name", "properties": {"name": crs}}
    return json.dumps(collection)


def _geojson(tmp_path: Path, coords: list) -> None:
    (tmp_path / "r.geojson").write_text(geojson_text(coords))


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
    assert {problem.key for problem in found(tmp_path, body)} == keys


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


# -- job files that crashed `plan`, `new` or `run` with a traceback (issue 10, point 6) -------


@dataclass(frozen=True)
class BadJob:
    """A broken job file and the one line it must give: `FILE: key: ...words...`."""

    id: str
    body: str | bytes
    key: str
    words: str
    files: dict[str, str] = field(default_factory=dict)  # beside the job file

    def write(self, directory: Path) -> Path:
        for name, text in self.files.items():
            (directory / name).write_text(text)
        path = directory / "job.toml"
        path.write_bytes(self.body if isinstance(self.body, bytes) else self.body.encode())
        return path


def _with(section: str, lines: str) -> str:
    return BASE_JOB + f"\n[{section}]\n{lines}\n"


FILE_REGION = BASE_JOB.replace("bbox = [0, 0, 4, 2]", 'file = "r.geojson"')
PYTHON_RECIPE = BASE_JOB.replace('name = "composite"', 'name = "python"\nfunction = "m:f"')
MONTHLY = '[time]\nstart = 2023-01-01\nend = {end}\nstep = "{step}"'

BAD_JOBS = [
    *(BadJob(f"{key}={v}", body, key, "nan and inf are not allowed")
      for v in ("nan", "inf", "-inf")
      for key, body in [
          ("grid.size", BASE_JOB.replace("size = 1", f"size = {v}")),
          ("grid.origin", BASE_JOB.replace("size = 1", f"size = 1\norigin = [0, {v}]")),
          ("export.scale", _with("export", f"scale = {v}")),
          ("export.max_pixels", _with("export", f"max_pixels = {v}")),
          ("limits.drive_budget", _with("limits", f"drive_budget = {v}")),
          ("limits.poll_seconds", _with("limits", f"poll_seconds = {v}")),
          ("recipe.max_cloud", BASE_JOB + f"max_cloud = {v}\n"),
      ]),
    BadJob("size-tiny", BASE_JOB.replace("size = 1", "size = 1e-300"), "grid.size",
           "uncountably many units"),
    BadJob("size-huge-metres", BASE_JOB.replace("size = 1", 'size = 1e300\ncrs = "EPSG:3857"'),
           "grid.size", "larger than the Earth's circumference"),
    # No key to name: the line says what and where ("FILE: not UTF-8 text: byte ... at ...").
    BadJob("not-utf8", BASE_JOB.replace('"t"', '"t\xff"').encode("latin-1"), "not UTF-8 text",
           "byte 0xff at line 3, column 10; save the job file as UTF-8"),
    BadJob("scale-tiny", _with("export", "scale = 1e-300"), "export.scale", "at least 0.01"),
    BadJob("budget-digits", _with("limits", f'drive_budget = "{"9" * 400} GB"'),
           "limits.drive_budget", "too large"),
    BadJob("unclosed-ring", FILE_REGION, "region.file", "closed",
           {"r.geojson": geojson_text([[0, 0], [2, 0], [2, 2], [0, 2]])}),
    BadJob("outside-crs", FILE_REGION, "region.file", "off the globe",
           {"r.geojson": geojson_text([[0, 0], [1e30, 0], [1e30, 1e30], [0, 0]], "EPSG:32610")}),
    BadJob("file-lon-200", FILE_REGION, "region.file", "longitudes between -180 and 180",
           {"r.geojson": geojson_text([[190, 0], [200, 0], [200, 2], [190, 0]])}),
    BadJob("file-lat-95", FILE_REGION, "region.file", "latitudes between -90 and 90",
           {"r.geojson": geojson_text([[0, 85], [2, 85], [2, 95], [0, 85]])}),
    BadJob("huge-step", BASE_JOB + MONTHLY.format(end="2024-01-01", step="99999999999 days"),
           "time.step", "longer than 1000 years"),
    BadJob("year-9999", BASE_JOB + MONTHLY.format(end="9999-12-31", step="1 month"),
           "time.end", "outside"),
    BadJob("nul-output-dir", BASE_JOB.replace('name = "t"', 'name = "t"\noutput_dir = "a\\u0000b"'),
           "job.output_dir", "control characters"),
    BadJob("python-bands", PYTHON_RECIPE + "bands = 100000000\n", "recipe.bands",
           "between 1 and 5000"),
    BadJob("index-not-text", BASE_JOB + "indices = [[1]]\n", "recipe.indices", "unknown index"),
    BadJob("long-name", BASE_JOB.replace('"t"', f'"{"a" * 300}"'), "job.name", "at most 64"),
    BadJob("prefix-field", _with("export", 'prefix = "{job}_{unit}_{x}"'), "export.prefix",
           "{x} is not a placeholder"),
    BadJob("prefix-brace", _with("export", 'prefix = "{unit}{"'), "export.prefix",
           "not a well-formed template"),
    BadJob("prefix-conversion", _with("export", 'prefix = "{unit!r:>300}"'), "export.prefix",
           "is not a placeholder"),
    BadJob("prefix-slash", _with("export", 'prefix = "a/{unit}"'), "export.prefix",
           "file names like 'a/r1c2_20230601'"),
    BadJob("prefix-long", _with("export", f'prefix = "{"x" * 190}{{unit}}"'), "export.prefix",
           "at most 200"),
    BadJob("unknown-epsg", BASE_JOB.replace("size = 1", 'size = 1\ncrs = "EPSG:99999"'),
           "grid.crs", "not a known CRS"),
    BadJob("geocentric-crs", BASE_JOB.replace("size = 1", 'size = 1\ncrs = "EPSG:4978"'),
           "grid.crs", "Geocentric CRS"),
    BadJob("compound-crs", _with("export", 'crs = "EPSG:4326+5773"'), "export.crs",
           "Compound CRS"),
    BadJob("file-format", _with("export", 'file_format = "JPEG"'), "export.file_format",
           "not one of GeoTIFF (for image exports)"),
    BadJob("table-format", PYTHON_RECIPE + 'kind = "table"\n[export]\nfile_format = "TFRecord"\n',
           "export.file_format", "(for table exports)"),
    # issue 11: an emulator job names its emulator, as an earthengine job names its project
    BadJob("emulator-no-url", _with("backend", 'kind = "emulator"'), "backend.url",
           'is required when kind = "emulator"'),
    # a date that is no date names its key, not the TOML parser's column (month 13 is not even
    # read as a date by tomllib; February 30 is)
    BadJob("month-13", BASE_JOB + MONTHLY.format(end="2024-01-01", step="1 month").replace(
        "2023-01-01", "2023-13-01"), "time.start", "2023-13-01 is not a valid date"),
    BadJob("february-30", BASE_JOB + MONTHLY.format(end="2023-02-30", step="1 month"),
           "time.end", "2023-02-30 is not a valid date"),
    # California typed latitude first: its "latitudes" are off the globe, the swap is named
    BadJob("bbox-lat-first", BASE_JOB.replace("[0, 0, 4, 2]", "[37, -122, 38, -121]"),
           "region.bbox", "read as (lat, lon) it would be [-122, 37, -121, 38]"),
    BadJob("global-tiny-tiles",
           BASE_JOB.replace("[0, 0, 4, 2]", "[-180, -90, 180, 90]").replace("size = 1",
                                                                            "size = 0.06"),
           "grid.size", "at least 18,000,000 units, more than 1,000,000"),
]


@pytest.mark.parametrize("bad", BAD_JOBS, ids=lambda b: b.id)
def test_bad_job_is_one_line(tmp_path: Path, bad: BadJob) -> None:
    path = bad.write(tmp_path)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    lines = [str(problem) for problem in info.value.problems]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}: {bad.key}: "), lines[0]
    assert bad.words in lines[0], lines[0]


def test_valid_edges_still_load(tmp_path: Path) -> None:
    """What the new bounds must not refuse."""
    body = (BASE_JOB.replace('"t"', '"' + "n" * 64 + '"')
            + MONTHLY.format(end="2500-01-01", step="1000 years")
            + '\n[export]\nprefix = "x.{job}-{unit}"\nfile_format = "geotiff"\nscale = 0.5\n')
    spec = load_spec(write_job(tmp_path, body))
    assert spec.export.prefix == "x.{job}-{unit}" and spec.time and spec.time.step


# -- problems as values: file, key, message, and the line when it is known (issue 12) --------


def test_a_problem_is_a_value_that_prints_as_its_line(tmp_path: Path) -> None:
    problem = Problem(tmp_path / "job.toml", "grid.size", "must be > 0, got 0", 9)
    assert str(problem) == f"{tmp_path}/job.toml: grid.size: must be > 0, got 0"
    assert f"error: {problem}" == f"error: {tmp_path}/job.toml: grid.size: must be > 0, got 0"
    assert (problem.key, problem.message, problem.line) == ("grid.size", "must be > 0, got 0", 9)
    assert str(Problem(Path("j.toml"), "", "not valid TOML: x")) == "j.toml: not valid TOML: x"
    with pytest.raises(AttributeError):
        problem.key = "grid.crs"  # type: ignore[misc]


def test_each_problem_names_its_line(tmp_path: Path) -> None:
    body = (BASE_JOB.replace("[0, 0, 4, 2]", "[4, 0, 0, 2]").replace("size = 1", 'size = "x"')
            + "\n[time]\nstart = 2023-06-01\nend = 2023-05-01\n[limits]\nspeed = 3\n"
            + "\n[limit]\nmax_tasks = 1\n")
    text = body.splitlines()
    lines = {problem.key: problem.line for problem in found(tmp_path, body)}
    assert lines == {"region.bbox": text.index("bbox = [4, 0, 0, 2]") + 1,
                     "grid.size": text.index('size = "x"') + 1,
                     "time.end": text.index("end = 2023-05-01") + 1,
                     "limits.speed": text.index("speed = 3") + 1,
                     "[limit]": text.index("[limit]") + 1}


def test_a_missing_key_points_at_its_section(tmp_path: Path) -> None:
    body = BASE_JOB + '\n[backend]\nkind = "earthengine"\n'
    (problem,) = found(tmp_path, body)
    assert problem.key == "backend.project"
    assert problem.line == body.splitlines().index("[backend]") + 1


def test_lines_of_keys_written_in_other_ways(tmp_path: Path) -> None:
    """Quoted names and dotted keys are found, text in a multi-line string is not a key; a
    key inside an inline table has no line of its own (its table's line stands for it)."""
    body = ('["job"]\n"name" = "t"\n[region]\nbbox = [0, 0, 4, 2]\n[grid]\nsize.x = 1\n'
            '[recipe]\nname = "composite"\nnote = """\nmax_cloud = 2\n"""\nmax_cloud = 300\n'
            '[limits]\nmax_tasks = 0\n[export]\nscale = 0.001\n')
    lines = {problem.key: problem.line for problem in found(tmp_path, body)}
    assert lines == {"grid.size": 6, "recipe.note": 9, "recipe.max_cloud": 12,
                     "limits.max_tasks": 14, "export.scale": 16}, lines
    (problem,) = found(tmp_path, BASE_JOB + "[limits]\nx = {max_tasks = 0}\n")
    assert problem.key == "limits.x" and problem.line == 14


def test_the_toml_parsers_line_and_a_bad_bytes_line(tmp_path: Path) -> None:
    (problem,) = found(tmp_path, '[job]\nname = "t"\n[grid\nsize = 1\n')
    assert problem.key == "" and problem.message.startswith("not valid TOML: ")
    assert problem.line == 3
    (problem,) = found(tmp_path, BASE_JOB + "[time]\nstart = 2023-13-01\nend = 2024-01-01\n")
    assert (problem.key, problem.line) == ("time.start", 14)
    path = write_job(tmp_path, "")
    path.write_bytes(b'[job]\nname = "t\xff"\n')
    with pytest.raises(SpecError) as info:
        load_spec(path)
    (problem,) = info.value.problems
    assert (problem.key, problem.line) == ("", 2) and "at line 2, column 10" in problem.message


def test_problems_found_after_the_first_checks_have_lines_too(tmp_path: Path) -> None:
    """The unit count is checked last, on the valid job: its problem has a line as well."""
    body = BASE_JOB.replace("size = 1", "size = 1e-300")
    (problem,) = found(tmp_path, body)
    assert problem.key == "grid.size" and "uncountably many" in problem.message
    assert problem.line == body.splitlines().index("size = 1e-300") + 1


def test_the_route_must_be_one_the_worker_knows(tmp_path: Path) -> None:
    one(tmp_path, BASE_JOB + '\n[export]\nroute = "fast"\n', "export.route",
        "'fast' is not one of batch, direct, auto")


def test_direct_is_refused_where_it_cannot_serve_the_job(tmp_path: Path) -> None:
    # Into EE assets: the direct route only writes files.
    one(tmp_path, BASE_JOB + '\n[export]\nroute = "direct"\ndestination = "asset"\n'
        'asset_folder = "projects/p/assets/f"\n', "export.route",
        '"direct" cannot serve this job: it writes files into output_dir, and destination '
        "'asset' needs an export; use \"auto\"")
    # auto takes the same job: every unit by batch.
    spec = load_spec(write_job(tmp_path, BASE_JOB + '\n[export]\nroute = "auto"\n'
                               'destination = "asset"\nasset_folder = "projects/p/assets/f"\n'))
    assert spec.export.route == "auto"


@pytest.mark.parametrize("value", [0, 41, -3])
def test_direct_requests_stay_within_ees_forty(tmp_path: Path, value: int) -> None:
    one(tmp_path, BASE_JOB + f"\n[limits]\ndirect_requests = {value}\n",
        "limits.direct_requests", f"must be between 1 and 40, got {value}")
