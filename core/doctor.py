"""`eebatch doctor`: check the connections a job needs and say in plain words what is wrong
and what to do."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.backends.failures import classify_exception
from core.spec import JobSpec


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    message: str


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), 2):
            return True
    except OSError:
        return False


def diagnose(spec: JobSpec, emulator_url: str | None = None) -> Iterator[Check]:
    from core.engine.runner import open_backends

    backend = spec.backend
    if backend.kind == "emulator":
        url = emulator_url or backend.url
        if not url:
            yield Check("emulator", False, "backend.url is not set; start an emulator with "
                        "`eebatch emulator --port 8787` and set url = \"http://127.0.0.1:8787\"")
            return
        if not _reachable(url):
            yield Check("emulator", False, f"nothing answers at {url}; start it with "
                        f"`eebatch emulator --port {urlsplit(url).port}`")
            return
        yield Check("emulator", True, f"answering at {url}")
    else:
        from core.credentials import status

        creds = status()
        if creds.kind is None:
            yield Check("credentials", False, "none saved; run `eebatch auth login "
                        "--client-secrets FILE` (or `eebatch auth service-account KEY.json`)")
            return
        for problem in creds.problems:
            yield Check("credentials", False, problem)
        if creds.problems:
            return
        yield Check("credentials", True, creds.detail)
    try:
        backends = open_backends(spec, emulator_url)
    except Exception as exc:
        yield Check("connect", False, f"could not connect: {classify_exception(exc)[1]}")
        return
    try:
        n = backends.ee.ping()
        yield Check("earth engine", True,
                    f"project {backends.ee.project}: listed its {n} newest tasks")
    except Exception as exc:
        yield Check("earth engine", False, f"listing tasks failed: {classify_exception(exc)[1]}"
                    " — check the project id and that the Earth Engine API is enabled for it")
    if backends.drive is not None:
        try:
            quota = backends.drive.quota()
            total = quota.total
            free = None if total is None else total - quota.used
            yield Check("drive", True, f"{quota.used:,} bytes used of "
                        f"{'unlimited' if total is None else f'{total:,}'}"
                        f" ({quota.trash:,} in trash)")
            if quota.trash:
                yield Check("drive trash", True, "trash still counts against the quota; "
                            "empty it to free space")
            if free is not None and free < spec.limits.drive_budget:
                yield Check("drive budget", False, f"drive_budget is {spec.limits.drive_budget:,}"
                            f" bytes but only {free:,} are free: lower it or free Drive space")
            folders = backends.drive.find_folders(spec.export.folder)
            if len(folders) > 1:
                yield Check("export folder", True, f"{len(folders)} folders are named "
                            f"{spec.export.folder!r}; eebatch looks in all of them")
            else:
                yield Check("export folder", True, f"{spec.export.folder!r}: "
                            f"{'exists' if folders else 'EE will create it at the root'}")
        except Exception as exc:
            yield Check("drive", False, f"Drive failed: {classify_exception(exc)[1]}")
    out = spec.output_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
        ok = os.access(out, os.W_OK)
    except OSError:
        ok = False
    yield Check("output dir", ok, f"{out} is {'writable' if ok else 'not writable'}")
