"""An emulator stops for good: `with emulator_with() as emu` starts one already started, and a
second serve loop on its socket once outlived stop(), every test leaving one behind until the
suite's later tests ran eight times slower."""

from __future__ import annotations

import threading

from core.emulator.app import Emulator
from core.emulator.config import EmulatorConfig


def serving() -> int:
    return sum(t.name.startswith("emulator-") and t.is_alive() for t in threading.enumerate())


def test_starting_twice_then_stopping_leaves_no_thread() -> None:
    before = serving()
    emu = Emulator(EmulatorConfig()).start()
    with emu:  # __enter__ starts it again
        assert serving() == before + 2  # one HTTP loop, one batch ticker
    assert serving() == before
