"""Hand a session to a headless worker: `eebatch run SESSION --headless` in a process of its own,
which outlives the dashboard and its terminal (the quit dialog's "keep running")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core import paths


def spawn_headless(path: Path, session_id: str) -> subprocess.Popen[bytes]:
    """`eebatch run SESSION --headless` in its own session (it outlives this terminal), its
    output appended to the session's log file. The caller has released the worker lock."""
    log = open(paths.log_dir() / f"{session_id}.log", "ab")  # noqa: SIM115 - the child's
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "tui", "run", str(path), "--headless"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        log.close()  # the child holds its own descriptor
