"""The plan: periods, units, estimates and the text preview."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from core.periods import add_step, periods
from core.plan import make_plan, preview
from core.spec import Step, TimeSpec, load_spec

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_monthly_periods_end_exclusive_and_clipped() -> None:
    got = periods(TimeSpec(dt.date(2023, 1, 31), dt.date(2023, 5, 15), Step(1, "months")))
    assert [(p.start, p.end) for p in got] == [
        (dt.date(2023, 1, 31), dt.date(2023, 2, 28)),
        (dt.date(2023, 2, 28), dt.date(2023, 3, 28)),
        (dt.date(2023, 3, 28), dt.date(2023, 4, 28)),
        (dt.date(2023, 4, 28), dt.date(2023, 5, 15)),
    ]


def test_day_step_periods() -> None:
    got = periods(TimeSpec(dt.date(2023, 1, 1), dt.date(2023, 2, 2), Step(16, "days")))
    assert [p.id for p in got] == ["20230101", "20230117"]
    assert got[-1].end == dt.date(2023, 2, 2)


def test_steps_past_the_calendar_end_at_its_last_day() -> None:
    """Year 9999 plus a month, or a step of 10^11 days, stops at date.max, not an error; the
    period is then clipped to time.end."""
    assert add_step(dt.date(9999, 12, 1), Step(1, "months")) == dt.date.max
    assert add_step(dt.date(2020, 1, 1), Step(99_999_999_999, "days")) == dt.date.max
    got = periods(TimeSpec(dt.date(9999, 11, 1), dt.date(9999, 12, 31), Step(1, "months")))
    assert [(p.start, p.end) for p in got] == [
        (dt.date(9999, 11, 1), dt.date(9999, 12, 1)), (dt.date(9999, 12, 1), dt.date(9999, 12, 31))]


def test_california_plan_numbers() -> None:
    plan = make_plan(load_spec(EXAMPLES / "california.toml"))
    assert (len(plan.tiles), len(plan.periods), plan.units) == (30, 1, 30)
    # 3 uint16 bands: 6 bytes a pixel.
    assert plan.est_bytes == plan.pixels * 6
    # 10.5° x 9.5° at 30 m is about 1.3e9 pixels.
    assert 1.2e9 < plan.pixels < 1.4e9
    rows = list(plan.unit_rows())
    assert len({r[0] for r in rows}) == 30


def test_outline_keeps_fewer_tiles_than_its_bounding_box() -> None:
    plan = make_plan(load_spec(EXAMPLES / "california-outline.toml"))
    lines = preview(plan)
    assert "·" in "".join(lines) and "█" in "".join(lines)
    assert plan.units == len(plan.tiles) * 12
