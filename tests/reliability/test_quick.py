"""The quick version of every reliability part in the default test command: one test per
part (tests/reliability/part_*.py), each in its own process, every check must hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.runner import discover, run_part

SEED = 1  # the quick suite is repeatable; `python -m tests.reliability --seed N` varies it


@pytest.mark.parametrize("name", discover())
def test_part_holds(name: str, tmp_path: Path) -> None:
    result, wall = run_part(name, quick=True, seed=SEED, workdir=tmp_path)
    print(f"{name}: {result.tried}; {len(result.checks)} checks in {wall:.0f} s; "
          f"{result.numbers}; {result.skipped or 'nothing skipped'}")
    failed = [f"{c.name}: {c.detail}" for c in result.checks if not c.held]
    assert result.checks, f"{name} checked nothing"
    assert not failed, f"{name} (seed {SEED}, kept in {tmp_path}):\n" + "\n".join(failed)
