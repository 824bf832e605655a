"""Every test gets its own EEBATCH_HOME: no test reads or writes the user's real sessions."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.jobs import job_text


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
