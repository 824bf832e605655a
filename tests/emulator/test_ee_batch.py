"""The batch model on a manual clock: exact event times, slots, priority, failures, cancel."""

from __future__ import annotations

import re
from typing import Any

import pytest

from core.emulator.batch import (
    CANCELLED,
    CANCELLING,
    FAILED,
    MEMORY_MSG,
    PENDING,
    RUNNING,
    SUCCEEDED,
    TIMEOUT_MSG,
    BatchModel,
    Task,
)
from core.emulator.clock import ManualClock, SimClock, rfc3339
from core.emulator.config import EmulatorConfig

T0 = 1_800_000_000.0
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def model(finisher: Any = None, **cfg: Any) -> tuple[BatchModel, ManualClock]:
    clock = ManualClock(T0)
    fields = {"task_overhead_seconds": 10.0, "pixel_rate": 1_000_000.0, "jitter": 0.0, **cfg}
    return BatchModel(EmulatorConfig(**fields), clock, finisher), clock


def submit(m: BatchModel, desc: str, **kw: Any) -> Task:
    kw.setdefault("pixels", 1_000_000)
    kw.setdefault("bands", 2)
    return m.submit("p", "EXPORT_IMAGE", desc, **kw)[0]


def test_run_time_slots_and_exact_event_times() -> None:
    m, clock = model(slots=2)
    a, b, c = (submit(m, n) for n in "abc")  # 10 s overhead + 1e6 px * 2 bands / 1e6 = 12 s
    m.advance()
    assert (a.state, b.state, c.state) == (RUNNING, RUNNING, PENDING)
    clock.advance(1000)  # one coarse step: events still replay at their own times
    m.advance()
    assert [t.state for t in (a, b, c)] == [SUCCEEDED] * 3
    assert (a.start_time, a.end_time) == (T0, T0 + 12)
    assert (c.start_time, c.end_time) == (T0 + 12, T0 + 24)  # took the first free slot


def test_priority_then_submission_order() -> None:
    m, clock = model(slots=1)
    first = submit(m, "first")
    clock.advance(1)
    low = submit(m, "low")
    clock.advance(1)
    high = submit(m, "high", priority=500)
    clock.advance(1)
    low2 = submit(m, "low2")
    clock.advance(100)
    m.advance()
    order = sorted((first, low, high, low2), key=lambda t: t.start_time or 0)
    assert [t.description for t in order] == ["first", "high", "low", "low2"]
    assert high.start_time == first.end_time


def test_request_id_dedup() -> None:
    m, _ = model()
    t1, created1 = m.submit("p", "EXPORT_IMAGE", "x", request_id="r1")
    t2, created2 = m.submit("p", "EXPORT_IMAGE", "x", request_id="r1")
    t3, _ = m.submit("other", "EXPORT_IMAGE", "x", request_id="r1")
    assert created1 and not created2 and t1 is t2 and t3 is not t1
    assert m.find_by_request("p", "r1") is t1


def test_cancel_pending_at_once_running_after_cancelling() -> None:
    m, clock = model(slots=1)
    run, wait = submit(m, "run"), submit(m, "wait")
    m.advance()
    m.cancel(wait)
    assert wait.state == CANCELLED and wait.error == {"code": 1, "message": "Cancelled."}
    clock.advance(3)
    m.cancel(run)
    assert run.state == CANCELLING
    clock.advance(1)
    m.advance()
    assert run.state == CANCELLING
    clock.advance(5)
    m.advance()
    assert run.state == CANCELLED and run.end_time == T0 + 5
    op = m.operation(run)
    assert op["done"] and op["error"]["code"] == 1 and "response" not in op


@pytest.mark.parametrize(
    ("cfg", "message", "fraction"),
    [
        ({"memory_limit_pixels": 999_999}, MEMORY_MSG, 0.25),
        ({"timeout_pixels": 999_999}, TIMEOUT_MSG, 0.6),
    ],
)
def test_oversized_tasks_fail_after_running_a_while(
    cfg: dict[str, Any], message: str, fraction: float
) -> None:
    m, clock = model(**cfg)
    t = submit(m, "big")
    m.advance()
    clock.advance(100)
    m.advance()
    assert t.state == FAILED and t.error and t.error["message"] == message
    assert t.end_time == pytest.approx(T0 + 12 * fraction)


def test_fail_on_start_and_internal_errors() -> None:
    m, clock = model(internal_error_rate=1.0)
    t = submit(m, "x", fail_on_start="Export too large: ...")
    u = submit(m, "y")
    clock.advance(100)
    m.advance()
    assert t.error == {"code": 3, "message": "Export too large: ..."}
    assert u.error and u.error["message"] == "Internal error."


def test_jitter_is_seeded() -> None:
    def durations(seed: int) -> list[float]:
        m, _clock = model(jitter=0.2, seed=seed, slots=10)
        tasks = [submit(m, str(i)) for i in range(5)]
        m.advance()
        return [t.duration for t in tasks]

    a, b = durations(1), durations(1)
    assert a == b and len(set(a)) > 1
    assert all(12 * 0.8 <= d <= 12 * 1.2 for d in a)
    assert durations(2) != a


def test_finisher_errors_fail_the_task() -> None:
    calls: list[str] = []

    def finisher(task: Task) -> str | None:
        calls.append(task.description)
        if task.description == "boom":
            raise RuntimeError("disk on fire")
        return "Google Drive quota exceeded." if task.description == "full" else None

    m, clock = model(finisher, slots=5)
    ok, full, boom = submit(m, "ok"), submit(m, "full"), submit(m, "boom")
    clock.advance(100)
    m.advance()
    assert calls == ["ok", "full", "boom"]
    assert ok.state == SUCCEEDED
    assert full.error and full.error["message"] == "Google Drive quota exceeded."
    assert boom.error and boom.error["message"].startswith("Internal error.")


def test_operation_json_while_running_and_done() -> None:
    m, clock = model()
    t = submit(m, "desc", priority=7, destination_uris=[])
    op = m.operation(t)
    assert op == {
        "name": f"projects/p/operations/{t.id}",
        "metadata": {
            "@type": "type.googleapis.com/google.earthengine.v1.OperationMetadata",
            "state": PENDING,
            "description": "desc",
            "type": "EXPORT_IMAGE",
            "priority": 7,
            "createTime": rfc3339(T0),
            "updateTime": rfc3339(T0),
        },
        "done": False,
    }
    assert re.fullmatch(r"[A-Z0-9]{24}", t.id)
    m.advance()
    clock.advance(6)
    meta = m.operation(t)["metadata"]
    assert meta["state"] == RUNNING and meta["progress"] == 0.5 and meta["attempt"] == 1
    assert meta["updateTime"] == rfc3339(T0 + 6)  # refreshed with the progress
    assert meta["batchEecuUsageSeconds"] == 6.0 and len(meta["stages"]) == 2
    clock.advance(10)
    m.advance()
    op = m.operation(t)
    assert op["done"] and op["response"] == {"@type": "type.googleapis.com/google.protobuf.Empty"}
    assert all(STAMP.fullmatch(op["metadata"][k]) for k in ("createTime", "startTime", "endTime"))
    assert op["metadata"]["progress"] == 1.0


def test_listing_is_newest_first_and_counts() -> None:
    m, _ = model()
    tasks = [submit(m, str(i)) for i in range(3)]
    assert m.list_tasks("p") == tasks[::-1]
    assert m.counts() == {PENDING: 3}


def test_sim_clock_runs_faster_and_stamps_are_parseable() -> None:
    from datetime import datetime

    clock = SimClock(speed=1000.0, start=T0)
    assert clock.now() >= T0 and clock.wall_seconds(1000) == 1.0
    datetime.strptime(rfc3339(clock.now()), "%Y-%m-%dT%H:%M:%S.%fZ")
    with pytest.raises(ValueError):
        SimClock(speed=0)


def test_ticker_thread_advances_the_model() -> None:
    m = BatchModel(
        EmulatorConfig(speed=1000.0, task_overhead_seconds=5.0, jitter=0.0), SimClock(1000.0)
    )
    m.start(tick=0.005)
    try:
        t = submit(m, "x", pixels=0)
        import time

        deadline = time.monotonic() + 5
        while t.state != SUCCEEDED and time.monotonic() < deadline:
            time.sleep(0.005)
        assert t.state == SUCCEEDED
    finally:
        m.stop()
