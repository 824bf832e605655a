"""`eebatch` command line: plan, new, sessions, status, rm (and more as they land).

Bad input gets one line per problem on stderr and exit code 2; nothing is written.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import humanize

from core.limits import PAUSED, SETTABLE
from core.plan import make_plan, plan_warnings
from core.plan_text import describe_plan, size_text
from core.recipes import RECIPES
from core.routes import AUTO, BATCH, DIRECT, ROUTES
from core.session import OWN_OUTPUTS, create_session, load_session_spec, unfinished_sessions
from core.spec import SpecError, load_spec
from core.states import (
    CANCELLABLE,
    CANCELLED,
    CMD_DONE,
    CMD_PENDING,
    COUNTED,
    DONE,
    FAILED,
    PENDING,
    SPLIT,
    STATES,
)
from core.store import (
    DatabaseError,
    SessionDamaged,
    Store,
    StoreError,
    event_line,
    read_error,
)

EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """One or more lines for stderr; exit code 2."""


class CannotRun(Exception):
    """The job's backend cannot be reached or is not set up: one line for stderr; exit 1."""


_size = size_text


def _job(path: str) -> Path:
    job = Path(path)
    shown = path if path.isprintable() else repr(path)  # one line, whatever was typed
    try:
        found = job.is_file()
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte
        raise BadInput(f"{shown}: cannot be a job file ({exc})") from None
    if not found:
        raise BadInput(f"{shown}: no such job file")
    return job


def cmd_plan(args: argparse.Namespace) -> int:
    spec = load_spec(_job(args.job))
    print("\n".join(describe_plan(make_plan(spec))))
    print("\nNothing was sent to Earth Engine. `eebatch new JOB` creates a session to run.")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    names = [args.name] if args.name else list(RECIPES)
    if names[0] not in RECIPES:
        raise BadInput(f"unknown recipe {names[0]!r}; known: {', '.join(RECIPES)}")
    print("\n\n".join("\n".join(RECIPES[name].manual()) for name in names))
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    store = _create(_job(args.job))
    print(f"  store  {store.path}")
    print(f"  next   eebatch run {store.id} --headless   (or the dashboard: "
          f"eebatch open {store.id})")
    store.close()
    return 0


def _create(job: Path) -> Store:
    """A new session of the job file, said in a line (and where it writes, when an unfinished
    session of the same job made it take its own folders)."""
    store, plan = create_session(job)
    print(f"created session {store.id}: {plan.units:,} units, ~{_size(plan.est_bytes)}")
    for line in plan_warnings(plan):  # valid, but likely a mistake: said before it runs
        print(line, file=sys.stderr)
    if store.setting(OWN_OUTPUTS):
        spec = load_session_spec(store)
        print(f"  another session of this job is unfinished: this one writes to "
              f"{spec.output_dir} and Drive folder {spec.export.folder!r}")
    return store


def _progress(done: int, total: int) -> str:
    """Floored: 263 of 264 is 99%, only all done is 100%."""
    return f"{done}/{total} done ({100 * done // total}%)" if total else "0 units"


@contextmanager
def _reading(store: Store) -> Iterator[None]:
    """A SQLite error while reading an open session (damage deeper in the file than its header)
    becomes the same one line as when opening it."""
    try:
        yield
    except DatabaseError as exc:
        raise read_error(store.path, exc) from None


def cmd_sessions(args: argparse.Namespace) -> int:
    sessions, problems = Store.scan_sessions()
    if not sessions and not problems:
        print("no sessions yet; `eebatch new JOB.toml` creates one")
        return 0
    width = max(len(i) for i in [s.id for s in sessions] + [p.stem for p, _ in problems])
    print(f"{'ID':<{width}}  {'NAME':<20}  {'CREATED':<16}  PROGRESS")
    for s in sessions:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.created))
        print(f"{s.id:<{width}}  {s.name:<20}  {created:<16}  {_progress(s.done, s.total)}")
    for path, problem in problems:  # listed, not hidden: the user can see and remove them
        if isinstance(problem, SessionDamaged):
            print(f"{path.stem:<{width}}  damaged: {problem.reason}; "
                  f"`eebatch rm {path.stem}` removes it")
        else:
            print(f"{path.stem:<{width}}  cannot be read: {problem}")
    return 0


def _csv_target(text: str) -> Path:
    """Check where --csv will write before anything is read or printed."""
    target = Path(text)
    if target.is_dir():
        raise BadInput(f"--csv {target}: is a directory; give a file name")
    parent = target.parent
    if not parent.is_dir():
        raise BadInput(f"--csv {target}: no such directory {parent}")
    if not os.access(parent, os.W_OK):
        raise BadInput(f"--csv {target}: cannot write into {parent}")
    return target


def cmd_status(args: argparse.Namespace) -> int:
    csv = _csv_target(args.csv) if args.csv else None
    store = Store.open(args.session)
    try:
        with _reading(store):  # every read: damage deep in the file is one line too
            counts = store.counts()
            table = unit_table(store) if csv else None
            alive = store.worker_alive()
            paused = store.setting(PAUSED)
            lines = _where_and_cost(store) + _worker_lines(store.worker_status() or {}, alive)
        total = sum(n for s, n in counts.items() if s in COUNTED)
        print(f"session {store.id} ({store.name}): {_progress(counts.get(DONE, 0), total)}")
        for state in STATES:
            if counts.get(state):
                print(f"  {state:<12} {counts[state]:>8,}")
        print(f"  worker       {'running' if alive else 'not running'}"
              f"{', paused' if paused else ''}")
        for line in lines:
            print(f"  {line}")
        if csv and table is not None:
            try:
                table.to_csv(csv, index=False)
            except OSError as exc:  # a full disk, a directory removed meanwhile
                raise BadInput(f"--csv {csv}: {exc.strerror or exc}") from None
            print(f"wrote {len(table):,} units to {csv}")
    finally:
        store.close()
    return 0


def _where_and_cost(store: Store) -> list[str]:
    """Where the files are and what they cost: files, size, folder, EECU-hours, retries,
    splits, wall time (for `status` and the end of a headless run)."""
    t = store.totals()
    try:
        spec = load_session_spec(store)
    except SpecError:  # the job's region file has gone since: the rest still holds
        spec = None
    where = f" in {spec.output_dir}" if spec is not None else ""
    lines = [f"files        {t.files:,} verified, {_size(t.bytes)}{where}",
             f"cost         {t.eecu_seconds / 3600:,.2f} EECU-hours, {t.retries:,} retries, "
             f"{t.splits:,} splits, {humanize.precisedelta(t.wall_seconds)} of wall time"]
    if spec is not None and spec.export.route != BATCH:
        lines.append(f"routes       {_routes_text(spec.export.route, store.route_counts())}")
    return lines


def _routes_text(route: str, counts: dict[str, dict[str, int]]) -> str:
    """How the job's units go (core/routes.py): per route, how many and how far, e.g.
    "auto: direct 1,940 (1,900 done), batch 60 (20 done)"."""
    parts = []
    for name in (DIRECT, BATCH):
        states = counts.get(name, {})
        if states:
            parts.append(f"{name} {sum(states.values()):,} ({states.get(DONE, 0):,} done)")
    where = "computePixels/computeFeatures, no Drive" if route == DIRECT else \
        "direct where EE computes it interactively, batch for the rest"
    return f"{route} ({where}): {', '.join(parts) or 'no units'}"


def _worker_lines(status: dict[str, object], alive: bool) -> list[str]:
    """What the worker last said of costs (core/engine/costs.py) and, while it runs, of why
    work waits: for `status`."""
    lines: list[str] = []
    parts: list[str] = []
    if status.get("eecu_forecast") is not None:
        parts.append(f"~{float(status['eecu_forecast']) / 3600:,.2f} for the whole job "
                     "(learned from finished units)")
    if status.get("eecu_cap") is not None:
        parts.append(f"cap {float(status['eecu_cap']) / 3600:,.2f} (limits.eecu_hours)")
    if status.get("eecu_month") is not None:
        parts.append(f"the project {float(status['eecu_month']) / 3600:,.2f} this month")
    if parts:
        lines.append("EECU-hours   " + "; ".join(parts))
    for key in ("waiting", "down_why"):
        if alive and status.get(key):
            lines.append(f"waiting      {status[key]}")
    return lines


def unit_table(store: Store):  # type: ignore[no-untyped-def]
    """One row per unit: state, attempts, EECU-seconds, bytes and files, the last error, the
    tile's bounds (degrees), the period's dates and the local file path(s), `;`-separated."""
    import pandas as pd

    # Read through sqlite3 (not pd.read_sql_query, which wraps errors) so damage is reported.
    columns, rows = store.unit_table_rows()
    return pd.DataFrame(rows, columns=columns)


def _agreed(question: str, yes: bool) -> bool:
    """True for --yes or a "y" typed at the terminal; without a terminal, refuse to guess."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise BadInput(f"{question} - no terminal to ask on; pass --yes")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _confirmed(what: str, yes: bool) -> bool:
    """True to go ahead with deleting `what`."""
    return _agreed(f"Delete {what}? Downloaded files stay in place.", yes)


def cmd_rm(args: argparse.Namespace) -> int:
    path = Store.find(args.session)
    try:
        store = Store(path)
        with _reading(store):
            counts = store.counts()
    except SessionDamaged as exc:
        return _rm_damaged(exc.path, exc.reason, args.yes)
    try:
        if store.worker_alive():
            raise BadInput(f"session {store.id} is being run by {store.who_runs()}; stop it "
                           "first (ctrl+c where it runs, or kill that pid)")
        total = sum(n for s, n in counts.items() if s in COUNTED)
        what = f"session {store.id} ({_progress(counts.get(DONE, 0), total)})"
        if not _clean_up_before_rm(store, args.yes, args.force):
            return 1
        if not _confirmed(what, args.yes):
            print("kept")
            return 1
        store.delete()
    finally:
        store.close()  # again after delete: harmless
    print(f"deleted {what}")
    return 0


def _clean_up_before_rm(store: Store, yes: bool, force: bool) -> bool:
    """Offer to cancel the session's live EE tasks and delete its exports still in Drive;
    False when they could not be and the session is kept (unless `force`)."""
    from core.engine.cleanup import clean_up, leftovers

    with _reading(store):
        left = leftovers(store)
    if not left:
        return True
    print(f"session {store.id} still has {left.describe()}")
    if not _agreed("Cancel those tasks and delete those files from Drive?", yes):
        print("left as they are: eebatch will not know them once the session is deleted")
        return True
    try:
        from core.engine.runner import open_backends

        clean_up(left, open_backends(load_session_spec(store)))
    except Exception as exc:  # any failure to reach EE or Drive: nothing is lost yet
        from core.backends.failures import classify_exception

        reason = classify_exception(exc)[1]
        if not force:
            print(f"could not cancel or delete them ({reason}); the session is kept so that "
                  f"`eebatch rm {store.id}` can try again (--force deletes it anyway)",
                  file=sys.stderr)
            return False
        print(f"could not cancel or delete them ({reason}); deleting the session anyway "
              "(--force)", file=sys.stderr)
        return True
    print(f"cancelled {len(left.operations)} EE tasks, deleted {len(left.files)} files "
          f"({_size(left.bytes)}) from Drive")
    return True


def _rm_damaged(path: Path, reason: str, yes: bool) -> int:
    """A file no Store can open: still removable, it is what `eebatch sessions` points to."""
    if Store.worker_lock_held(path):
        raise BadInput(f"{path} has a worker running; stop it first")
    what = f"the damaged session file {path} ({reason})"
    if not _confirmed(what, yes):
        print("kept")
        return 1
    Store.remove_files(path)
    print(f"deleted {what}")
    return 0


def _eta_words(seconds: float) -> str:
    """As the dashboard says it: under a minute the estimate (units left / recent rate) means
    nothing, as the last tasks take as long as they take ("7 seconds" stayed for 20)."""
    return "under a minute" if seconds < 60 else humanize.naturaldelta(seconds)


def _status_line(store: Store, started: float) -> str:
    counts = store.counts()
    total = sum(n for s, n in counts.items() if s in COUNTED)
    done = counts.get(DONE, 0)
    busy = " ".join(f"{s} {counts[s]}" for s in STATES
                    if s not in (DONE, SPLIT, PENDING) and counts.get(s))
    status = store.worker_status() or {}
    rate = status.get("units_per_hour") or 0.0
    eta = status.get("eta_seconds")
    drive_total = status.get("drive_total")
    drive = (f"Drive {_size(status.get('drive_used', 0))} of "
             f"{_size(drive_total) if drive_total else 'unlimited'}")
    # Paused: no ETA (nothing new is submitted, so it would only run on).
    paused = bool(store.setting(PAUSED))
    return (f"{time.strftime('%H:%M:%S')} {store.id}: {'PAUSED | ' if paused else ''}"
            f"{_progress(done, total)}{' | ' + busy if busy else ''} | {rate:.0f} units/h"
            f"{', ETA ' + _eta_words(eta) if eta and not paused else ''} | {drive}"
            f" | {humanize.naturaldelta(time.time() - started)} elapsed"
            f"{' | ' + status['down_why'] if status.get('down_why') else ''}"
            f"{' | EE restricted mode' if status.get('restricted') else ''}"
            f"{' | ' + status['waiting'] if status.get('waiting') else ''}")


def run_headless(session_path: Path, *, emulator_url: str | None = None,
                 every: float = 10.0) -> int:
    """Run the worker in a thread, print a progress line every `every` seconds; exit 0 when
    every unit is done, 1 with a summary when some failed or were cancelled."""
    import threading

    from core.engine.runner import run_session

    result: dict[str, object] = {}

    def work() -> None:
        try:
            result["summary"] = run_session(session_path, emulator_url=emulator_url)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=work, name="eebatch-worker", daemon=True)
    started = time.time()
    thread.start()
    store = Store(session_path)
    try:
        while thread.is_alive():
            thread.join(every)
            print(_status_line(store, started), flush=True)
    except KeyboardInterrupt:
        print("interrupted: the session is saved; `eebatch run "
              f"{store.id} --headless` continues it", file=sys.stderr)
        return 130
    finally:
        store.close()
    if "error" in result:
        from core.credentials import CredentialsError
        from core.engine.runner import BackendError

        error = result["error"]
        if isinstance(error, BackendError | CredentialsError):
            raise CannotRun(str(error))
        raise error  # type: ignore[misc]
    summary = result["summary"]
    from core.engine.worker import Summary

    assert isinstance(summary, Summary)
    store = Store(session_path)
    try:
        return _run_ended(store, summary.ok, summary.counts, summary.failed)
    finally:
        store.close()


def _run_ended(store: Store, ok: bool, counts: dict[str, int],
               failed: list[tuple[str, str]]) -> int:
    """The last lines of a headless run: the outcome, where the files are and what they
    cost, and what to do about units that failed or were cancelled."""
    if ok:
        print(f"all {counts.get(DONE, 0)} units done")
    else:
        print("finished with problems: " + ", ".join(
            f"{n} {s}" for s, n in sorted(counts.items()) if s not in (DONE, SPLIT)))
        for unit, error in failed[:20]:
            print(f"  {unit}: {error}")
        if len(failed) > 20:
            print(f"  … and {len(failed) - 20} more (`eebatch status`)")
    for line in _where_and_cost(store):
        print(line)
    if ok:
        return 0
    flags = " ".join(f"--{s}" for s in (FAILED, CANCELLED) if counts.get(s))
    if flags:
        print(f"to retry them: eebatch retry {store.id} {flags}, then "
              f"eebatch run {store.id} --headless")
    return 1


def _session_from(target: str, new: bool = False) -> Path:
    """A job file resumes its unfinished session (the newest, if several), or creates one
    (always with `new`); anything else names an existing session."""
    if target.endswith(".toml"):
        job = _job(target)
        if not new:
            unfinished = unfinished_sessions(load_spec(job))
            if unfinished:
                found = unfinished[-1]
                print(f"resuming session {found.id} ({found.done} of {found.total} done); "
                      "--new starts a fresh one")
                return found.path
        store = _create(job)
        path = store.path
        store.close()
        return path
    path = Store.find(target)
    Store(path).close()  # a damaged file: one line now, before a worker or a screen starts
    return path


def cmd_run(args: argparse.Namespace) -> int:
    path = _session_from(args.target, args.new)
    if args.headless:
        from core.demo import is_demo

        if is_demo(path):
            return _run_demo_again(path, args.every)
        return run_headless(path, every=args.every)
    from tui.launch import open_session

    return open_session(str(path), mouse=not args.no_mouse)


def _run_demo_again(path: Path, every: float) -> int:
    """A demo session's emulator lived in its `eebatch demo` process: a fresh one takes over,
    and the worker's recovery sends again the exports that one no longer knows."""
    from core.demo import DEMO_EMULATOR
    from core.emulator.app import Emulator

    emulator = Emulator(DEMO_EMULATOR).start()
    print(f"demo session: its emulator ended with `eebatch demo`; a fresh one runs at "
          f"{emulator.url}", flush=True)
    try:
        return run_headless(path, emulator_url=emulator.url, every=every)
    finally:
        emulator.stop()


def cmd_demo(args: argparse.Namespace) -> int:
    from core.demo import demo_products, prepare_demo

    if not args.headless:
        from tui.launch import demo

        return demo(mouse=not args.no_mouse, route=args.route)
    emulator, path = prepare_demo(route=args.route)
    print(f"demo: emulator at {emulator.url}, session {path.stem}")
    try:
        code = run_headless(path, emulator_url=emulator.url, every=args.every)
        store = Store(path)
        splits = store.counts().get(SPLIT, 0)
        retried = store.count_retried_units()
        if args.route == DIRECT:
            print(f"{splits} tiles were too big for one interactive request and were split "
                  f"in four; {retried} units were retried; nothing went through Drive.")
        else:
            print(f"{splits} tiles ran out of memory and were split in four; {retried} units "
                  "were retried after transient failures; the Drive folder was emptied as "
                  "files landed.")
        if args.route == AUTO:
            direct = store.route_counts().get(DIRECT, {}).get(DONE, 0)
            print(f"{direct} units came directly from EE (computePixels: no task, no Drive); "
                  "the rest, too big for an interactive request, by batch exports.")
        for mosaic, quicklook in demo_products(path):
            print(f"the summer's mosaic: {mosaic} (a look at it: {quicklook})")
        print(f"look at it: eebatch status {store.id}   (its log: eebatch log {store.id})")
        store.close()
        return code
    finally:
        emulator.stop()


def cmd_emulator(args: argparse.Namespace) -> int:
    from core.emulator.app import Emulator
    from core.emulator.config import EmulatorConfig
    config = EmulatorConfig(
        slots=args.slots, speed=args.speed, drive_quota=args.drive_quota, seed=args.seed,
        state_dir=Path(args.state_dir) if args.state_dir else None,
        memory_limit_pixels=args.memory_limit_pixels, timeout_pixels=args.timeout_pixels,
        internal_error_rate=args.internal_error_rate, max_page_size=args.page_size,
        strict_names=args.strict_names, max_pending_tasks=args.max_pending_tasks,
        max_run_seconds=args.max_run_seconds,
        operations_oldest_first=args.operations_order == "oldest",
        drive_listing_lag=args.drive_listing_lag, quota_other=args.quota_other)
    emulator = Emulator(config, port=args.port).start()
    url = emulator.url
    print(f"eebatch emulator ready: {url}", flush=True)
    print(f"""
  Earth Engine:  from core.connect import init_ee; init_ee("{url}", "my-project")
                 (= ee.Initialize(credentials=Credentials(token="…"), url="{url}",
                    project="my-project"))
  Drive:         from core.connect import make_drive; drive = make_drive("{url}")
  a job file:    [backend] kind = "emulator"  url = "{url}"
  state:         curl {url}/_emulator/state
  Ctrl-C stops it.""", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


def cmd_open(args: argparse.Namespace) -> int:
    from tui.launch import open_session

    path = Store.find(args.session)  # a bad id is one line and exit 2, before any screen
    return open_session(str(path), mouse=not args.no_mouse, start_worker=not args.attach)


def cmd_serve(args: argparse.Namespace) -> int:
    from tui.serve import CannotServe, serve_session

    path = Store.find(args.session)  # a bad id is one line and exit 2, before anything listens
    Store(path).close()
    try:
        return serve_session(path, port=args.port)
    except CannotServe as exc:
        raise CannotRun(str(exc)) from None


def cmd_auth(args: argparse.Namespace) -> int:
    from core import credentials

    try:
        if args.auth_command == "service-account":
            email = credentials.save_service_account(Path(args.key))
            print(f"saved the key of {email} to {credentials.service_account_path()} "
                  "(mode 0600)")
            print("note: exports land in the service account's own Drive")
        elif args.auth_command == "login":
            where = credentials.login(Path(args.client_secrets), args.port)
            print(f"saved your token to {where} (mode 0600)")
        else:
            current = credentials.status()
            print(current.detail)
            for problem in current.problems:
                print(f"problem: {problem}")
            return 0 if current.kind and not current.problems else 1
    except credentials.CredentialsError as exc:
        raise BadInput(str(exc)) from None
    print("check it with: eebatch doctor JOB.toml")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from core.doctor import diagnose

    if (args.target is None) == (args.probe is None):
        raise BadInput("doctor takes a job file or session id, or --probe JOB (not both)")
    target = args.target if args.probe is None else args.probe
    if target.endswith(".toml"):
        spec = load_spec(_job(target))
    else:
        from core.engine.runner import load_session_spec

        store = Store.open(target)
        try:
            with _reading(store):
                spec = load_session_spec(store)
        finally:
            store.close()
    if args.probe is not None:
        if spec.export.destination != "drive":
            raise BadInput(f"--probe exports to Drive; this job's export.destination is "
                           f"{spec.export.destination!r}")
        from core.probe import CannotConnect, Probe

        try:  # one line per finding; 0 when it ran, whatever it found
            Probe(spec, timeout=args.probe_timeout, report=lambda finding: print(
                f"{'ok ' if finding.ok else 'BAD'}  {finding.name:<14} {finding.message}",
                flush=True), progress=lambda line: print(line, flush=True)).run()
        except CannotConnect as exc:
            raise CannotRun(str(exc)) from None
        return 0
    bad = 0
    for check in diagnose(spec):
        print(f"{'ok ' if check.ok else 'BAD'}  {check.name:<14} {check.message}", flush=True)
        bad += not check.ok
    return 1 if bad else 0


def cmd_log(args: argparse.Namespace) -> int:
    """The session's events as its log file has them; with --follow, new ones as they come
    until ctrl+c."""
    store = Store.open(args.session)
    last, batch = 0, 1000
    try:
        with _reading(store):
            while True:
                rows = store.events(last, batch)
                for row in rows:
                    print(event_line(row))
                    last = row["id"]
                if len(rows) == batch:
                    continue
                if not args.follow:
                    return 0
                sys.stdout.flush()
                time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        store.close()


def cmd_assets(args: argparse.Namespace) -> int:
    """A job's own EE assets (destination = "asset"): list them, merge a table job's parts
    into one asset (then delete the parts, after asking), or delete them (after asking)."""
    from core.assets import AssetsError, job_assets, merge, remove
    from core.backends.failures import classify_exception
    from core.engine.runner import BackendError, open_backends

    store = Store.open(args.session)
    try:
        with _reading(store):
            spec = load_session_spec(store)
        try:
            ee = open_backends(spec).ee
            if args.action == "list":
                assets = job_assets(store, spec, ee)
                for name in [*assets.parts, assets.merged]:
                    if name in assets.present or name != assets.merged:
                        state = "in EE" if name in assets.present else "gone"
                        print(f"{name}  {state}")
                return 0
            def ask(question: str) -> bool:
                return _agreed(question, args.yes)

            if args.action == "merge":
                print(merge(store, spec, ee, progress=print, confirm=ask))
            else:
                print(remove(store, spec, ee, confirm=ask))
        except AssetsError as exc:
            raise BadInput(str(exc)) from None
        except BackendError as exc:
            raise CannotRun(str(exc)) from None
        except (BadInput, StoreError):
            raise  # the user's to mend (no terminal to ask on): exit 2
        except Exception as exc:  # EE's answer to a call: its own words, one line
            raise CannotRun(f"Earth Engine: {classify_exception(exc)[1]}") from None
    finally:
        store.close()
    return 0


def cmd_assemble(args: argparse.Namespace) -> int:
    """The session's products made again from its verified files: a mosaic (VRT, quicklook,
    and with --cog a Cloud-Optimized GeoTIFF) per period, the merged table of a table
    recipe. One line per product; exit 1 when one failed."""
    from core.assembly.products import assemble_session

    store = Store.open(args.session)
    try:
        with _reading(store):
            spec = load_session_spec(store)
            outcomes = assemble_session(store, spec, cog=args.cog)
    finally:
        store.close()
    if not outcomes:
        print(f"nothing to assemble: no verified files in session {store.id} yet")
    for outcome in outcomes:
        print(outcome.line if not outcome.made else f"assembled {outcome.line}",
              file=sys.stderr if outcome.problem and not outcome.made else sys.stdout)
    return 1 if any(o.problem and not o.made for o in outcomes) else 0


# How long retry/cancel/pause/resume wait for a running worker to answer before saying so.
COMMAND_ANSWER_SECONDS = 15.0


def cmd_steer(args: argparse.Namespace) -> int:
    """retry, cancel, pause, resume: commands through the store, for the worker running the
    session or, if none does, for the next one (it applies them before anything else). All
    are checked first: one that does not apply is one line, exit 2, and nothing is posted."""
    verb = args.command
    store = Store.open(args.session)
    try:
        with _reading(store):
            units = _steered_units(store, args)
            if units == []:
                print(f"nothing to {verb} in session {store.id}")
                return 0
            with store.tx():
                ids = [store.post_command(verb, unit) for unit in units or [None]]
            if not store.worker_alive():
                print(f"{_commands_text(verb, units)} queued: no worker runs {store.id}; the "
                      f"next one applies it first (eebatch run {store.id} --headless)")
                return 0
            return _print_answers(store, ids)
    finally:
        store.close()


def cmd_set(args: argparse.Namespace) -> int:
    """set: change a live limit of a session (max_tasks, drive_budget, eecu_hours) for the
    worker running it, or the next one. A value out of bounds is one line, exit 2."""
    store = Store.open(args.session)
    try:
        with _reading(store):
            with store.tx():
                cid = store.post_command("set", arg={"key": args.key,
                                                     "value": _set_value(args.value)})
            if not store.worker_alive():
                print(f"set {args.key} queued: no worker runs {store.id}; the next one applies "
                      f"it first (eebatch run {store.id} --headless)")
                return 0
            return _print_answers(store, [cid])
    finally:
        store.close()


def _set_value(text: str) -> int | float | str:
    """A whole number, a number, or the text (a size such as "20 GB")."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _steered_units(store: Store, args: argparse.Namespace) -> list[str] | None:
    """The units a retry or cancel names (None for pause and resume, which name none)."""
    if args.command in ("pause", "resume"):
        return None
    if args.command == "retry":
        chosen = [s for s in (FAILED, CANCELLED) if getattr(args, s)]
    else:  # cancel --all: every unit a cancel applies to (not finished, not downloading)
        chosen = list(CANCELLABLE) if args.all else []
    if not args.units and not chosen:
        flags = "--failed or --cancelled" if args.command == "retry" else "--all"
        raise BadInput(f"{args.command}: name units, or give {flags}")
    if args.units and chosen:
        raise BadInput(f"{args.command}: name units or give a flag, not both")
    return list(args.units) or [row["id"] for state in chosen for row in store.units(state)]


def _commands_text(verb: str, units: list[str] | None) -> str:
    if units is None:
        return verb
    shown = " ".join(units[:5]) + (f" and {len(units) - 5} more" if len(units) > 5 else "")
    return f"{verb} of {shown}"


def _print_answers(store: Store, ids: list[int]) -> int:
    """Wait for the running worker to answer each command (with a deadline) and print its
    answers; 1 if it refused one."""
    deadline = time.monotonic() + COMMAND_ANSWER_SECONDS
    answers = [store.command(i) for i in ids]
    while any(a is None or a["state"] == CMD_PENDING for a in answers):
        if time.monotonic() > deadline:
            print(f"posted; the worker of {store.id} has not answered yet "
                  f"(`eebatch log {store.id}` shows when it does)")
            return 0
        time.sleep(0.1)
        answers = [store.command(i) for i in ids]
    for answer in answers[:20]:
        print(f"{answer['verb']}{' ' + answer['unit'] if answer['unit'] else ''}: "
              f"{answer['result']}")
    if len(answers) > 20:
        print(f"… and {len(answers) - 20} more (`eebatch log {store.id}`)")
    bad = sum(a["state"] != CMD_DONE for a in answers)
    return 1 if bad else 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 0 to 65535, got {value}")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _rate(text: str) -> float:
    value = _finite(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction from 0 to 1, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _byte_size(text: str) -> int:
    """A size such as "2 GB" or a number of bytes."""
    from core.sizes import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _drive_quota(text: str) -> int | None:
    """A size such as "15 GB", or "unlimited" (None)."""
    if text.strip().lower() == "unlimited":
        return None
    from core.sizes import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f'{exc}, or "unlimited"') from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eebatch",
        description="Run very large Google Earth Engine export jobs: tile, submit, watch, "
                    "download, verify, clean up, resume. Without a command: the dashboard.",
        epilog="Start with `eebatch demo`. Job file reference and setup: the README.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plan", help="show what a job file would run, without contacting EE")
    p.add_argument("job", help="job file (TOML)")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("recipes", help="the recipes a job file can name, with their parameters")
    p.add_argument("name", nargs="?", help="only this recipe")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("new", help="create a session from a job file")
    p.add_argument("job", help="job file (TOML)")
    p.set_defaults(func=cmd_new)

    p = sub.add_parser("sessions", help="list sessions")
    p.set_defaults(func=cmd_sessions)

    p = sub.add_parser("status", help="counts per state of a session")
    p.add_argument("session", help="session id (or a unique prefix)")
    p.add_argument("--csv", metavar="FILE",
                   help="also write one row per unit (state, attempts, EECU-s, bytes, error)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("rm", help="delete a session (asks first)")
    p.add_argument("session", help="session id (or a unique prefix)")
    p.add_argument("-y", "--yes", action="store_true",
                   help="do not ask: cancel its live EE tasks, delete its files in Drive and "
                        "the session")
    p.add_argument("--force", action="store_true",
                   help="delete the session even when its EE tasks or Drive files cannot be "
                        "reached (they are left behind)")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("run", help="run a job file or session to the end")
    p.add_argument("target", help="a job file (resumes its unfinished session, or creates "
                                   "one) or a session id")
    p.add_argument("--new", action="store_true",
                   help="with a job file: a fresh session even if one of the job is unfinished"
                        " (it writes to its own output subfolder and Drive folder)")
    p.add_argument("--headless", action="store_true",
                   help="no dashboard: progress lines for a log file or tmux")
    p.add_argument("--every", type=_positive_float, default=10.0, metavar="S",
                   help="seconds between progress lines (default 10)")
    p.add_argument("--no-mouse", action="store_true", help="dashboard without mouse support")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="the demo job on the built-in emulator")
    p.add_argument("--headless", action="store_true", help="no dashboard: progress lines")
    p.add_argument("--every", type=_positive_float, default=5.0, metavar="S",
                   help="seconds between progress lines (default 5)")
    p.add_argument("--no-mouse", action="store_true", help="dashboard without mouse support")
    p.add_argument("--route", choices=ROUTES, default=BATCH,
                   help="how the units come back (export.route): batch exports through Drive "
                        "(default), direct computePixels, or auto (direct where EE can)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("emulator", help="serve the local EE and Drive emulator")
    p.add_argument("--port", type=_port, default=8787, help="port on 127.0.0.1 (0: any free)")
    p.add_argument("--slots", type=_positive_int, default=2,
                   help="tasks RUNNING at once per project (EE's default: 2)")
    p.add_argument("--speed", type=_positive_float, default=1.0,
                   help="simulated seconds per wall-clock second")
    p.add_argument("--drive-quota", type=_drive_quota, default="15 GB",
                   help='Drive size, or "unlimited"')
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--state-dir", help="keep Drive files and state here (default: a temp dir)")
    p.add_argument("--memory-limit-pixels", type=int, default=400_000_000,
                   help='exports above fail with "User memory limit exceeded."')
    p.add_argument("--timeout-pixels", type=int, default=1_000_000_000,
                   help='exports above fail with "Computation timed out."')
    p.add_argument("--internal-error-rate", type=_rate, default=0.0,
                   help='fraction of exports failing with "Internal error."')
    p.add_argument("--page-size", type=_positive_int, default=1000,
                   help="cap on every page size (forces paging)")
    p.add_argument("--strict-names", action="store_true",
                   help="refuse task descriptions and file-name prefixes beyond [A-Za-z0-9_-] "
                        "(Google's documented rule; eebatch's tests and demo run with it)")
    p.add_argument("--max-pending-tasks", type=_positive_int, default=3000,
                   help="PENDING tasks per project before a submit is refused (EE: 3000)")
    p.add_argument("--max-run-seconds", type=_positive_float, default=12 * 3600.0,
                   help='simulated run time above which an export fails "Computation timed '
                        'out." (default 43200)')
    p.add_argument("--operations-order", choices=("newest", "oldest"), default="newest",
                   help="order of operations.list (undocumented at Google; default newest)")
    p.add_argument("--drive-listing-lag", type=_non_negative_float, default=0.0, metavar="S",
                   help="seconds before a new Drive file shows in files.list")
    p.add_argument("--quota-other", type=_byte_size, default=0, metavar="BYTES",
                   help='Gmail and Photos bytes sharing the Drive quota (e.g. "2 GB")')
    p.set_defaults(func=cmd_emulator)

    p = sub.add_parser("open", help="the dashboard on a session (attaches to a running worker)")
    p.add_argument("session", help="session id (or a unique prefix)")
    p.add_argument("--attach", action="store_true",
                   help="only watch and steer: never start a worker in the dashboard")
    p.add_argument("--no-mouse", action="store_true", help="dashboard without mouse support")
    p.set_defaults(func=cmd_open)

    p = sub.add_parser("serve", help="the dashboard in a browser, on 127.0.0.1 (over ssh -L); "
                                     "one worker however many tabs")
    p.add_argument("session", help="session id (or a unique prefix)")
    from tui.serve import DEFAULT_PORT  # no Textual, no textual-serve: cheap

    p.add_argument("--port", type=_port, default=DEFAULT_PORT,
                   help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0: any free)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("auth", help="connect your Earth Engine project and Google Drive")
    auth = p.add_subparsers(dest="auth_command", metavar="HOW", required=True)
    a = auth.add_parser("login", help="your Google account, through a loopback OAuth flow "
                                      "(works over SSH with a tunnel)")
    a.add_argument("--client-secrets", required=True, metavar="FILE",
                   help="a 'Desktop app' OAuth client JSON from the Google Cloud console")
    a.add_argument("--port", type=_port, default=8085,
                   help="local port of the loopback listener (default 8085)")
    a = auth.add_parser("service-account", help="a service-account key (non-interactive)")
    a.add_argument("key", help="the key's JSON file")
    auth.add_parser("status", help="what is saved (never the secrets)")
    p.set_defaults(func=cmd_auth)

    p = sub.add_parser("log", help="a session's events (retries, splits, failures, cancels)")
    p.add_argument("session", help="session id (or a unique prefix)")
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep printing new events until ctrl+c")
    p.set_defaults(func=cmd_log)

    p = sub.add_parser("retry", help="retry failed or cancelled units (a worker applies it)")
    p.add_argument("session", help="session id (or a unique prefix)")
    p.add_argument("units", nargs="*", metavar="UNIT", help="unit ids")
    p.add_argument("--failed", action="store_true", help="every failed unit")
    p.add_argument("--cancelled", action="store_true", help="every cancelled unit")
    p.set_defaults(func=cmd_steer)

    p = sub.add_parser("cancel", help="cancel units: their EE tasks and Drive files")
    p.add_argument("session", help="session id (or a unique prefix)")
    p.add_argument("units", nargs="*", metavar="UNIT", help="unit ids")
    p.add_argument("--all", action="store_true", help="every unit not finished yet")
    p.set_defaults(func=cmd_steer)

    for verb, what in (("pause", "stop submitting new exports (running ones go on)"),
                       ("resume", "submit again after a pause")):
        p = sub.add_parser(verb, help=what)
        p.add_argument("session", help="session id (or a unique prefix)")
        p.set_defaults(func=cmd_steer)

    p = sub.add_parser("set", help="change a live limit of a session: max_tasks, drive_budget "
                                   "or eecu_hours (the EECU cap)")
    p.add_argument("session", help="session id (or a unique prefix)")
    p.add_argument("key", choices=SETTABLE, help="the limit")
    p.add_argument("value", help='its new value (a number; drive_budget also "20 GB")')
    p.set_defaults(func=cmd_set)

    p = sub.add_parser("assemble", help="make a session's mosaics, quicklooks and merged table "
                       "again from its verified files")
    p.add_argument("session", help="session id (or a unique prefix)")
    p.add_argument("--cog", action="store_true",
                   help="also a Cloud-Optimized GeoTIFF of each mosaic")
    p.set_defaults(func=cmd_assemble)

    p = sub.add_parser("assets", help="a job's own EE assets: list, merge the table parts, "
                       "delete")
    p.add_argument("action", choices=("list", "merge", "rm"),
                   help="list them; merge a table job's parts into one asset (then delete the "
                        "parts, after asking); rm: delete them (after asking)")
    p.add_argument("session", help="session id (or a unique prefix)")
    p.add_argument("--yes", action="store_true", help="delete without asking")
    p.set_defaults(func=cmd_assets)

    p = sub.add_parser("doctor", help="check EE, Drive, the export folder and the quota")
    p.add_argument("target", nargs="?", help="a job file or a session id")
    p.add_argument("--probe", metavar="JOB",
                   help="a short self-test on the job's real project: sends two exports of a "
                        "few pixels, measures what Google does not document, removes what it "
                        "made")
    p.add_argument("--probe-timeout", type=_positive_float, default=900.0, metavar="S",
                   help="seconds the probe waits for its exports (default 900)")
    p.set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.add_argument("--no-mouse", action="store_true", help="dashboard without mouse support")
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        from tui.launch import pick_session

        return pick_session(mouse=not args.no_mouse)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at interpreter exit
        return code
    except BrokenPipeError:
        # `eebatch plan JOB | head`: the reader has gone. Python's recipe: point stdout at
        # devnull so the flush at exit does not fail again, and exit quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except SpecError as exc:
        for line in exc.problems:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (BadInput, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except CannotRun as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
