"""Every test gets its own EEBATCH_HOME: no test reads or writes the user's real sessions."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from hypothesis import settings

from tests.jobs import job_text

# Generated examples are the same on every run, so a clean clone never fails on a draw that no
# run before it saw (CI once drew a subnormal coordinate GEOS mis-intersects).
# HYPOTHESIS_PROFILE=explore draws new examples, to look for such cases on purpose.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

# pytest-xdist's worker processes ignore SIGINT, and an ignored signal stays ignored across
# exec: the commands the tests stop with Ctrl+C (SIGINT), as a user does, would never see it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def eebatch_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("eebatch-home")
    monkeypatch.setenv("EEBATCH_HOME", str(home))
    return home


def write_job(directory: Path, body: str, name: str = "job.toml") -> Path:
    path = directory / name
    path.write_text(body, encoding="utf-8")
    return path


BASE_JOB = job_text()  # a small valid job; tests edit its text
