"""`eebatch` command line: plan, new, sessions, status, rm (and more as they land).

Bad input gets one line per problem on stderr and exit code 2; nothing is written.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import humanize

from core.plan import Plan, make_plan, preview
from core.session import create_session
from core.spec import SpecError, load_spec
from core.store import COUNTED, DONE, STATES, Store, StoreError

EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """One or more lines for stderr; exit code 2."""


def _size(n: float) -> str:
    return humanize.naturalsize(n, binary=False, format="%.1f")


def _job(path: str) -> Path:
    job = Path(path)
    if not job.exists():
        raise BadInput(f"{job}: no such job file")
    return job


def describe_plan(plan: Plan) -> list[str]:
    spec = plan.spec
    unit = "°" if plan.tiles.frame.geographic else " m"
    first, last = plan.periods[0], plan.periods[-1]
    when = ("all dates" if first.start is None else
            f"{first.start} to {last.end} (end exclusive)")
    bands = len(plan.spec.recipe.params.get("bands", [])) + len(
        plan.spec.recipe.params.get("indices", [])) if spec.recipe.name == "composite" else \
        spec.recipe.params["bands"]
    lines = [
        f"Job      {spec.name}  ({spec.path})",
        f"Region   {spec.region_source}",
        f"Grid     {plan.tiles.frame.size:g}{unit} tiles on {spec.grid.crs}"
        f"{' aligned to the pixel grid' if spec.grid.align else ''}: {len(plan.tiles):,} tiles",
        f"Periods  {len(plan.periods):,}  {when}",
        f"Units    {plan.units:,}  ({len(plan.tiles):,} tiles x {len(plan.periods):,} periods)",
        f"Pixels   {humanize.intword(plan.pixels)} at {spec.export.scale:g} m",
        f"Output   ~{_size(plan.est_bytes)} estimated ({spec.export.file_format}, {bands} bands,"
        f" recipe {spec.recipe.name})",
        f"Drive    {plan.budgets:.2f} x the {_size(spec.limits.drive_budget)} budget"
        f" (files are deleted from Drive as soon as they are downloaded)",
        f"Limits   {spec.limits.max_tasks} tasks at once, {spec.limits.max_attempts} attempts,"
        f" split depth {spec.limits.split_depth}",
        "",
    ]
    return lines + ["  " + line for line in preview(plan)]


def cmd_plan(args: argparse.Namespace) -> int:
    spec = load_spec(_job(args.job))
    print("\n".join(describe_plan(make_plan(spec))))
    print("\nNothing was sent to Earth Engine. `eebatch new JOB` creates a session to run.")
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    store, plan = create_session(_job(args.job))
    print(f"created session {store.id}: {plan.units:,} units, ~{_size(plan.est_bytes)}")
    print(f"  store  {store.path}")
    print(f"  status eebatch status {store.id}")
    store.close()
    return 0


def _progress(done: int, total: int) -> str:
    return f"{done}/{total} done ({100 * done / total:.0f}%)" if total else "0 units"


def cmd_sessions(args: argparse.Namespace) -> int:
    sessions = Store.list_sessions()
    if not sessions:
        print("no sessions yet; `eebatch new JOB.toml` creates one")
        return 0
    width = max(len(s.id) for s in sessions)
    print(f"{'ID':<{width}}  {'NAME':<20}  {'CREATED':<16}  PROGRESS")
    for s in sessions:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.created))
        print(f"{s.id:<{width}}  {s.name:<20}  {created:<16}  {_progress(s.done, s.total)}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    store = Store.open(args.session)
    try:
        counts = store.counts()
        total = sum(n for s, n in counts.items() if s in COUNTED)
        print(f"session {store.id} ({store.name}): {_progress(counts.get(DONE, 0), total)}")
        for state in STATES:
            if counts.get(state):
                print(f"  {state:<12} {counts[state]:>8,}")
        print(f"  worker       {'running' if store.worker_alive() else 'not running'}")
    finally:
        store.close()
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    store = Store.open(args.session)
    if store.worker_alive():
        store.close()
        raise BadInput(f"session {store.id} has a worker running; stop it first")
    counts = store.counts()
    total = sum(n for s, n in counts.items() if s in COUNTED)
    what = f"session {store.id} ({_progress(counts.get(DONE, 0), total)})"
    if not args.yes:
        if not sys.stdin.isatty():
            store.close()
            raise BadInput(f"not deleting {what} without confirmation; pass --yes")
        answer = input(f"Delete {what}? Downloaded files stay in place. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            store.close()
            print("kept")
            return 1
    store.delete()
    print(f"deleted {what}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eebatch",
        description="Run very large Google Earth Engine export jobs: tile, submit, watch, "
                    "download, verify, clean up, resume.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plan", help="show what a job file would run, without contacting EE")
    p.add_argument("job", help="job file (TOML)")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("new", help="create a session from a job file")
    p.add_argument("job", help="job file (TOML)")
    p.set_defaults(func=cmd_new)

    p = sub.add_parser("sessions", help="list sessions")
    p.set_defaults(func=cmd_sessions)

    p = sub.add_parser("status", help="counts per state of a session")
    p.add_argument("session", help="session id (or a unique prefix)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("rm", help="delete a session (asks first)")
    p.add_argument("session", help="session id (or a unique prefix)")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask")
    p.set_defaults(func=cmd_rm)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args))
    except SpecError as exc:
        for line in exc.problems:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (BadInput, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
