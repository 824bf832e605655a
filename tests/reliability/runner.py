"""Run one reliability part in a process of its own, bounded in time, and bring its Result
back; `python -m tests.reliability` and the quick tests both go through here.

    python -m tests.reliability.runner NAME --seed N --workdir DIR --out RESULT.json [--quick]

is the child's side: it gives the part its own EEBATCH_HOME under DIR, runs it and writes its
Result as JSON. A part that raises, or does not end in time, comes back as a Result whose one
failed check says so (with the end of its output), never as a crash of the runner.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from tests.reliability.common import Check, Result

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
QUICK_TIMEOUT = 240.0  # seconds one quick part may take before it counts as hung
FULL_TIMEOUT = 1800.0


def discover() -> list[str]:
    """The names of every part: tests/reliability/part_NAME.py."""
    return sorted(p.stem.removeprefix("part_") for p in HERE.glob("part_*.py"))


def to_json(result: Result) -> dict[str, object]:
    return dataclasses.asdict(result)


def from_json(data: dict[str, object]) -> Result:
    checks = [Check(**c) for c in data.pop("checks", [])]  # type: ignore[attr-defined]
    return Result(**data, checks=checks)  # type: ignore[arg-type]


def _failed(name: str, what: str, detail: str) -> Result:
    result = Result(part=name, tried="(did not finish)")
    result.check(what, False, detail)
    return result


def run_part(name: str, *, quick: bool, seed: int, workdir: Path,
             timeout: float | None = None) -> tuple[Result, float]:
    """The part's Result and its wall time in seconds; its output (the workers' logs are in
    `workdir`) goes to `workdir/part.log`."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "result.json"
    log = workdir / "part.log"
    timeout = timeout or (QUICK_TIMEOUT if quick else FULL_TIMEOUT)
    args = [sys.executable, "-m", "tests.reliability.runner", name, "--seed", str(seed),
            "--workdir", str(workdir), "--out", str(out)] + (["--quick"] if quick else [])
    start = time.monotonic()
    with log.open("wb") as sink:
        # A process group of its own, so a hung part goes with every worker it started.
        child = subprocess.Popen(args, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        try:
            code = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            code = None
    wall = time.monotonic() - start
    tail = log.read_text(errors="replace")[-3000:]
    if code is None:
        return _failed(name, f"the part ended within {timeout:.0f} s", tail), wall
    if code != 0 or not out.exists():
        return _failed(name, "the part ran to its end", f"exit {code}\n{tail}"), wall
    return from_json(json.loads(out.read_text())), wall


def _child() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.runner")
    parser.add_argument("name")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from tests.reliability.harness import use_home

    use_home(args.workdir)
    try:
        module = importlib.import_module(f"tests.reliability.part_{args.name}")
        result = module.run(args.quick, args.seed, args.workdir)
    except Exception:
        result = _failed(args.name, "the part ran without an exception", traceback.format_exc())
    args.out.write_text(json.dumps(to_json(result), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(_child())
