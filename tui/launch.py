"""Entry points the CLI calls: open a session's dashboard (with a worker thread, or attached to
a worker in another process), pick or create a session, and the demo on the emulator."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from core.store import SessionBusy, Store, StoreError

EXIT_BAD_INPUT = 2


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


def run_dashboard(path: Path, *, mouse: bool = True, start_worker: bool = True,
                  emulator_url: str | None = None) -> int:
    """Run the dashboard on a session; Start in its Job form opens the new session next."""
    from tui.app import EEBatchApp

    next_path: Path | None = path
    code = 0
    while next_path is not None:
        worker = _start_worker(next_path, emulator_url) if start_worker else None
        try:
            app = EEBatchApp(next_path, worker=worker, mouse=mouse)
            next_path = app.run(mouse=mouse)
            code = app.return_code or 0
        finally:
            _stop(worker)
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


def demo(*, mouse: bool = True) -> int:
    """`eebatch demo`: the demo job on the built-in emulator, with a worker in this app."""
    try:
        from core.demo import prepare_demo
    except ImportError:
        print("error: the demo is not available in this build (core.demo is missing)",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    emulator, path = prepare_demo()
    try:
        url = getattr(emulator, "url", None)
        return run_dashboard(path, mouse=mouse, emulator_url=url)
    finally:
        stop = getattr(emulator, "stop", None) or getattr(emulator, "close", None)
        if stop is not None:
            stop()
