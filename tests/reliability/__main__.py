"""The reliability suite in one command (issue 15).

    python -m tests.reliability [--quick] [--seed N] [--only kill9,faults,...]
                                [--markdown docs/reliability.md] [--keep]

Runs every part (tests/reliability/part_*.py), each in its own process and temporary folder,
one after the other; prints a table (part, what it tried, checks held, numbers, what was
skipped) and the evidence of every check that failed; exits 1 if any failed. `--markdown
FILE` appends the run, dated, with the machine it ran on, to FILE.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.bench.common import machine
from tests.reliability.common import Result
from tests.reliability.runner import discover, run_part


def _numbers(result: Result) -> str:
    return ", ".join(f"{k} {v}" for k, v in result.numbers.items())


def table(runs: list[tuple[Result, float]]) -> str:
    """One row per part (part, checks held, wall time, what it tried), its numbers and what
    it skipped on the lines under it."""
    width = max([len("part")] + [len(r.part) for r, _ in runs])
    lines = [f"{'part'.ljust(width)}  {'held':<13} {'wall':>6}  tried"]
    for r, wall in runs:
        held = f"{sum(c.held for c in r.checks)}/{len(r.checks)}" + ("" if r.held else " FAILED")
        lines.append(f"{r.part.ljust(width)}  {held:<13} {wall:>4.0f} s  {r.tried}")
        pad = " " * (width + 2)
        if r.numbers:
            lines.append(f"{pad}numbers: {_numbers(r)}")
        if r.skipped.strip():
            lines.append(f"{pad}skipped: {r.skipped.strip()}")
    return "\n".join(lines)


def failures(runs: list[tuple[Result, float]]) -> list[str]:
    out = []
    for result, _ in runs:
        for check in result.checks:
            if not check.held:
                out.append(f"{result.part}: {check.name}: FAILED\n    "
                           + check.detail.strip().replace("\n", "\n    "))
    return out


def _brief(detail: str, n: int = 300) -> str:
    """A check's evidence on one line: its start and its end (a traceback's last line)."""
    text = " ".join(detail.split())
    return text if len(text) <= n else f"{text[:n // 2]} … {text[-n // 2:]}"


def _commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, cwd=Path(__file__).parents[2]).stdout.strip() or "?"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(runs: list[tuple[Result, float]], *, quick: bool, seed: int,
             info: dict[str, Any], command: str) -> str:
    """The run as Markdown: its command, commit and machine (`info`, taken at its start), a
    table of the parts and every check by name (with the evidence of those that failed)."""
    commit = _commit()
    if commit != info.get("commit"):  # others committed to the tree meanwhile
        commit = f"{info.get('commit')} (HEAD {commit} at its end)"
    lines = [
        f"### {info['date'][:10]}: {'quick' if quick else 'full'} run, seed {seed}",
        "",
        f"`{command}` at commit {commit}.",
        "",
        f"Machine: {info['nproc']} cores ({info['cpu']}), {info['ram_gb']} GB RAM, Python "
        f"{info['python']}; load average at the start "
        f"{', '.join(str(x) for x in info['loadavg_at_start'])}; {info['date']}.",
        "",
        "| part | tried | checks held | numbers | skipped | wall |",
        "|---|---|---|---|---|---|",
    ]
    for r, wall in runs:
        held = f"{sum(c.held for c in r.checks)}/{len(r.checks)}" + ("" if r.held else " ❌")
        lines.append(f"| {r.part} | {_cell(r.tried)} | {held} | {_cell(_numbers(r))} | "
                     f"{_cell(r.skipped.strip()) or '-'} | {wall:.0f} s |")
    lines.append("")
    for r, _ in runs:
        lines.append(f"- **{r.part}**: " + "; ".join(
            c.name + ("" if c.held else f" — **failed**: {_brief(c.detail)}")
            for c in r.checks))
    lines.append("")
    return "\n".join(lines) + "\n"


def main() -> int:
    parts = discover()
    parser = argparse.ArgumentParser(prog="python -m tests.reliability")
    parser.add_argument("--quick", action="store_true",
                        help="the bounded version the default test command runs")
    parser.add_argument("--seed", type=int, default=1, help="every random choice follows it")
    parser.add_argument("--only", default=",".join(parts),
                        help=f"comma-separated parts: {', '.join(parts)}")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="append this run, dated, with the machine, to this file")
    parser.add_argument("--keep", action="store_true",
                        help="keep each part's folder (sessions, logs, outputs)")
    args = parser.parse_args()
    chosen = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(chosen) - set(parts)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))} (known: {', '.join(parts)})")
    info = {**machine(), "commit": _commit()}
    command = " ".join(["python -m tests.reliability"] + (["--quick"] if args.quick else [])
                       + [f"--seed {args.seed}"]
                       + ([f"--only {','.join(chosen)}"] if chosen != parts else []))
    runs = []
    for name in chosen:
        workdir = Path(tempfile.mkdtemp(prefix=f"eebatch-reliability-{name}-"))
        print(f"{name} …", file=sys.stderr, flush=True)
        result, wall = run_part(name, quick=args.quick, seed=args.seed, workdir=workdir)
        runs.append((result, wall))
        print(f"{name}: {'held' if result.held else 'FAILED'} in {wall:.0f} s"
              + (f" (kept in {workdir})" if args.keep or not result.held else ""),
              file=sys.stderr, flush=True)
        if result.held and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(table(runs))
    failed = failures(runs)
    if failed:
        print("\n" + "\n".join(failed))
    if args.markdown:
        with args.markdown.open("a", encoding="utf-8") as out:
            out.write(markdown(runs, quick=args.quick, seed=args.seed, info=info,
                               command=command))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
