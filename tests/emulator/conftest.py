"""Fixtures for the emulator tests: started emulators with fast batch settings, and a record of
every socket the process opens (to prove nothing leaves 127.0.0.1)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from core.emulator.config import EmulatorConfig

# Simulated time runs 1000x: a task of 2 simulated seconds takes 2 ms.
FAST: dict[str, Any] = {
    "speed": 1000.0,
    "task_overhead_seconds": 2.0,
    "pixel_rate": 50_000_000.0,
    "jitter": 0.0,
    "seed": 7,
}


class _ConnectRecorder:
    """A process-wide audit hook (hooks cannot be removed, so one is installed once) that
    records the address of every socket.connect and getaddrinfo while recording is on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.events: list[tuple[str, Any]] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active or event not in ("socket.connect", "socket.getaddrinfo"):
            return
        with self.lock:
            if event == "socket.connect":
                self.events.append((event, args[1]))
            else:
                self.events.append((event, args[0]))

    @contextmanager
    def recording(self) -> Iterator[list[tuple[str, Any]]]:
        with self.lock:
            self.events = []
            self.active += 1
        try:
            yield self.events
        finally:
            with self.lock:
                self.active -= 1


_RECORDER: _ConnectRecorder | None = None


@pytest.fixture(scope="session")
def connections() -> _ConnectRecorder:
    global _RECORDER
    if _RECORDER is None:
        _RECORDER = _ConnectRecorder()
    return _RECORDER


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., Any]]:
    """make(**config_fields) → a started app.Emulator with FAST settings plus the overrides;
    all are stopped (and their temporary state removed) after the test."""
    from core.emulator.app import Emulator

    started: list[Any] = []

    def make(**overrides: Any) -> Any:
        emu = Emulator(EmulatorConfig(**{**FAST, **overrides})).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()


@pytest.fixture
def emulator(emulator_factory: Callable[..., Any]) -> Any:
    """A started emulator with the FAST settings."""
    return emulator_factory()


@pytest.fixture
def ee_emulator(emulator: Any) -> Any:
    """The FAST emulator with earthengine-api initialised against it (project test-project)."""
    from core.connect import init_ee

    init_ee(emulator.url, "test-project")
    return emulator
