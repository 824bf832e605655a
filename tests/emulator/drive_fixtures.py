"""Helpers for the Drive-side emulator tests: real pydrive2 over real HTTP."""

from __future__ import annotations

import contextlib
import json
import mimetypes
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.emulator.app import Emulator
from core.emulator.config import EmulatorConfig

FOLDER = "application/vnd.google-apps.folder"


def start_emulator(tmp_path: Path, n: int, **fields: Any) -> Emulator:
    """A started emulator with its state under tmp_path (the caller stops it)."""
    return Emulator(EmulatorConfig(state_dir=tmp_path / f"emu{n}", **fields)).start()


def admin(emu: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Call an admin endpoint (or any route) with raw urllib; returns (status, JSON)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(emu.url + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def add_fault(emu: Any, **spec: Any) -> dict[str, Any]:
    status, body = admin(emu, "POST", "/_emulator/faults", spec)
    assert status == 200, body
    return body


def make_folder(drive: Any, title: str, parent: str | None = None) -> Any:
    meta: dict[str, Any] = {"title": title, "mimeType": FOLDER}
    if parent:
        meta["parents"] = [{"id": parent}]
    f = drive.CreateFile(meta)
    f.Upload()
    return f


def upload_bytes(
    drive: Any, tmp_path: Path, title: str, data: bytes, parent: str | None = None
) -> Any:
    """A pydrive2 resumable upload (SetContentFile + Upload), as a user would do it."""
    src = tmp_path / f"src-{title.replace('/', '_')}"
    src.write_bytes(data)
    meta: dict[str, Any] = {
        "title": title,
        "mimeType": mimetypes.guess_type(title)[0] or "application/octet-stream",
    }
    if parent:
        meta["parents"] = [{"id": parent}]
    f = drive.CreateFile(meta)
    f.SetContentFile(str(src))
    f.Upload()
    with contextlib.suppress(AttributeError):
        f.content.close()  # pydrive2 leaves the source file open
    return f


def count(emu: Any, key: str) -> int:
    with emu.server.counters_lock:
        return emu.server.counters[key]


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll `condition` until it returns something true, and return that; fail after
    `timeout` wall-clock seconds (a deadline, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        got = condition()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what or condition}")
        time.sleep(0.02)


def listed(drive: Any, q: str | None = None) -> list[str]:
    """Titles a fresh files.list finds (every page), sorted."""
    params = {"q": q} if q is not None else {}
    return sorted(f["title"] for f in drive.ListFile(params).GetList())
