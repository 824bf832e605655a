"""Whether a process still runs: used to tell a crashed writer's leftovers (a session file's
temporary copy, an assembly's temporary file) from a live one's."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while process `pid` exists on this machine (someone else's counts too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
