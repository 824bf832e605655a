"""What `eebatch plan` prints and the job form previews (tui/plan_view.describe_plan): the extent
in degrees east/north, EE tasks and time with their assumptions, the Drive peak, warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.plan import make_plan
from core.plan_text import describe_plan
from core.region import extent_text
from core.spec import load_spec
from tests.conftest import BASE_JOB, write_job

EXAMPLES = Path(__file__).parents[1] / "examples"


def summary(path: Path) -> list[str]:
    lines = describe_plan(make_plan(load_spec(path)))
    return lines[:lines.index("")]


def line(lines: list[str], head: str) -> str:
    found = [x for x in lines if x.startswith(head)]
    assert len(found) == 1, lines
    return found[0]


def test_the_classic_job_in_degrees_east_and_north() -> None:
    lines = summary(EXAMPLES / "california.toml")
    assert line(lines, "Extent") == "Extent   124.5°W–114.0°W, 32.5°N–42.0°N"
    assert line(lines, "EE").startswith(
        "EE       30 tasks, ~21 minutes at 2 tasks at a time (a new project's default), "
        "assuming 20 s a task + 2,000,000 pixel-bands a second (the emulator's batch model)")
    assert line(lines, "Drive").startswith(
        "Drive    peak ~2.7 GB (the 10 largest exports at once, within the 10.0 GB budget)")
    assert not [x for x in lines if x.startswith("warning: ")]


@pytest.mark.parametrize(("bounds", "text"), [
    ((10, -5, 20, 5), "10.0°E–20.0°E, 5.0°S–5.0°N"),
    ((-0.5, 51.25, 0.25, 51.75), "0.500°W–0.250°E, 51.250°N–51.750°N"),  # London: finer
    ((0, 0, 0.005, 0.005), "0.00000°E–0.00500°E, 0.00000°N–0.00500°N"),
])
def test_extent_text(bounds: tuple[float, float, float, float], text: str) -> None:
    assert extent_text(bounds) == text


def test_max_tasks_below_the_slots_is_named(tmp_path: Path) -> None:
    path = write_job(tmp_path, BASE_JOB + "\n[limits]\nmax_tasks = 1\n")
    assert "at 1 task at a time (limits.max_tasks)" in line(summary(path), "EE")


def test_warnings_are_part_of_the_summary(tmp_path: Path) -> None:
    """Before the blank line, so the job form's preview shows them too."""
    path = write_job(tmp_path, BASE_JOB.replace("[0, 0, 4, 2]", "[25, -87, 31, -80]"))
    warnings = [x for x in summary(path) if x.startswith("warning: ")]
    assert [w.split(":")[1] for w in warnings] == [" region.bbox", " [backend]"]


def test_a_table_recipe_says_what_its_tables_are_not_zero_bytes() -> None:
    """A table's size is not known before the first arrive: the plan says what they are and
    where they are merged, not "~0 Bytes estimated (CSV, 0 bands)"."""
    lines = summary(EXAMPLES / "california-ndvi-stats.toml")
    assert line(lines, "Output") == (
        "Output   a table (CSV) per unit, merged at the end into table.csv and table.parquet; "
        "their sizes are learned as they arrive")
    assert "0 Bytes" not in line(lines, "Drive")


def with_route(tmp_path: Path, name: str, route: str) -> Path:
    """An example job (and its data files) with `export.route` set."""
    for data in EXAMPLES.glob("*.geojson"):
        (tmp_path / data.name).write_bytes(data.read_bytes())
    text = (EXAMPLES / f"{name}.toml").read_text()
    path = tmp_path / f"{name}.toml"
    path.write_text(text.replace("[export]\n", f'[export]\nroute = "{route}"\n', 1))
    return path


def test_the_plan_says_how_the_units_come_back_by_each_route(tmp_path: Path) -> None:
    assert not [x for x in summary(EXAMPLES / "california.toml") if x.startswith("Route")]
    auto = summary(with_route(tmp_path, "california", "auto"))
    assert line(auto, "Route") == (
        "Route    auto: 30 units by computePixels, ~570 requests of up to 1,536² pixels, 32 at "
        "a time (limits.direct_requests): ~5 minutes (the emulator's direct model), no EE "
        "task and no Drive; any unit EE cannot compute interactively goes batch")
    assert line(auto, "EE").startswith("EE       30 tasks")  # what batch would take
    tables = summary(with_route(tmp_path, "field-points", "direct"))
    assert line(tables, "EE") == "EE       no batch task: every unit is computed interactively"
    assert line(tables, "Route") == (
        "Route    direct: every unit's table by computeFeatures, 32 at a time "
        "(limits.direct_requests), no EE task and no Drive")
    assert line(tables, "Drive") == (
        "Drive    not used: the direct route writes each file into output_dir")
