"""Each fault kind, on each route the engine uses, reaching the real clients as it would from
Google: the job still ends with every file verified and Drive empty, or, for a fault that
does not pass, with the failure kept and classified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.emulator.app import Emulator
from core.engine.runner import run_session
from tests.engine.conftest import admin, assert_all_done_and_verified, inject, make_session

MEDIA = {"method": "GET", "route": "drive files.get", "query_contains": "alt=media"}
CASES: list[tuple[str, dict[str, Any]]] = [
    ("export 503", {"route": "ee image.export", "kind": "status", "status": 503, "count": 2}),
    ("export 429", {"route": "ee image.export", "kind": "status", "status": 429, "count": 1}),
    ("export reset", {"route": "ee image.export", "kind": "reset", "count": 2}),
    ("operations.list 500", {"route": "ee operations.list", "kind": "status", "status": 500,
                             "count": 3}),
    ("operations.list reset", {"route": "ee operations.list", "kind": "reset", "count": 2}),
    ("about 503", {"route": "drive about.get", "kind": "status", "status": 503, "count": 2}),
    ("files.list 429", {"route": "drive files.list", "kind": "status", "status": 429,
                        "count": 2}),
    ("files.list reset", {"route": "drive files.list", "kind": "reset", "count": 2}),
    ("download 503", {**MEDIA, "kind": "status", "status": 503, "count": 2}),
    ("download reset", {**MEDIA, "kind": "reset", "count": 2}),
    ("download truncated", {**MEDIA, "kind": "truncate", "fraction": 0.4, "count": 2}),
    ("download corrupted", {**MEDIA, "kind": "corrupt", "flips": 3, "count": 2}),
    ("delete 500", {"route": "drive files.delete", "kind": "status", "status": 500,
                    "count": 2}),
    ("delete reset", {"route": "drive files.delete", "kind": "reset", "count": 2}),
]


@pytest.mark.parametrize(("name", "fault"), CASES, ids=[c[0] for c in CASES])
def test_fault_is_survived(name: str, fault: dict[str, Any], tmp_path: Path,
                           emulator: Emulator) -> None:
    store = make_session(tmp_path, emulator.url, bbox="[0, 0, 1, 0.5]")  # 2 units
    inject(emulator.url, **fault)
    summary = run_session(store.path)
    assert summary.ok, (summary.counts, summary.failed)
    assert_all_done_and_verified(store, emulator.url)
    (state,) = admin(emulator.url, "/_emulator/faults")["faults"]
    assert not state["active"], f"the fault never fired: {state}"


def test_a_bad_download_is_never_kept(tmp_path: Path, emulator: Emulator) -> None:
    """Every download corrupted: the unit fails after max_attempts with the reason, nothing
    unverified reaches output_dir, and the file stays in Drive."""
    store = make_session(tmp_path, emulator.url, bbox="[0, 0, 0.5, 0.5]", max_attempts=2)
    inject(emulator.url, **MEDIA, kind="corrupt", count=-1)
    summary = run_session(store.path)
    (_, error), = summary.failed
    assert "MD5" in error and "stays in Drive" in error
    out = tmp_path / "out"
    assert list(out.iterdir()) == []
    assert admin(emulator.url, "/_emulator/state")["drive"]["files"]


def test_a_permanent_error_fails_the_unit_with_its_message(tmp_path: Path,
                                                           emulator: Emulator) -> None:
    store = make_session(tmp_path, emulator.url, bbox="[0, 0, 0.5, 0.5]")
    inject(emulator.url, route="ee image.export", kind="status", status=400, count=-1,
           message="Image.select: Pattern 'SR_B9' did not match any bands.")
    summary = run_session(store.path)
    (unit, error), = summary.failed
    assert "Pattern 'SR_B9' did not match any bands" in error
    assert store.unit(unit)["attempts"] == 1  # a fatal error is not retried
