"""What `eebatch rm` takes away before a session goes: its live EE tasks and its exports still
in Drive. Only what the session recorded as its own: the operations of its live attempts and
the files of its `files` table not yet deleted from Drive - never a look-alike."""

from __future__ import annotations

from dataclasses import dataclass

import humanize

from core.engine.worker import Backends
from core.store import Store


@dataclass(frozen=True)
class Leftovers:
    operations: list[tuple[str, str]]  # (unit, operation name) EE may still run
    files: list[tuple[str, str, int]]  # (Drive file id, title, size)

    @property
    def bytes(self) -> int:
        return sum(size for _, _, size in self.files)

    def __bool__(self) -> bool:
        return bool(self.operations or self.files)

    def describe(self) -> str:
        """One line: 'N live EE tasks (r1c1, r1c2, …) and K files (12 MB) in Drive'."""
        parts = []
        if self.operations:
            units = [unit for unit, _ in self.operations]
            shown = ", ".join(units[:5]) + (", …" if len(units) > 5 else "")
            parts.append(f"{len(units)} live EE task{'s' * (len(units) != 1)} ({shown})")
        if self.files:
            parts.append(f"{len(self.files)} file{'s' * (len(self.files) != 1)} "
                         f"({humanize.naturalsize(self.bytes)}) in Drive")
        return " and ".join(parts)


def leftovers(store: Store) -> Leftovers:
    return Leftovers([(r["unit"], r["operation"]) for r in store.live_operations()],
                     [(r["drive_id"], r["title"], r["size"]) for r in store.files_in_drive()])


def clean_up(left: Leftovers, backends: Backends) -> None:
    """Cancel the tasks, then delete the files for good (not to the trash, which keeps
    counting against the quota). Raises on the first call that fails: the caller keeps the
    session, so the next `rm` finds the same list (a cancel or delete done twice is
    harmless)."""
    for _, operation in left.operations:
        backends.ee.cancel(operation)
    if left.files and backends.drive is None:
        raise RuntimeError("the job exports to no Drive, yet files are recorded in Drive")
    for drive_id, _, _ in left.files:
        assert backends.drive is not None
        backends.drive.delete(drive_id)
