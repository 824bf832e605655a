"""The names eebatch sends EE keep to Google's documented rule ([A-Za-z0-9_-], descriptions of
at most 100 characters), and a session made by the version that sent ':' and '.' still resumes.
The emulator refuses anything else (strict_names, on in every test)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.engine import admission
from core.engine.runner import run_session
from core.naming import MAX_DESCRIPTION, file_prefix, legacy_file_prefix, task_description
from tests.engine.conftest import (
    admin,
    assert_all_done_and_verified,
    emulator_with,
    make_session,
    our_tasks,
    task_unit,
)
from tests.engine.test_safety import wait_for, worker_thread

SAFE = re.compile(r"[A-Za-z0-9_-]+")


@pytest.mark.parametrize("session, unit", [
    ("t-1", "r0c0"), ("ndvi.v2-3", "r12c40.0.3_20230601"), ("x" * 70, "r1c2.0.1.2.3_20230601"),
])
def test_descriptions_and_prefixes_are_safe_short_unique_and_ours(session: str,
                                                                  unit: str) -> None:
    names = {task_description(session, unit, n) for n in (1, 2)}
    assert len(names) == 2  # one per attempt
    for name in names:
        assert SAFE.fullmatch(name) and len(name) <= MAX_DESCRIPTION
        assert name.startswith("eebatch_")
    prefix = file_prefix("{job}_{unit}", "ndvi.v2", unit)
    assert SAFE.fullmatch(prefix)
    # Split children and their parent never share a prefix.
    assert file_prefix("{job}_{unit}", "j", "r1c2.1") != file_prefix("{job}_{unit}", "j", "r1c2")


def test_sessions_whose_ids_differ_only_in_an_unsafe_character_never_share_a_description(
        ) -> None:
    assert task_description("ndvi.v2-1", "r0c0", 1) != task_description("ndvi-v2-1", "r0c0", 1)


def test_split_children_are_sent_with_safe_names_and_finish(tmp_path: Path) -> None:
    """A tile over EE's memory limit splits; its children (r0c0.0 ...) go to an emulator that
    refuses '.' in names, and every one finishes."""
    emu = emulator_with(memory_limit_pixels=2_000)
    try:
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 1, 0.5]", scale=1000)
        summary = run_session(store.path)
        assert summary.ok, (summary.counts, summary.failed)
        units = {u["id"] for u in store.units() if u["state"] == "done"}
        assert any("." in u for u in units)  # children ran
        tasks = our_tasks(emu.url, store.id)
        assert {task_unit(t["description"]) for t in tasks if t["state"] == "SUCCEEDED"} == units
        assert_all_done_and_verified(store, emu.url)
    finally:
        emu.stop()


def test_a_session_of_the_previous_version_resumes_and_adopts_its_tasks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The version before sent `eebatch:SESSION:UNIT:aN` and kept no prefix per attempt (EE
    took it then). Its tasks, running or exported, are found by those names after the
    upgrade: no unit is exported twice."""
    emu = emulator_with(strict_names=False, speed=20.0)
    try:
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 1, 0.5]")
        monkeypatch.setattr(admission, "task_description",
                            lambda s, u, n: f"eebatch:{s}:{u}:a{n}")
        monkeypatch.setattr(admission, "file_prefix", legacy_file_prefix)
        with worker_thread(store):
            wait_for(lambda: len(store.live_operations()) == 2, "both units sent")
        store.conn.execute("UPDATE attempts SET prefix = NULL")  # as the old schema had none
        store.conn.commit()
        monkeypatch.undo()

        summary = run_session(store.path)

        assert summary.ok, (summary.counts, summary.failed)
        assert_all_done_and_verified(store, emu.url)
        tasks = admin(emu.url, "/_emulator/state")["ee"]["tasks"]
        assert sorted(t["description"] for t in tasks) == sorted(
            f"eebatch:{store.id}:{u['id']}:a1" for u in store.units())
    finally:
        emu.stop()
