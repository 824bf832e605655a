"""`eebatch doctor --probe JOB` through the command line, against the emulator: it reports the
operations order, the Drive listing lag, the quota fields and EE's text for a failing export,
and leaves nothing of its own behind (and nothing of the user's disturbed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from core.connect import make_drive
from core.emulator.app import Emulator
from tests.engine.conftest import admin, drive_files, emulator_with
from tests.engine.test_safety import wait_for
from tests.jobs import job_text
from tui.cli import main

FOLDER = "eebatch-probe"
LIVE = ("PENDING", "RUNNING")


def write_job(tmp_path: Path, url: str) -> Path:
    job = tmp_path / "probe.toml"
    job.write_text(job_text("probejob", output_dir=str(tmp_path / "out"),
                            region={"bbox": [0, 0, 2, 1]}, grid={"size": 0.5},
                            export={"folder": FOLDER, "scale": 2000}, emulator=url))
    return job


def probe(job: Path, capsys: pytest.CaptureFixture[str], *more: str) -> tuple[int, str, str]:
    code = main(["doctor", "--probe", str(job), *more])
    out = capsys.readouterr()
    return code, out.out, out.err


def line(out: str, name: str) -> str:
    found = [ln for ln in out.splitlines() if re.match(rf"(ok |BAD)  {name}\b", ln)]
    assert len(found) == 1, out
    return found[0]


def probe_tasks(url: str) -> list[dict[str, Any]]:
    return [t for t in admin(url, "/_emulator/state")["ee"]["tasks"]
            if t["description"].startswith("eebatch_probe-")]


def folders(url: str) -> list[dict[str, Any]]:
    return [f for f in admin(url, "/_emulator/state")["drive"]["files"]
            if f.get("mimeType") == "application/vnd.google-apps.folder"]


def user_file(emu: Emulator, tmp_path: Path) -> str:
    """The user's own file in the export folder, from before the probe; returns its id."""
    src = tmp_path / "mine.tif"
    src.write_bytes(b"the user's own bytes")
    folder = emu.drive.model.ensure_export_folder(FOLDER)
    return emu.drive.model.add_file(folder, "probejob_mine.tif", src, "image/tiff").id


def listed(emu: Emulator) -> set[str]:
    """Ids of the files and titles of the folders files.list shows now (after its lag)."""
    items = make_drive(emu.url).ListFile({"q": "trashed = false"}).GetList()
    return {f["title"] if f["mimeType"].endswith(".folder") else f["id"] for f in items}


def test_probe_reports_and_leaves_only_the_users_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lag = 2.0
    emu = emulator_with(drive_listing_lag=lag, quota_other=2_000_000)
    try:
        mine = user_file(emu, tmp_path)
        # The user's folder and file are old news to Drive's index before the probe starts.
        wait_for(lambda: {mine, FOLDER} <= listed(emu), "the user's file in files.list")
        code, out, err = probe(write_job(tmp_path, emu.url), capsys)
        assert code == 0, err
        assert "newest first" in line(out, "task order")
        assert line(out, "names").startswith("ok ")
        assert "waiting:" in out  # the progress line while the exports run
        listing = line(out, "drive listing")
        measured = float(re.search(r"within ([\d.]+) s", listing).group(1))  # type: ignore[union-attr]
        assert measured >= lag, listing
        assert "from destinationUris at once" in line(out, "folder by id")
        quota = line(out, "quota")
        fields = dict(re.findall(r"(quota\w+)=(\S+)", quota))
        assert fields["quotaBytesTotal"] == str(15 * 10**9)
        assert fields["quotaType"] == "LIMITED"
        assert int(fields["quotaBytesUsedAggregate"]) - int(fields["quotaBytesUsed"]) \
            == 2_000_000
        assert fields["quotaBytesUsedInTrash"] == "0"
        failing = line(out, "failing export")
        assert "Export too large: specified" in failing and "(max: 1)" in failing
        assert "eebatch classifies it fatal" in failing
        cleanup = line(out, "clean-up")
        assert cleanup.startswith("ok ") and "deleted its 1 file" in cleanup, cleanup
        # The probe's files are gone, its tasks are over; the user's file and folder stay.
        assert [f["id"] for f in drive_files(emu.url)] == [mine]
        assert [f["title"] for f in folders(emu.url)] == [FOLDER]
        tasks = probe_tasks(emu.url)
        assert len(tasks) == 2 and not [t for t in tasks if t["state"] in LIVE]
    finally:
        emu.stop()


def test_oldest_first_and_a_folder_made_for_the_probe_is_removed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    emu = emulator_with(operations_oldest_first=True)
    try:
        code, out, err = probe(write_job(tmp_path, emu.url), capsys)
        assert code == 0, err
        assert "oldest first" in line(out, "task order")
        assert "removed the folder" in line(out, "clean-up")
        assert drive_files(emu.url) == [] and folders(emu.url) == []
    finally:
        emu.stop()


def test_a_probe_that_times_out_cancels_its_tasks(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    emu = emulator_with(speed=1.0, task_overhead_seconds=3600.0)
    try:
        code, out, err = probe(write_job(tmp_path, emu.url), capsys, "--probe-timeout", "2")
        assert code == 0, err
        assert "not finished after 2 s" in line(out, "export")
        assert "cancelled 1 task" in line(out, "clean-up")
        wait_for(lambda: not [t for t in probe_tasks(emu.url)
                              if t["state"] in (*LIVE, "CANCELLING")], "the cancels to end")
        assert drive_files(emu.url) == []
    finally:
        emu.stop()


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = probe(tmp_path / "missing.toml", capsys)
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and "no such job file" in err


def test_no_emulator_answering_is_exit_1(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = probe(write_job(tmp_path, "http://127.0.0.1:9"), capsys)
    assert code == 1 and "could not connect" in err and "does not answer" in err
