"""What every part of the reliability suite shares: the shape of a part and of its result.

A part is a module `tests/reliability/part_NAME.py` with

    def run(quick: bool, seed: int, workdir: pathlib.Path) -> Result

`quick` is the bounded version the default test command runs (tests/reliability/test_quick.py,
a few seconds to a minute per part); the full version is what `python -m tests.reliability`
runs and docs/reliability.md records. `seed` makes every random choice repeatable. `workdir` is
an empty folder the part owns (sessions, output dirs, emulator state).

Each invariant a part checks is read from the emulator's own records and the output dir, never
from eebatch's word about itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Check:
    """One invariant: what was checked and whether it held (with the evidence when not)."""

    name: str
    held: bool
    detail: str = ""


@dataclass
class Result:
    part: str  # the part's name, e.g. "kill9"
    tried: str  # one line: what the part did ("20 kill -9 at random moments of a 24-unit job")
    checks: list[Check] = field(default_factory=list)
    numbers: dict[str, float | int | str] = field(default_factory=dict)  # what it measured
    skipped: str = ""  # why the part (or some of it) could not run here, said plainly

    @property
    def held(self) -> bool:
        return all(c.held for c in self.checks)

    def check(self, name: str, held: bool, detail: str = "") -> None:
        self.checks.append(Check(name, bool(held), detail))
