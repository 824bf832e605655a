"""The worker against an emulator as strict and as slow as Google (issue 13): Drive's listing
lag, outages of minutes, an undocumented operations.list order, Gmail and Photos in the
quota, a per-file download quota, restricted mode, and what is sent with every export."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from core.backends.earthengine import OPERATION_GET_RETRIES, EarthEngine
from core.backends.failures import Kind, classify
from core.emulator.batch import SUCCEEDED
from core.engine.monitor import RESTRICTED_TEXT
from core.engine.runner import run_session
from core.store import Store
from tests.engine.conftest import (
    admin,
    assert_all_done_and_verified,
    drive_files,
    emulator_with,
    inject,
    make_session,
    our_tasks,
    task_unit,
)
from tests.engine.test_safety import MEDIA_FAULT, wait_for, worker_thread


def events(store: Store, like: str) -> list[str]:
    return [r[0] for r in store.conn.execute(
        "SELECT message FROM events WHERE message LIKE ? ORDER BY id", (like,))]


def exports_per_unit(url: str, store: Store) -> dict[str, int]:
    out: dict[str, int] = {}
    for task in our_tasks(url, store.id):
        if task["state"] == SUCCEEDED:
            unit = task_unit(task["description"])
            out[unit] = out.get(unit, 0) + 1
    return out


def test_a_drive_listing_lag_of_seconds_exports_no_unit_twice(tmp_path: Path) -> None:
    """New files reach files.list 3 s late: each unit waits for its files and is exported
    exactly once (five looks a second apart once re-exported every unit)."""
    emu = emulator_with(drive_listing_lag=3.0)
    try:
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 1, 1]")  # 4 units
        summary = run_session(store.path)
        assert summary.ok, (summary.counts, summary.failed)
        assert exports_per_unit(emu.url, store) == {u["id"]: 1 for u in store.units()}
        assert not events(store, "%never appeared%")
        assert_all_done_and_verified(store, emu.url)
    finally:
        emu.stop()


def test_a_poll_gives_up_after_two_retries_of_its_own_while_ee_is_out() -> None:
    """A poll's call must fail within seconds for the worker to say EE is down: with
    earthengine-api's five retries (~60 s of backoff, the adapter's lock held) the loop waited
    out most of an outage before it could say so."""
    listed = "GET ee operations.list"
    with emulator_with() as emu:
        client = EarthEngine.for_emulator(emu.url, "test-project")
        admin(emu.url, "/_emulator/outage", {"route": "ee", "seconds": 3600})
        before = emu.state()["requests"].get(listed, 0)
        with pytest.raises(Exception) as caught:
            next(client.operation_pages())
        assert classify(caught.value).kind is Kind.OUTAGE
        assert emu.state()["requests"][listed] - before == 1 + OPERATION_GET_RETRIES == 3


def test_outages_at_the_start_and_mid_run_fail_nothing(tmp_path: Path) -> None:
    """EE answers 503 "The service is currently unavailable." on every route for 60 s as the
    worker starts (longer than earthengine-api's own retries: the start ended in a traceback),
    then again for 70 s mid-run, with Drive down for 30 s: the worker waits and says since
    when EE is unreachable, and once it answers every unit is done, none failed, none sent
    twice."""
    emu = emulator_with(speed=20.0, task_overhead_seconds=20.0, slots=2)
    try:
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 2, 1]", max_tasks=2)  # 8 units
        admin(emu.url, "/_emulator/outage", {"route": "ee", "seconds": 60})
        with worker_thread(store) as stop:
            wait_for(lambda: "ee" in ((store.worker_status() or {}).get("down") or {}),
                     "the starting worker to say EE is down", timeout=120)
            assert "the worker starts once it answers" in store.worker_status()["down_why"]
            wait_for(lambda: store.counts().get("done", 0) >= 2, "two units done",
                     timeout=300)
            # Longer than earthengine-api's own retries of a request (about 30 s), or they
            # may hide it from the worker.
            admin(emu.url, "/_emulator/outage", {"route": "ee", "seconds": 70})
            admin(emu.url, "/_emulator/outage", {"route": "drive", "seconds": 30})
            down = wait_for(lambda: (store.worker_status() or {}).get("down"),
                            "the worker to see the outage", timeout=120)
            assert "ee" in down or "drive" in down
            wait_for(lambda: store.counts() == {"done": 8}, "every unit done", timeout=400)
            stop.set()
        assert store.counts() == {"done": 8}
        assert exports_per_unit(emu.url, store) == {u["id"]: 1 for u in store.units()}
        assert events(store, "Earth Engine unreachable since % the worker starts once%")
        assert events(store, "Earth Engine answers again: the worker starts")
        assert events(store, "Earth Engine unreachable since %retrying")
        assert events(store, "Earth Engine answers again: exports resume")
        assert not events(store, "failed%")
        assert_all_done_and_verified(store, emu.url)
    finally:
        emu.stop()


def test_an_oldest_first_listing_over_many_old_operations_still_finds_our_tasks(
        tmp_path: Path) -> None:
    """Google does not document the order of operations.list. Listed oldest first, with pages
    of a month-old project history before ours, our live tasks are asked for by name and the
    job finishes (reading pages newest-first-style stopped at the first old page, and the
    units waited QUEUED for ever)."""
    emu = emulator_with(operations_oldest_first=True, max_page_size=5)
    try:
        model = emu.ee.model
        month_ago = model.clock.now() - 30 * 86_400
        for i in range(40):
            task, _ = model.submit("eebatch-demo", "EXPORT_IMAGE", f"older-job-{i}", pixels=1)
            with model.lock:
                task.create_time = month_ago + i
                model._end(task, SUCCEEDED, month_ago + i + 1)
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 1, 0.5]")
        result: list[object] = []
        thread = threading.Thread(target=lambda: result.append(run_session(store.path)))
        thread.start()
        thread.join(120)
        assert result, f"the job never finished: {store.counts()}"
        assert store.counts() == {"done": 2}
        assert_all_done_and_verified(store, emu.url)
    finally:
        emu.stop()


def test_drive_space_counts_gmail_and_photos(tmp_path: Path) -> None:
    """The 15 GB is shared: Gmail and Photos bytes (quotaBytesUsedAggregate) are in the
    Drive figure the dashboard shows and admission plans with."""
    emu = emulator_with(quota_other=50_000_000)
    try:
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 1, 0.5]")
        assert run_session(store.path).ok
        assert store.worker_status()["drive_used"] >= 50_000_000
    finally:
        emu.stop()


def test_priority_is_sent_only_when_asked_and_every_export_carries_the_jobs_workload_tag(
        tmp_path: Path) -> None:
    emu = emulator_with()
    try:
        plain = make_session(tmp_path, emu.url, name="plain", bbox="[0, 0, 1, 0.5]")
        assert run_session(plain.path).ok
        asked = make_session(tmp_path, emu.url, name="asked", bbox="[0, 0, 1, 0.5]",
                             export={"priority": 300, "workload_tag": "thesis-ch3"})
        assert run_session(asked.path).ok
        tasks = our_tasks(emu.url, plain.id)
        assert {t["priority"] for t in tasks} == {100}  # EE's default: none was sent
        assert {t["workload_tag"] for t in tasks} == {"eebatch-plain"}
        tasks = our_tasks(emu.url, asked.id)
        assert {t["priority"] for t in tasks} == {300}
        assert {t["workload_tag"] for t in tasks} == {"thesis-ch3"}
    finally:
        emu.stop()


def test_a_used_up_download_quota_waits_hours_with_the_file_kept(tmp_path: Path) -> None:
    """403 downloadQuotaExceeded is per file per day: the unit is not failed and no try is
    counted; it waits hours, its file stays in Drive, and the log says until when."""
    emu = emulator_with()
    try:
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 0.5, 0.5]")  # 1 unit
        inject(emu.url, **MEDIA_FAULT, kind="status", status=403,
               reason="downloadQuotaExceeded", count=-1)
        with worker_thread(store):
            said = wait_for(lambda: events(store, "Google's download quota for %"),
                            "the download quota told")
        unit = store.units()[0]
        assert unit["state"] == "exported" and unit["download_failures"] == 0
        assert unit["not_before"] > time.time() + 3600
        assert "stays in Drive" in said[0]
        assert len(drive_files(emu.url)) == 1
    finally:
        emu.stop()


def test_restricted_mode_is_said_once_and_shown_while_it_lasts(tmp_path: Path) -> None:
    emu = emulator_with()
    try:
        admin(emu.url, "/_emulator/ee/quota_status", {"parallelism_restricted": True})
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 1, 0.5]")
        assert run_session(store.path).ok
        assert events(store, "%restricted mode%") == [RESTRICTED_TEXT]
        assert store.worker_status()["restricted"] is True
    finally:
        emu.stop()


def test_the_demo_with_its_listing_lag_and_strict_names_exports_no_unit_twice() -> None:
    """The demo's own emulator (strict names, files listed 3 s late, 5 % internal errors,
    tiles that split), only faster: every unit done, none exported twice."""
    from core.demo import DEMO_EMULATOR, prepare_demo

    assert DEMO_EMULATOR.strict_names and DEMO_EMULATOR.drive_listing_lag >= 2
    emulator, path = prepare_demo(config=replace(DEMO_EMULATOR, speed=100.0))
    try:
        summary = run_session(path, emulator_url=emulator.url)
        assert summary.ok, (summary.counts, summary.failed)
        store = Store(path)
        counts = exports_per_unit(emulator.url, store)
        assert counts and set(counts.values()) == {1}
        assert set(counts) == {u["id"] for u in store.units() if u["state"] == "done"}
        store.close()
    finally:
        emulator.stop()
