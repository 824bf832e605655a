"""Entry points the CLI calls: open a session's dashboard (with a worker thread, or attached to
a worker in another process), pick or create a session, and the demo on the emulator."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import paths
from core.states import UNFINISHED
from core.store import SessionBusy, Store, StoreError

if TYPE_CHECKING:
    from tui.app import EEBatchApp

EXIT_BAD_INPUT = 2


def has_work(path: Path) -> bool:
    """True when some unit of the session is not settled: only then does opening it start a
    worker (a finished session is shown as it is, and its backend need not be reachable)."""
    store = Store(path)
    try:
        return store.any_unit_in(UNFINISHED)
    finally:
        store.close()


class WorkerStarter:
    """Starts the session's worker in this process when called: at open when there is work,
    or later when the dashboard sends a command to a session without one. A demo session
    reopened after its `eebatch demo` ended gets a fresh built-in emulator (the old one lived
    in that process): the worker's recovery re-sends the exports it does not know, under the
    same requestIds."""

    def __init__(self, path: Path, emulator_url: str | None = None) -> None:
        self.path = path
        self.emulator_url = emulator_url
        self.emulator: Any | None = None
        from core.demo import is_demo

        self.demo = emulator_url is None and is_demo(path)

    @property
    def in_process_backend(self) -> bool:
        """The emulator runs in this process: no headless worker can take over."""
        return self.emulator_url is not None or self.demo

    def __call__(self) -> Any | None:
        if self.demo and self.emulator is None:
            from core.demo import DEMO_EMULATOR
            from core.emulator.app import Emulator

            self.emulator = Emulator(DEMO_EMULATOR).start()
        url = self.emulator_url or (self.emulator.url if self.emulator is not None else None)
        return _start_worker(self.path, url)

    def close(self) -> None:
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None


def _start_worker(path: Path, emulator_url: str | None = None) -> Any | None:
    """A worker thread for the session, or None when another process already runs one (the
    app then attaches: it reads the store and posts commands, the same code path)."""
    try:
        from core.engine.runner import start_worker
    except ImportError:
        print("eebatch: the worker is not available in this build; opening read-only",
              file=sys.stderr)
        return None
    try:
        if emulator_url is None:
            return start_worker(path)
        return start_worker(path, emulator_url=emulator_url)
    except SessionBusy:
        return None


def _stop(worker: Any | None) -> None:
    if worker is None:
        return
    if worker.is_alive():
        print("eebatch: stopping the worker (it finishes its current step)…", file=sys.stderr)
    worker.stop()
    worker.join(timeout=60)


def prepare_app(path: Path, *, mouse: bool = True, start_worker: bool = True,
                emulator_url: str | None = None) -> tuple[EEBatchApp, WorkerStarter]:
    """The dashboard on a session, with a worker in this process when the session has work
    left (a finished one opens without: it is shown as it is). The caller stops `app.worker`
    and closes the starter when the app has ended."""
    from tui.app import EEBatchApp

    starter = WorkerStarter(path, emulator_url)
    try:
        worker = starter() if start_worker and has_work(path) else None
        app = EEBatchApp(path, worker=worker, mouse=mouse,
                         start_worker=starter if start_worker else None,
                         can_detach=not starter.in_process_backend)
    except BaseException:
        starter.close()
        raise
    return app, starter


def run_dashboard(path: Path, *, mouse: bool = True, start_worker: bool = True,
                  emulator_url: str | None = None) -> int:
    """Run the dashboard on a session; Start in its Job form opens the new session next."""
    next_path: Path | None = path
    code = 0
    while next_path is not None:
        app, starter = prepare_app(next_path, mouse=mouse, start_worker=start_worker,
                                   emulator_url=emulator_url)
        try:
            next_path = app.run(mouse=mouse)
            code = app.return_code or 0
        finally:
            _stop(app.worker)
            starter.close()
        if app.detached is not None:
            print(f"eebatch: {app.session_id} goes on headless (pid {app.detached}); "
                  f"`eebatch open {app.session_id}` attaches; its log: "
                  f"{paths.log_dir() / (app.session_id + '.log')}", file=sys.stderr)
        emulator_url = None  # a new session from the form runs on its own backend
    return code


def open_session(ref: str, *, mouse: bool = True, start_worker: bool = True) -> int:
    """`eebatch open SESSION [--no-mouse] [--attach]`."""
    try:
        path = Store.find(ref)
        Store(path).close()  # a clear error now for a file that is not a session
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return run_dashboard(path, mouse=mouse, start_worker=start_worker)


def pick_session(*, mouse: bool = True) -> int:
    """Plain `eebatch`: choose a session, or type a job file's path to create one."""
    from tui.screens.picker import PickerApp

    picked = PickerApp().run(mouse=mouse)
    if picked is None:
        return 0
    return run_dashboard(picked, mouse=mouse)


def demo(*, mouse: bool = True, route: str = "batch") -> int:
    """`eebatch demo`: the demo job on the built-in emulator, with a worker in this app."""
    try:
        from core.demo import prepare_demo
    except ImportError:
        print("error: the demo is not available in this build (core.demo is missing)",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    emulator, path = prepare_demo(route=route)
    try:
        url = getattr(emulator, "url", None)
        return run_dashboard(path, mouse=mouse, emulator_url=url)
    finally:
        stop = getattr(emulator, "stop", None) or getattr(emulator, "close", None)
        if stop is not None:
            stop()
