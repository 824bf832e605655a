"""The worker assembles a period as soon as it settles; a job stopped at any moment assembles
the same product once it resumes; a failed assembly fails no unit; `eebatch assemble`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from core.emulator.app import Emulator
from core.engine.runner import run_session
from core.states import UNFINISHED
from core.store import Store
from tests.assembly.conftest import (
    MEMORY_LIMIT,
    assert_mosaic_is_its_files,
    eebatch,
    make_job,
    make_session,
    verified_files,
)
from tests.engine.conftest import emulator_with
from tests.engine.test_safety import wait_for, worker_thread

MONTHS = {"start": "2023-06-01", "end": "2023-08-01", "step": "1 month"}
ONE_AT_A_TIME = {"max_tasks": 2, "poll_seconds": 0.2, "download_workers": 3}
FOUR_ROWS = {"bbox": [0.2, 43.5, 0.8, 46.5]}  # the two southern tiles split


def first_month_first(store: Store) -> None:
    """June's units go to EE before any of July's (as manual retries jump the queue), so June
    settles while July still runs."""
    with store.tx():
        store.conn.execute("UPDATE units SET priority = 1 WHERE period = '20230601'")


def messages(store: Store) -> list[str]:
    return [e["message"] for e in store.events(limit=10_000)]


def without_digest(vrt: Path) -> bytes:
    """A VRT without its source digest (the MD5s of files that another session's exports
    wrote: the emulator's pixels depend on the order of its tasks)."""
    root = ET.parse(vrt).getroot()
    root.remove(root.find("Metadata"))
    return ET.tostring(root)


@pytest.mark.slow
def test_a_period_is_assembled_when_it_settles_not_at_the_end(tmp_path: Path) -> None:
    with emulator_with(memory_limit_pixels=MEMORY_LIMIT) as emu:
        store = make_session(make_job(tmp_path, emu.url, region=FOUR_ROWS, time=MONTHS,
                                      limits=ONE_AT_A_TIME))
        first_month_first(store)
        assert run_session(store.path).ok
    said = messages(store)
    june = next(i for i, m in enumerate(said) if m.startswith("assembled mosaic of 20230601"))
    july = next(i for i, m in enumerate(said) if m.startswith("assembled mosaic of 20230701"))
    finished = next(i for i, m in enumerate(said) if m.startswith("finished:"))
    assert june < finished < july
    assert sum(m.startswith("assembled mosaic of 20230601") for m in said) == 1  # not again


@pytest.mark.slow
def test_a_job_stopped_mid_run_assembles_the_same_product_after_it_resumes(
        tmp_path: Path) -> None:
    with emulator_with(memory_limit_pixels=MEMORY_LIMIT) as emu:
        whole = make_session(make_job(tmp_path / "whole", emu.url, region=FOUR_ROWS,
                                      time=MONTHS))
        assert run_session(whole.path).ok
        store = make_session(make_job(tmp_path / "cut", emu.url, region=FOUR_ROWS,
                                      time=MONTHS, limits=ONE_AT_A_TIME))
        first_month_first(store)
        out = tmp_path / "cut" / "out"
        with worker_thread(store):  # stopped as soon as June's mosaic is there
            wait_for(lambda: (out / "20230601" / "mosaic.vrt").exists(), "June's mosaic")
        july = [u for u in store.units() if u["period"] == "20230701"]
        assert any(u["state"] in UNFINISHED for u in july)
        assert not (out / "20230701" / "mosaic.vrt").exists()
        assert run_session(store.path).ok  # resumed to the end
        for period in ("20230601", "20230701"):
            vrt = out / period / "mosaic.vrt"
            assert_mosaic_is_its_files(vrt, [f for f in verified_files(store)
                                             if f.parent.name == period])
            assert without_digest(vrt) == without_digest(
                tmp_path / "whole" / "out" / period / "mosaic.vrt")

        # Killed after the quicklook but before the VRT (written last): the next start,
        # finding the job finished, makes the product again, the same bytes; a dead
        # process's temporary is removed.
        july = out / "20230701"
        made = {n: (july / n).read_bytes() for n in ("mosaic.vrt", "mosaic.png")}
        (july / "mosaic.vrt").unlink()
        dead = subprocess.Popen(["true"])
        dead.wait()
        stale = july / f".mosaic.png.{dead.pid}-1.tmp"
        stale.write_bytes(b"half a png")
        assert run_session(store.path).ok
    assert {n: (july / n).read_bytes() for n in made} == made
    assert not stale.exists()
    assert sum(m.startswith("assembled mosaic of 20230701") for m in messages(store)) == 2


def test_a_failed_assembly_fails_no_unit_and_assemble_makes_it_later(
        tmp_path: Path, emulator: Emulator) -> None:
    store = make_session(make_job(tmp_path, emulator.url,
                                  region={"bbox": [0.2, 40.0, 0.8, 41.0]}))
    blocker = tmp_path / "out" / "mosaic.png"
    blocker.mkdir(parents=True)  # the quicklook cannot take its place
    assert run_session(store.path).ok
    (warning,) = [e for e in store.events(limit=1000) if "mosaic of all" in e["message"]]
    assert warning["level"] == "warning"
    assert re.search(r"mosaic of all failed: .*mosaic\.png.*; `eebatch assemble t?asm-1` "
                     "tries again", warning["message"]), warning["message"]
    assert set(store.counts()) == {"done"}
    result = eebatch("assemble", store.id)
    assert result.returncode == 1 and "mosaic of all failed" in result.stderr
    blocker.rmdir()
    result = eebatch("assemble", store.id)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("assembled mosaic of all: 2 files → ")
    assert_mosaic_is_its_files(tmp_path / "out" / "mosaic.vrt", verified_files(store))


def test_assemble_names_a_bad_session_in_one_line() -> None:
    result = eebatch("assemble", "no-such-session")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: no session 'no-such-session'; `eebatch sessions` lists them"]
    assert result.stdout == ""
