"""Nothing lost, nobody else's file touched (issue 10): look-alike files in and beside the
export folder, a retry after failed downloads, a full output disk, a Drive too full for one
output. The real worker, earthengine-api and pydrive2 against the emulator."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from core.connect import make_drive
from core.emulator.app import Emulator
from core.engine.runner import run_session
from core.store import Store
from tests.emulator.drive_fixtures import make_folder
from tests.engine.conftest import (
    admin,
    assert_all_done_and_verified,
    drive_files,
    emulator_with,
    inject,
    make_session,
    md5,
)

PROJECT = "eebatch-demo"
# EE's task error when Drive is full: Drive's own text (storageQuotaExceeded).
DRIVE_FULL_LIKE = "The user's Drive storage quota has been exceeded%"
MEDIA_FAULT = {"method": "GET", "route": "drive files.get", "query_contains": "alt=media"}


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    """Poll a condition (never a fixed sleep): its first truthy value, or fail naming it."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@contextmanager
def worker_thread(store: Store) -> Iterator[threading.Event]:
    """The session's worker in a thread; leaving the block stops it and re-raises its error."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            run_session(store.path, stop=stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work, name="test-worker")
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join()
    if errors:
        raise errors[0]


def accept_exports_without_running_them(emu: Emulator, store: Store) -> None:
    """Run the worker until EE has accepted every unit's export while no batch slot runs
    any, then stop it: files made now are made after the exports were accepted."""
    emu.ee.model.set_slots(PROJECT, 0)
    units = len(store.units())
    with worker_thread(store):
        wait_for(lambda: store.conn.execute(  # and seen by a poll: EE's createTime is known
            "SELECT COUNT(*) FROM attempts WHERE operation IS NOT NULL AND ee_created IS NOT"
            " NULL").fetchone()[0] == units, "every export accepted by EE")
    emu.ee.model.set_slots(PROJECT, 4)


def upload(drive: Any, title: str, data: bytes, parent: str | None = None) -> dict[str, str]:
    meta: dict[str, Any] = {"title": title}
    if parent:
        meta["parents"] = [{"id": parent}]
    f = drive.CreateFile(meta)
    f.content = io.BytesIO(data)
    f.Upload()
    return {"id": f["id"], "title": title, "md5": hashlib.md5(data).hexdigest()}


def folder(drive: Any, title: str, parent: str | None = None) -> str:
    return str(make_folder(drive, title, parent)["id"])


def assert_untouched(url: str, user_files: list[dict[str, str]]) -> None:
    """Each of the user's files is still in Drive, not trashed, with its own bytes."""
    by_id = {f["id"]: f for f in drive_files(url)}
    for mine in user_files:
        there = by_id.get(mine["id"])
        assert there is not None, f"the user's {mine['title']} was deleted"
        assert there["md5Checksum"] == mine["md5"] and not there.get("labels", {}).get(
            "trashed"), f"the user's {mine['title']} was changed or trashed"


def succeeded_exports(url: str) -> dict[str, int]:
    """SUCCEEDED EE tasks per description (one per unit attempt)."""
    out: dict[str, int] = {}
    for t in admin(url, "/_emulator/state")["ee"]["tasks"]:
        if t["state"] == "SUCCEEDED":
            out[t["description"]] = out.get(t["description"], 0) + 1
    return out


# -- 1, 2: look-alikes in, under and beside the export folder --------------------------------


def test_stale_and_user_files_with_an_outputs_name_are_left_alone_and_a_clash_reported(
        tmp_path: Path) -> None:
    with emulator_with() as emu:
        drive = make_drive(emu.url)
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 1, 0.5]")  # 2 units
        u0, u1 = sorted(r["id"] for r in store.units())
        # Before the run: a stale output of an earlier run in the export folder, and the
        # user's archived copies in archive/eebatch-test (EE writes to the newest folder of
        # that name, so the exports land beside those copies).
        top = folder(drive, "eebatch-test")
        stale = upload(drive, f"t_{u0}.tif", b"II*\x00stale" * 504, top)  # 5,041 bytes
        nested = folder(drive, "eebatch-test", folder(drive, "archive"))
        copies = [upload(drive, f"t_{u}.tif", os.urandom(5041), nested) for u in (u0, u1)]
        accept_exports_without_running_them(emu, store)
        # After EE accepted the exports: a user's file of u1's output name where EE will
        # write it (no one can tell the two apart), and look-alikes by name (point 2).
        clash = upload(drive, f"t_{u1}.tif", os.urandom(6000), nested)
        lookalikes = [upload(drive, title, os.urandom(3000), nested) for title in (
            f"t_{u0}.txt", f"t_{u0}.TIF", f"t_{u0}.tif.bak", f"t_{u0}-0000000000-00000.tif",
            f"t_{u0}-0000000000-0000000000.csv")]
        user_files = [stale, *copies, clash, *lookalikes]

        summary = run_session(store.path)

        assert store.unit(u0)["state"] == "done"
        (failed, error), = summary.failed
        assert failed == u1 and "name clash" in error and f"t_{u1}.tif" in error
        assert_untouched(emu.url, user_files)
        files = store.conn.execute("SELECT * FROM files").fetchall()
        assert [f["unit"] for f in files] == [u0]  # nothing of the clash was taken
        out = tmp_path / "out"
        assert sorted(out.glob("*.tif")) == [out / f"t_{u0}.tif"]
        assert md5(out / f"t_{u0}.tif") == files[0]["md5"] != stale["md5"]
        assert files[0]["size"] > 5041  # the export's GeoTIFF, not the stale file
        assert any("name clash" in e["message"] for e in store.events(limit=10_000))

        # The user moves their copy away and retries: the export still in Drive is
        # downloaded, not exported again.
        drive.CreateFile({"id": clash["id"]}).Delete()
        store.post_command("retry", u1)
        summary = run_session(store.path)

        assert summary.ok, summary.failed
        assert sorted(out.glob("*.tif")) == [out / f"t_{u0}.tif", out / f"t_{u1}.tif"]
        assert sorted(succeeded_exports(emu.url).values()) == [1, 1]
        assert_untouched(emu.url, [stale, *copies, *lookalikes])
        assert len(drive_files(emu.url)) == len(user_files) - 1  # only the user's remain
        for f in store.conn.execute("SELECT * FROM files").fetchall():
            assert f["state"] == "deleted" and md5(Path(f["local_path"])) == f["md5"]


def test_a_cancel_removes_only_the_exports_own_files(tmp_path: Path) -> None:
    """A unit cancelled after its export finished: its output leaves Drive, a user's files
    named like it stay."""
    with emulator_with() as emu:
        drive = make_drive(emu.url)
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 0.5, 0.5]")  # 1 unit
        (unit,) = [r["id"] for r in store.units()]
        top = folder(drive, "eebatch-test")
        accept_exports_without_running_them(emu, store)
        mine = [upload(drive, title, os.urandom(2000), top) for title in (
            f"t_{unit}.txt", f"t_{unit}.TIF")]
        # The export finishes while no worker watches; the user cancels before it is taken.
        wait_for(lambda: succeeded_exports(emu.url), "the export to finish")
        store.post_command("cancel", unit)
        with worker_thread(store):
            wait_for(lambda: store.unit(unit)["state"] == "cancelled", "the cancel")
            wait_for(lambda: any("outputs removed" in e["message"]
                                 for e in store.events(limit=10_000)), "the removal")
        assert_untouched(emu.url, mine)
        assert sorted(f["title"] for f in drive_files(emu.url)) == sorted(
            f["title"] for f in mine)


# -- 3: a retry after failed downloads --------------------------------------------------------


def test_retry_after_failed_downloads_downloads_again_without_a_second_export(
        tmp_path: Path, emulator: Emulator) -> None:
    store = make_session(tmp_path, emulator.url, bbox="[0, 0, 1, 0.5]", max_attempts=2)
    inject(emulator.url, **MEDIA_FAULT, kind="corrupt", count=-1)
    summary = run_session(store.path)
    assert {unit for unit, _ in summary.failed} == {r["id"] for r in store.units()}
    assert len(drive_files(emulator.url)) == 2  # the exports wait in Drive

    admin(emulator.url, "/_emulator/faults", method="DELETE")
    # One more bad download after the retry: the count starts afresh, so it is retried
    # (with the old count it would have been the unit's last).
    inject(emulator.url, **MEDIA_FAULT, kind="corrupt", count=1)
    for row in store.units():
        store.post_command("retry", row["id"])
    summary = run_session(store.path)

    assert summary.ok, summary.failed
    assert_all_done_and_verified(store, emulator.url)
    assert sorted(succeeded_exports(emulator.url).values()) == [1, 1]  # no second export
    assert store.conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 2


# -- 4: a full output disk --------------------------------------------------------------------


@contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a full disk needs a small tmpfs, which only root can mount here")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_pauses_downloads_and_exports_until_space_returns(tmp_path: Path,
                                                                      emulator: Emulator) -> None:
    with small_disk(tmp_path / "out", "16m") as out:
        filler = out / "someone-elses-big-file"
        filler.write_bytes(bytes(shutil.disk_usage(out).free - 512 * 1024))
        store = make_session(tmp_path, emulator.url, bbox="[0, 0, 2, 1]", max_tasks=2)  # 8
        with worker_thread(store):
            wait_for(lambda: any("output disk full" in e["message"]
                                 for e in store.events(limit=10_000)), "the disk-full event")
            # While the disk is full nothing more is exported: what EE holds finishes and
            # waits in Drive, the rest waits in the store. Nothing fails.
            wait_for(lambda: store.conn.execute(
                "SELECT COUNT(*) FROM units WHERE state IN ('submitting', 'queued',"
                " 'running')").fetchone()[0] == 0, "EE to run dry")
            counts = store.counts()
            assert counts.get("failed", 0) == 0 and counts.get("pending", 0) >= 4, counts
            wait_for(lambda: "output disk full" in (
                (store.worker_status() or {}).get("waiting") or ""),
                "the dashboard's status to say why")
            filler.unlink()
            wait_for(lambda: store.counts() == {"done": 8}, "the job to finish")
        assert_all_done_and_verified(store, emulator.url)
        assert sorted(succeeded_exports(emulator.url).values()) == [1] * 8
        messages = [e["message"] for e in store.events(limit=10_000)]
        assert "the output disk has room again: downloads and exports resume" in messages


@pytest.mark.slow  # throttled downloads (~4 s a file) and the wait for disk space: about 14 s
def test_a_disk_that_fills_mid_download_costs_no_try(tmp_path: Path,
                                                     emulator: Emulator) -> None:
    """Another program fills the disk while files download ("No space left on device"):
    the downloads are redone when there is room again, and no unit fails."""
    with small_disk(tmp_path / "out", "16m") as out:
        admin(emulator.url, "/_emulator/throttle", {"per_connection": 100_000})  # ~4 s a file
        store = make_session(tmp_path, emulator.url, bbox="[0, 0, 1, 0.5]", max_attempts=2)
        with worker_thread(store):
            wait_for(lambda: store.conn.execute(
                "SELECT COUNT(*) FROM files WHERE state = 'downloading'").fetchone()[0],
                "a download under way")
            filler = out / "someone-elses-big-file"
            with open(filler, "wb") as fh, pytest.raises(OSError):  # all the disk has left
                while True:
                    fh.write(bytes(256 * 1024))
                    fh.flush()
            wait_for(lambda: "output disk full" in (
                (store.worker_status() or {}).get("waiting") or ""),
                "the dashboard's status to say why")
            assert store.counts().get("failed", 0) == 0
            admin(emulator.url, "/_emulator/throttle", {"per_connection": None})
            filler.unlink()
            wait_for(lambda: store.counts() == {"done": 2}, "the job to finish")
        assert_all_done_and_verified(store, emulator.url)
        assert store.conn.execute("SELECT MAX(download_failures) FROM units").fetchone()[0] == 0


# -- 5: a Drive too full for one output -------------------------------------------------------


def output_size(tmp_path: Path) -> int:
    """What one unit's output weighs here, from a first run."""
    with emulator_with() as emu:
        probe = make_session(tmp_path, emu.url, name="probe", bbox="[0, 0, 0.5, 0.5]")
        assert run_session(probe.path).ok
        return int(probe.conn.execute("SELECT MAX(size) FROM files").fetchone()[0])


@pytest.mark.parametrize("room", ["half an output", "half the estimate"])
def test_a_drive_too_full_for_one_output_waits_says_why_and_resumes(room: str,
                                                                    tmp_path: Path) -> None:
    size = output_size(tmp_path)
    quota = 2_000_000
    with emulator_with(drive_quota=quota) as emu:
        drive = make_drive(emu.url)
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 1, 1]", max_attempts=2)  # 4
        estimate = min(r["est_bytes"] for r in store.units())
        free = size // 2 if room == "half an output" else estimate // 2
        assert free < size
        thesis = upload(drive, "thesis.pdf", os.urandom(quota - free))
        with worker_thread(store):
            event = wait_for(lambda: next((e["message"] for e in store.events(limit=10_000)
                                           if "waiting for Drive space" in e["message"]), None),
                             "admission to say why it waits")
            assert "free space in Drive or raise drive_budget" in event
            wait_for(lambda: "waiting for Drive space" in (
                (store.worker_status() or {}).get("waiting") or ""),
                "the dashboard's status to say why")
            assert store.counts().get("failed", 0) == 0
            # Failed exports are few: the first wave (max_tasks) and one sent alone teach
            # what a unit needs.
            full = store.conn.execute("SELECT COUNT(*) FROM attempts WHERE error LIKE ?",
                                      (DRIVE_FULL_LIKE,)).fetchone()[0]
            assert full <= 4 + 1, full
            if room == "half the estimate":
                assert full == 0  # not even the estimate fits: nothing is sent
            # And no more are sent while it waits (polls every 0.2 s, status every second).
            later = time.time() + 2
            wait_for(lambda: (store.worker_status() or {}).get("updated", 0) > later,
                     "a few more polls")
            assert store.conn.execute("SELECT COUNT(*) FROM attempts WHERE error LIKE ?",
                                      (DRIVE_FULL_LIKE,)).fetchone()[0] == full
            # The user makes room.
            drive.CreateFile({"id": thesis["id"]}).Delete()
            wait_for(lambda: store.counts() == {"done": 4}, "the job to finish")
        assert_all_done_and_verified(store, emu.url)
        assert "Drive has room again: exports resume" in [
            e["message"] for e in store.events(limit=10_000)]


def test_drive_full_with_no_quota_to_learn_from_is_counted_not_resent_forever(
        tmp_path: Path) -> None:
    """Drive full while its quota cannot be read: there is no room to learn, so each failed
    export counts like any transient failure and the unit ends FAILED with the reason,
    instead of being resent for free at every tick."""
    quota = 2_000_000
    with emulator_with(drive_quota=quota) as emu:
        drive = make_drive(emu.url)
        upload(drive, "thesis.pdf", os.urandom(quota - 1000))
        inject(emu.url, route="drive about.get", kind="status", status=503, count=-1)
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 0.5, 0.5]", max_attempts=2)
        with worker_thread(store):
            wait_for(lambda: store.counts() == {"failed": 1}, "the unit to fail")
        assert "The user's Drive storage quota has been exceeded" in store.units()[0]["error"]
        assert store.conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 2
