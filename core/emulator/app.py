"""One emulator instance: the HTTP server with the Earth Engine and Drive APIs on one port."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from core.emulator.clock import SimClock
from core.emulator.config import EmulatorConfig
from core.emulator.drive import DriveService
from core.emulator.drive_model import DriveModel
from core.emulator.ee import EarthEngineService
from core.emulator.faults import FaultInjector
from core.emulator.http import HttpServer, Request, Response, Router, json_response


class Emulator:
    """`Emulator(config).start()` serves on 127.0.0.1; `.url` is both the EE base URL and the
    Drive root URL (`url + "/"`). Use as a context manager in tests."""

    def __init__(self, config: EmulatorConfig | None = None, port: int = 0) -> None:
        self.config = config or EmulatorConfig()
        self._own_dir = self.config.state_dir is None
        self.state_dir = Path(self.config.state_dir or tempfile.mkdtemp(prefix="eebatch-emu-"))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.router = Router()
        # One clock for the emulated Google, as the real EE and Drive share one: a file's
        # createdDate and its export's createTime compare (eebatch matches outputs by them).
        self.clock = SimClock(self.config.speed)
        # EE and the HTTP handlers share one Drive model: EE drops finished exports into it.
        drive_model = DriveModel(self.config, self.state_dir / "drive", now=self.clock.now)
        self.drive = DriveService(self.config, drive_model)
        self.ee = EarthEngineService(self.config, drive_model, self.state_dir / "ee",
                                     clock=self.clock)
        self.faults = FaultInjector()
        self.drive.register(self.router)
        self.ee.register(self.router)
        self.router.add("GET", r"/_emulator/state", self._state, name="admin state")
        self.faults.register(self.router)
        self.server = HttpServer(self.router, port)
        self.server.before = self.faults.before
        self.server.stream = self.faults.stream
        self.drive.base_url = self.server.url  # links in files added before any request

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> Emulator:
        self.ee.start()
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        self.ee.stop()
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def state(self) -> dict[str, Any]:
        with self.server.counters_lock:
            counters = dict(self.server.counters)
        return {
            "ee": self.ee.state(),
            "drive": self.drive.state(),
            "faults": self.faults.state(),
            "requests": counters,
        }

    def _state(self, req: Request) -> Response:
        return json_response(self.state())
