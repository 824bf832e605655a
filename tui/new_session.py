"""Create a session from a job file inside a worker thread of an app, and tell the user what
went wrong when the job has problems."""

from __future__ import annotations

from pathlib import Path

from textual.app import App

from core.session import create_session
from core.spec import SpecError


def create_or_notify(app: App[object], path: Path) -> Path | None:
    """The new session's path, or None after a notification naming the job's problems."""
    app.notify(f"planning {path.name}…", timeout=3)
    try:
        store, _ = create_session(path)
    except SpecError as exc:
        app.notify("\n".join(exc.problems[:5]), title="the job has problems",
                   severity="error", timeout=10)
        return None
    session = store.path
    store.close()
    return session
