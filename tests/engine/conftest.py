"""Engine tests run the real worker, the real earthengine-api and pydrive2, over HTTP, against
the emulator. No fake backend anywhere."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.emulator.app import Emulator
from core.emulator.config import EmulatorConfig
from core.session import create_session
from core.store import Store
from tests.jobs import job_text, toml_value

FAST = EmulatorConfig(slots=4, speed=200.0, task_overhead_seconds=2.0, seed=3)



@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(FAST) as emu:
        yield emu


def emulator_with(**changes: Any) -> Emulator:
    return Emulator(EmulatorConfig(**{**FAST.__dict__, **changes})).start()


def make_session(tmp_path: Path, url: str, *, name: str = "t", bbox: str = "[0, 0, 2, 1]",
                 size: float = 0.5, scale: int = 2000, folder: str = "eebatch-test",
                 max_tasks: int = 4, max_attempts: int = 5, split_depth: int = 2,
                 recipe: str = "", extra: str = "",
                 export: dict[str, Any] | None = None,
                 limits: dict[str, Any] | None = None) -> Store:
    """A session of a job on the emulator at `url`; `recipe` is TOML added to its [recipe]
    section, `extra` is TOML appended to it (a [time] section, say)."""
    job = tmp_path / f"{name}.toml"
    job.write_text(job_text(
        name, output_dir="out", region={"bbox": toml_value(bbox)}, grid={"size": size},
        recipe={"name": "composite", **tomllib.loads(recipe)},
        export={"folder": folder, "scale": scale, **(export or {})},
        limits={"max_tasks": max_tasks, "poll_seconds": 0.2, "max_attempts": max_attempts,
                "split_depth": split_depth, "download_workers": 3, **(limits or {})},
        emulator=url) + extra)
    store, _ = create_session(job)
    return store


def task_unit(description: str) -> str:
    """The unit id in one of eebatch's task descriptions (`eebatch_SESSION_UNIT_aN`, the
    unit made EE-safe: `r3c4.1_20230601` is sent as `r3c4-1_20230601`)."""
    match = re.fullmatch(r"eebatch_.+?_(r\d+c\d+[-0-9]*)(_\d+)?_a\d+", description)
    assert match, f"not one of eebatch's task descriptions: {description!r}"
    return match.group(1).replace("-", ".") + (match.group(2) or "")


def our_tasks(url: str, session: str) -> list[dict[str, Any]]:
    """The emulator's tasks of one session."""
    return [t for t in admin(url, "/_emulator/state")["ee"]["tasks"]
            if t["description"].startswith(f"eebatch_{session}_")]


def admin(url: str, path: str, body: dict[str, Any] | None = None,
          method: str | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method=method or (
        "POST" if data else "GET"), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def inject(url: str, **fault: Any) -> None:
    admin(url, "/_emulator/faults", fault)


def drive_files(url: str) -> list[dict[str, Any]]:
    """Files (not folders) in the emulator's Drive, trash included."""
    state = admin(url, "/_emulator/state")
    return [f for f in state["drive"]["files"]
            if f.get("mimeType") != "application/vnd.google-apps.folder"]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def assert_all_done_and_verified(store: Store, url: str) -> None:
    """Every unit done, every file on disk with Drive's MD5, nothing left in Drive."""
    counts = store.counts()
    assert set(counts) <= {"done", "split"}, counts
    files = store.conn.execute("SELECT * FROM files").fetchall()
    assert files, "no files recorded"
    for f in files:
        assert f["state"] == "deleted", dict(f)
        local = Path(f["local_path"])
        assert local.exists() and md5(local) == f["md5"], local
    out = Path(files[0]["local_path"]).parent
    assert not list(out.glob("*.part"))
    assert drive_files(url) == []
    # Exactly one file per done unit (no unit ran twice into two files).
    done = store.conn.execute("SELECT COUNT(*) FROM units WHERE state = 'done'").fetchone()[0]
    assert len({f["unit"] for f in files}) == done == len(files)
