"""Collection batches ([batches]): the job-file checks, the units they make (ids, dates,
estimates, the plan's text), and the store that keeps each unit's batch, sessions of schema 7
(before batches) included."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from core.batches import Batch, unit_batch
from core.plan import make_plan
from core.plan_text import describe_plan
from core.session import create_session
from core.spec import load_spec
from core.store import MIGRATIONS, SCHEMA_VERSION, Store
from tests.conftest import BASE_JOB, write_job
from tests.core.test_job_fuzz import check_refused
from tests.core.test_spec import found, one

EXAMPLES = Path(__file__).parents[2] / "examples"
QUARTERS = '[time]\nstart = 2023-01-01\nend = 2024-01-01\nstep = "3 months"\n'
BY_COUNT = '[batches]\nby = "count"\nsize = 50\ncount = 4\n'


def batches(lines: str, time: str = QUARTERS, base: str = BASE_JOB) -> str:
    return base + "\n" + time + "\n[batches]\n" + lines + "\n"


# -- the job file: one clear line for each bad value ------------------------------------------

BAD = [
    # (id, [batches] lines, key, words)
    ("by missing", "size = 5\ncount = 2", "batches.by", "is required"),
    ("by unknown", 'by = "weekly"', "batches.by", "'weekly' is not \"count\""),
    ("by a number", "by = 3", "batches.by", "expected string, got 3"),
    ("size nan", 'by = "count"\nsize = nan\ncount = 2', "batches.size", "nan and inf"),
    ("size inf", 'by = "count"\nsize = inf\ncount = 2', "batches.size", "nan and inf"),
    ("size -inf", 'by = "count"\nsize = -inf\ncount = 2', "batches.size", "nan and inf"),
    ("size 0", 'by = "count"\nsize = 0\ncount = 2', "batches.size", "from 1 to 1,000,000"),
    ("size negative", 'by = "count"\nsize = -5\ncount = 2', "batches.size", "got -5"),
    ("size huge", 'by = "count"\nsize = 1_000_000_000_000\ncount = 2', "batches.size",
     "from 1 to 1,000,000 images, got 1,000,000,000,000"),
    ("size a fraction", 'by = "count"\nsize = 2.5\ncount = 2', "batches.size",
     "expected integer, got 2.5"),
    ("size a string", 'by = "count"\nsize = "50"\ncount = 2', "batches.size",
     "expected integer"),
    ("size a bool", 'by = "count"\nsize = true\ncount = 2', "batches.size", "expected integer"),
    ("size missing", 'by = "count"\ncount = 2', "batches.size", "is required with by"),
    ("count 0", 'by = "count"\nsize = 5\ncount = 0', "batches.count", "from 1 to 1,000,000"),
    ("count negative", 'by = "count"\nsize = 5\ncount = -1', "batches.count", "got -1"),
    ("count huge", 'by = "count"\nsize = 5\ncount = 99_999_999_999', "batches.count",
     "from 1 to 1,000,000 batches"),
    ("count nan", 'by = "count"\nsize = 5\ncount = nan', "batches.count", "nan and inf"),
    ("count a fraction", 'by = "count"\nsize = 5\ncount = 1.5', "batches.count",
     "expected integer"),
    ("count or images missing", 'by = "count"\nsize = 5', "batches.count",
     "is required with by = \"count\""),
    ("count and images", 'by = "count"\nsize = 5\ncount = 2\nimages = 10', "batches.images",
     "not both"),
    ("images 0", 'by = "count"\nsize = 5\nimages = 0', "batches.images", "from 1 to"),
    ("images past EE's integers", 'by = "count"\nsize = 5\nimages = 3_000_000_000',
     "batches.images", "from 1 to 2,147,483,647 images"),
    ("images in too many batches", 'by = "count"\nsize = 1\nimages = 2_000_000_000',
     "batches.images", "make 2,000,000,000 batches, more than 1,000,000"),
    ("offsets past EE's integers", 'by = "count"\nsize = 1_000_000\ncount = 3000',
     "batches.count", "past what EE's toList offsets can"),
    ("step with by count", 'by = "count"\nsize = 5\ncount = 2\nstep = "1 month"',
     "batches.step", "only applies with by = \"date\""),
    ("size with by date", 'by = "date"\nstep = "1 month"\nsize = 5', "batches.size",
     "only applies with by = \"count\""),
    ("step missing", 'by = "date"', "batches.step", "is required with by = \"date\""),
    ("step no step", 'by = "date"\nstep = "1 fortnight"', "batches.step",
     "'1 fortnight' is not a step"),
    ("step zero", 'by = "date"\nstep = "0 days"', "batches.step", "'0 days' is not a step"),
    ("step a number", 'by = "date"\nstep = 30', "batches.step", "expected string"),
    ("step too long", 'by = "date"\nstep = "2000 years"', "batches.step",
     "longer than 1000 years"),
    ("step as long as the periods", 'by = "date"\nstep = "3 months"', "batches.step",
     "not shorter than time.step = '3 months': each period would be one batch"),
    ("unknown key", 'by = "count"\nsize = 5\ncount = 2\nlimit = 3', "batches.limit",
     "unknown key"),
    ("too many units", 'by = "count"\nsize = 1\ncount = 1_000_000', "batches.count",
     "makes 4,000,000 batches in all, more than 1,000,000 units"),
]


@pytest.mark.parametrize(("lines", "key", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_value_is_one_clear_line(tmp_path: Path, lines: str, key: str, words: str) -> None:
    one(tmp_path, batches(lines), key, words)


def test_date_batches_need_time(tmp_path: Path) -> None:
    one(tmp_path, BASE_JOB + '\n[batches]\nby = "date"\nstep = "1 month"\n', "batches.by",
        "\"date\" needs a [time] section")


def test_a_span_without_step_no_longer_than_a_batch(tmp_path: Path) -> None:
    one(tmp_path, batches('by = "date"\nstep = "1 year"',
                          "[time]\nstart = 2023-01-01\nend = 2023-07-01\n"),
        "batches.step", "not shorter than the [time] span")


def test_batches_section_must_be_a_table(tmp_path: Path) -> None:
    one(tmp_path, "batches = 3\n" + BASE_JOB, "batches", "must be a table")


def test_count_batches_need_a_recipe_that_cuts_by_count(tmp_path: Path) -> None:
    python = BASE_JOB.replace('name = "composite"', 'name = "python"\nfunction = "m:f"')
    one(tmp_path, batches(BY_COUNT.removeprefix("[batches]\n"), base=python), "batches.by",
        "recipe 'python' does not cut its collection by count (recipes that do: classify, "
        "composite, sample, stats)")
    # By date, every recipe follows the batch through its unit's dates.
    spec = load_spec(write_job(tmp_path, batches('by = "date"\nstep = "1 month"', base=python)))
    assert spec.batches is not None and spec.batches.by == "date"


def test_the_prefix_must_leave_room_for_the_batch(tmp_path: Path) -> None:
    body = BASE_JOB + '\n[export]\nprefix = "' + "a" * 156 + '{unit}"\n'
    load_spec(write_job(tmp_path, body))  # without batches it fits
    one(tmp_path, body + '[batches]\nby = "count"\nsize = 5\ncount = 1000\n', "export.prefix",
        "up to 202 characters with the batch")


def test_every_problem_at_once(tmp_path: Path) -> None:
    body = batches('by = "count"\nsize = 0\ncount = -1').replace("size = 1", "size = -1")
    keys = [p.key for p in found(tmp_path, body)]
    assert keys == ["grid.size", "batches.size", "batches.count"], keys


@pytest.mark.parametrize("lines", ['by = "count"\nsize = nan\ncount = 2',
                                   'by = "count"\nsize = 5\ncount = 0',
                                   'by = "date"\nstep = "0 days"'])
def test_the_command_line_exits_2_and_writes_nothing(tmp_path: Path, lines: str) -> None:
    job = write_job(tmp_path, batches(lines))
    for command in ("plan", "new", "run"):
        check_refused(job, command)


def test_images_give_the_count(tmp_path: Path) -> None:
    spec = load_spec(write_job(tmp_path, batches('by = "count"\nsize = 50\nimages = 151')))
    assert spec.batches is not None
    assert (spec.batches.by, spec.batches.size, spec.batches.count) == ("count", 50, 4)
    assert spec.batches.images == 151


# -- units: tiles x periods x batches -----------------------------------------------------------

def test_count_batches_multiply_the_units_and_keep_the_ids(tmp_path: Path) -> None:
    plain = make_plan(load_spec(write_job(tmp_path, BASE_JOB + "\n" + QUARTERS)))
    plan = make_plan(load_spec(write_job(tmp_path, batches(BY_COUNT.removeprefix(
        "[batches]\n")))))
    assert len(plan.tiles) == 8 and len(plan.periods) == 4
    assert plan.units == 8 * 4 * 4 == 4 * plain.units
    assert plan.batches == [4, 4, 4, 4]
    rows = list(plan.unit_rows())
    assert len(rows) == plan.units == len({r[0] for r in rows})
    first = rows[0]
    assert first[0] == f"{first[1]}_20230101_b0" and first[-1] == 0
    assert {r[0] for r in rows if r[-1] == 3 and r[4] == "20230401"} == {
        f"{t}_20230401_b3" for t in plan.tile_ids}
    # A count batch spans its period: the unit's dates are the period's.
    assert {(r[5], r[6]) for r in rows if r[4] == "20230401"} == {("2023-04-01", "2023-07-01")}
    # Without [batches] the ids (and rows) are those of before: no batch, no suffix.
    plain_rows = list(plain.unit_rows())
    assert [r[0] for r in plain_rows[:8]] == [f"{t}_20230101" for t in plain.tile_ids]
    assert all(r[-1] is None for r in plain_rows)
    # The estimates scale with the units.
    assert plan.pixels == 4 * plain.pixels and plan.est_bytes == 4 * plain.est_bytes
    assert plan.ee_seconds > 3 * plain.ee_seconds


def test_count_batches_without_time_are_tile_and_batch(tmp_path: Path) -> None:
    plan = make_plan(load_spec(write_job(tmp_path, batches(
        'by = "count"\nsize = 10\ncount = 3', time=""))))
    ids = [r[0] for r in plan.unit_rows()]
    assert ids[:2] == [f"{plan.tile_ids[0]}_b0", f"{plan.tile_ids[1]}_b0"]
    assert len(ids) == 8 * 3 and ids[-1] == f"{plan.tile_ids[-1]}_b2"


def test_date_batches_cut_each_period_and_give_units_their_days(tmp_path: Path) -> None:
    plan = make_plan(load_spec(write_job(tmp_path, batches('by = "date"\nstep = "1 month"'))))
    assert plan.batches == [3, 3, 3, 3] and plan.units == 8 * 12
    tile = plan.tile_ids[0]
    days = [(r[0], r[4], r[5], r[6], r[-1]) for r in plan.unit_rows() if r[1] == tile]
    assert days[:4] == [
        (f"{tile}_20230101_b0", "20230101", "2023-01-01", "2023-02-01", 0),
        (f"{tile}_20230101_b1", "20230101", "2023-02-01", "2023-03-01", 1),
        (f"{tile}_20230101_b2", "20230101", "2023-03-01", "2023-04-01", 2),
        (f"{tile}_20230401_b0", "20230401", "2023-04-01", "2023-05-01", 0),
    ]
    assert days[-1] == (f"{tile}_20231001_b2", "20231001", "2023-12-01", "2024-01-01", 2)


def test_date_batches_may_differ_from_period_to_period(tmp_path: Path) -> None:
    plan = make_plan(load_spec(write_job(tmp_path, batches('by = "date"\nstep = "30 days"'))))
    # 90, 91, 92 and 92 days: 3 batches of 30 days and one of the rest, but for the first.
    assert plan.batches == [3, 4, 4, 4] and plan.units == 8 * 15
    text = describe_plan(plan)
    assert "Batches  3-4 a period: one every 30 days" in text
    assert "Units    120  (8 tiles x 15 batches over 4 periods)" in text


def test_the_plan_says_the_batches(tmp_path: Path) -> None:
    plan = make_plan(load_spec(write_job(tmp_path, batches(
        'by = "count"\nsize = 50\nimages = 180'))))
    text = describe_plan(plan)
    assert "Batches  4 a period: 50 images each, in date order over the region (180 images " \
           "given)" in text
    assert "Units    128  (8 tiles x 4 periods x 4 batches)" in text
    assert any(line.startswith("EE       128 tasks, ") for line in text)
    plain = describe_plan(make_plan(load_spec(write_job(tmp_path, BASE_JOB + "\n" + QUARTERS))))
    assert not any(line.startswith("Batches") for line in plain)
    assert "Units    32  (8 tiles x 4 periods)" in plain


def test_a_unit_batch_is_what_the_recipe_reads(tmp_path: Path) -> None:
    spec = load_spec(write_job(tmp_path, batches(BY_COUNT.removeprefix("[batches]\n"))))
    batch = unit_batch(spec, 2, "2023-01-01", "2023-04-01")
    assert batch == Batch(2, size=50, region=(0.0, 0.0, 4.0, 2.0))
    assert (batch.by, batch.offset) == ("count", 100)
    assert unit_batch(spec, None, "2023-01-01", "2023-04-01") is None  # a unit of schema 7
    dated = load_spec(write_job(tmp_path, batches('by = "date"\nstep = "1 month"')))
    batch = unit_batch(dated, 1, "2023-02-01", "2023-03-01")
    assert batch == Batch(1, start="2023-02-01", end="2023-03-01") and batch.by == "date"


def test_the_example_plans_its_batches() -> None:
    plan = make_plan(load_spec(EXAMPLES / "batches.toml"))
    assert plan.spec.batches is not None and plan.spec.batches.by == "count"
    assert set(plan.batches) == {plan.spec.batches.count} and plan.units == (
        len(plan.tiles) * len(plan.periods) * plan.spec.batches.count)


# -- the store: a batch column, and sessions of before it -------------------------------------

def test_a_session_keeps_each_unit_batch(tmp_path: Path) -> None:
    store, _ = create_session(write_job(tmp_path, batches(BY_COUNT.removeprefix(
        "[batches]\n"))))
    rows = store.units()
    assert len(rows) == 128
    assert sorted({r["batch"] for r in rows}) == [0, 1, 2, 3]
    assert all(r["id"].endswith(f"_b{r['batch']}") for r in rows)
    plain, _ = create_session(write_job(tmp_path, BASE_JOB, "plain.toml"))
    assert {r["batch"] for r in plain.units()} == {None}
    store.close()
    plain.close()


def schema_7_session(tmp_path: Path) -> Path:
    """A session file as eebatch wrote it at schema 7: MIGRATIONS[:7] applied to an empty
    file, a session row and the units of BASE_JOB's plan as that version inserted them."""
    path = tmp_path / "old-1.sqlite"
    job = write_job(tmp_path, BASE_JOB, "old.toml")
    conn = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:7]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version=7")
    conn.execute("INSERT INTO session VALUES ('old-1', 'old', 0, ?, ?)", (str(job), BASE_JOB))
    rows = [r[:13] for r in make_plan(load_spec(job)).unit_rows()]
    conn.executemany(
        "INSERT INTO units (id, tile, row, col, period, start, end, west, south, east, north,"
        " est_pixels, est_bytes, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
        rows)
    conn.close()
    return path


def test_a_session_of_schema_7_opens_with_no_batches(tmp_path: Path) -> None:
    path = schema_7_session(tmp_path)
    store = Store(path)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    rows = store.units()
    assert len(rows) == 8 and {r["batch"] for r in rows} == {None}
    # and keeps working: a unit splits into children of no batch, named as before
    unit = rows[0]
    store.add_children([(f"{unit['tile']}.0", f"{unit['tile']}.0", unit["row"], unit["col"],
                         1, unit["id"], unit["period"], None, None, 0, 0, 1, 1, 1, 1, 0,
                         dt.datetime.now().timestamp(), unit["batch"], "batch")])
    child = store.unit(f"{unit['tile']}.0")
    assert child is not None and child["batch"] is None
    store.close()
    assert Store(path).counts() == {"pending": 9}
