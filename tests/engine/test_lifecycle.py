"""A session's life from the command line (issue 11): re-running a job file resumes its
unfinished session, `--new` sessions never write the same files, `rm` takes the session's
EE tasks and Drive files with it, every event reaches the log file and `eebatch log`, and
retry/cancel/pause/resume reach a worker through the store. `tui.cli.main` in-process, the
real worker, earthengine-api and pydrive2 against the emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import paths
from core.emulator.app import Emulator
from core.store import Store
from tests.engine.conftest import (
    admin,
    drive_files,
    emulator_with,
    inject,
    make_session,
    our_tasks,
    task_unit,
)
from tests.engine.test_safety import PROJECT, wait_for, worker_thread
from tui.cli import main

MEDIA = {"method": "GET", "route": "drive files.get", "query_contains": "alt=media"}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


def live_tasks(url: str, session: str) -> list[dict]:
    return [t for t in our_tasks(url, session)
            if t["state"] in ("PENDING", "RUNNING", "CANCELLING")]


def waiting_in_ee(url: str, store: Store) -> bool:
    tasks = our_tasks(url, "t-1")
    succeeded = {task_unit(t["description"]) for t in tasks if t["state"] == "SUCCEEDED"}
    with_files = {r[0] for r in store.conn.execute("SELECT unit FROM files")}
    return (any(t["state"] == "PENDING" for t in tasks) and succeeded <= with_files
            and not any(t["state"] in ("RUNNING", "CANCELLING") for t in tasks)
            and len(store.live_operations()) == len(live_tasks(url, "t-1")))


def test_running_the_job_file_again_resumes_its_unfinished_session(
        tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_session(tmp_path, emulator.url)  # t-1 from t.toml, never run
    job = str(tmp_path / "t.toml")
    code, out = run(capsys, "run", job, "--headless", "--every", "0.2")
    assert code == 0, out
    assert "resuming session t-1 (0 of 8 done); --new starts a fresh one" in out
    assert [s.id for s in Store.list_sessions()] == ["t-1"]
    assert store.counts() == {"done": 8}
    # Where the files are and what it cost, at the end of the run.
    assert "8 verified" in out and str(tmp_path / "out") in out and "EECU-hours" in out
    # Finished: the job file now makes a fresh session.
    code, out = run(capsys, "new", job)
    assert code == 0 and "created session t-2" in out
    assert "eebatch run t-2 --headless" in out and "eebatch open t-2" in out


def test_a_new_session_beside_an_unfinished_one_writes_its_own_files(
        tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    first = make_session(tmp_path, emulator.url)  # unfinished
    job = str(tmp_path / "t.toml")
    code, out = run(capsys, "run", job, "--new", "--headless", "--every", "0.2")
    assert code == 0, out
    assert "created session t-2" in out and "another session of this job is unfinished" in out
    second = Store(paths.sessions_dir() / "t-2.sqlite")
    code, out = run(capsys, "run", "t-1", "--headless", "--every", "0.2")
    assert code == 0, out
    mine = {r["local_path"] for r in first.conn.execute("SELECT local_path FROM files")}
    theirs = {r["local_path"] for r in second.conn.execute("SELECT local_path FROM files")}
    assert len(mine) == len(theirs) == 8 and not mine & theirs
    assert all(Path(p).parent == tmp_path / "out" / "t-2" for p in theirs)
    assert all(Path(p).exists() for p in mine | theirs)


def test_rm_cancels_the_sessions_live_tasks_and_deletes_its_files_in_drive(
        tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_session(tmp_path, emulator.url, bbox="[0, 0, 4, 2]", max_tasks=2)  # 32 units
    inject(emulator.url, **MEDIA, kind="status", status=503, count=-1)  # files stay in Drive
    with worker_thread(store):
        wait_for(lambda: store.conn.execute("SELECT COUNT(*) FROM files").fetchone()[0] >= 2,
                 "files listed in Drive")
        emulator.ee.model.set_slots(PROJECT, 0)
        # Exports wait in EE's queue, none runs, and the files of every finished one are
        # known to the session (all of them in Drive: downloads fail).
        wait_for(lambda: waiting_in_ee(emulator.url, store), "exports waiting in EE")
    assert store.live_operations() and drive_files(emulator.url)
    store.close()
    code, out = run(capsys, "rm", "t-1", "--yes")
    assert code == 0, out
    assert "live EE task" in out and "in Drive" in out and "deleted session t-1" in out
    assert drive_files(emulator.url) == []
    wait_for(lambda: not live_tasks(emulator.url, "t-1"), "no live EE task")
    assert not (paths.sessions_dir() / "t-1.sqlite").exists()


def test_rm_keeps_the_session_when_ee_and_drive_cannot_be_reached(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    emu = emulator_with(speed=1.0, task_overhead_seconds=60.0, slots=2)
    store = make_session(tmp_path, emu.url, bbox="[0, 0, 1, 0.5]")
    try:
        with worker_thread(store):
            wait_for(store.live_operations, "a live export")
    finally:
        emu.stop()
    code, out = run(capsys, "rm", "t-1", "--yes")
    assert code == 1 and "the session is kept" in out and "--force" in out
    assert (paths.sessions_dir() / "t-1.sqlite").exists()
    code, out = run(capsys, "rm", "t-1", "--yes", "--force")
    assert code == 0 and not (paths.sessions_dir() / "t-1.sqlite").exists()


@pytest.mark.slow  # half the exports fail and are retried after their backoff: about 17 s
def test_every_event_reaches_the_log_file_and_eebatch_log(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with emulator_with(internal_error_rate=0.5) as emu:
        store = make_session(tmp_path, emu.url, max_attempts=10)
        code, out = run(capsys, "run", "t-1", "--headless", "--every", "0.2")
    assert code == 0, out
    retries = [r["message"] for r in store.events() if r["message"].startswith("will retry")]
    assert retries and "Internal error." in retries[0]
    text = (paths.log_dir() / "t-1.log").read_text()
    assert "WARNING r" in text and "will retry in" in text and "Internal error." in text
    for row in store.events():  # each event once: the store's and the worker's not doubled
        assert text.count(f"{row['unit'] + ': ' if row['unit'] else ''}{row['message']}") \
            >= 1
    assert text.count("worker started") == 1
    code, out = run(capsys, "log", "t-1")
    assert code == 0 and "will retry in" in out and "Internal error." in out
    assert out.splitlines()[0].endswith("session created from " + str(tmp_path / "t.toml"))


def test_retry_from_the_command_line_of_a_task_cancelled_in_earth_engine(
        tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_session(tmp_path, emulator.url, bbox="[0, 0, 1, 0.5]")  # 2 units
    emulator.ee.model.set_slots(PROJECT, 0)
    with worker_thread(store):
        unit, operation = wait_for(lambda: (store.live_operations() or [None])[0], "an export")
        admin(emulator.url, f"/v1/{operation}:cancel", {})  # as the Code Editor's Tasks tab
        wait_for(lambda: store.unit(unit)["state"] == "cancelled", "the cancel seen")
        emulator.ee.model.set_slots(PROJECT, 4)
    code, out = run(capsys, "run", "t-1", "--headless", "--every", "0.2")
    assert code == 1 and "1 cancelled" in out
    assert out.strip().splitlines()[-1] == \
        "to retry them: eebatch retry t-1 --cancelled, then eebatch run t-1 --headless"
    code, out = run(capsys, "retry", "t-1", "--cancelled")
    assert code == 0 and f"retry of {unit} queued: no worker runs t-1" in out
    code, out = run(capsys, "run", "t-1", "--headless", "--every", "0.2")
    assert code == 0 and "all 2 units done" in out, out


def test_cancel_pause_resume_reach_a_running_worker_and_bad_ids_post_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tui.cli import _status_line

    emu = emulator_with(speed=1.0, task_overhead_seconds=60.0, slots=2)
    store = make_session(tmp_path, emu.url, bbox="[0, 0, 1, 0.5]")
    try:
        with worker_thread(store):
            unit, _ = wait_for(lambda: (store.live_operations() or [None])[0], "an export")
            posted = store.conn.execute("SELECT COUNT(*) FROM commands").fetchone()[0]
            code, out = run(capsys, "cancel", "t-1", unit, "r0c0_nope")
            assert code == 2 and out.count("\n") == 1 and "no unit 'r0c0_nope'" in out
            code, out = run(capsys, "retry", "t-1")
            assert code == 2 and "--failed or --cancelled" in out
            assert store.conn.execute("SELECT COUNT(*) FROM commands").fetchone()[0] == posted
            code, out = run(capsys, "pause", "t-1")
            assert code == 0 and out == "pause: submissions paused\n"
            assert "PAUSED" in _status_line(store, 0.0)
            code, out = run(capsys, "cancel", "t-1", unit)
            assert code == 0 and out == f"cancel {unit}: cancelled\n"
            code, out = run(capsys, "resume", "t-1")
            assert code == 0 and "PAUSED" not in _status_line(store, 0.0)
        wait_for(lambda: not live_tasks(emu.url, "t-1") or
                 unit not in {task_unit(t["description"]) for t in live_tasks(emu.url, "t-1")},
                 "the cancel in EE")
    finally:
        emu.stop()
    assert store.unit(unit)["state"] == "cancelled"


def test_status_says_where_the_files_are_and_what_they_cost(
        tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    import csv

    store = make_session(tmp_path, emulator.url, bbox="[0, 0, 1, 0.5]")
    assert run(capsys, "run", "t-1", "--headless", "--every", "0.2")[0] == 0
    code, out = run(capsys, "status", "t-1", "--csv", str(tmp_path / "units.csv"))
    assert code == 0 and "2 verified" in out and str(tmp_path / "out") in out
    assert "EECU-hours" in out and "0 retries, 0 splits" in out and "wall time" in out
    rows = list(csv.DictReader((tmp_path / "units.csv").open()))
    unit = store.unit(rows[0]["unit"])
    assert float(rows[0]["west"]) == unit["west"] and float(rows[0]["north"]) == unit["north"]
    assert {"start", "end"} <= set(rows[0])
    assert Path(rows[0]["local_paths"]).exists()
    assert Path(rows[0]["local_paths"]).parent == tmp_path / "out"


def test_a_demo_session_run_again_from_the_command_line_gets_a_fresh_emulator(
        capsys: pytest.CaptureFixture[str]) -> None:
    from tests.tui.test_lifecycle import demo_session, settle_units

    path = demo_session()  # its emulator gone, as after `eebatch demo` and q
    left = settle_units(path, 3)
    code, out = run(capsys, "run", path.stem, "--headless", "--every", "0.5")
    assert code == 0, out
    assert "demo session: its emulator ended with `eebatch demo`; a fresh one runs at" in out
    store = Store(path)
    try:
        assert all(store.unit(u)["state"] == "done" for u in left)
    finally:
        store.close()


def test_run_with_its_emulator_gone_says_so_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    # A port held bound but never listening: refused, and no other process can take it over
    # (a stopped emulator's port could be reused by any test running on the machine).
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{held.getsockname()[1]}"
        make_session(tmp_path, url)
        code, out = run(capsys, "run", "t-1", "--headless", "--every", "0.2")
    assert code == 1, out
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert errors == [f"error: the emulator at {url} does not answer (Connection refused); "
                      "start it with `eebatch emulator --port PORT`"], out


def test_the_last_drive_figure_of_a_run_is_read_after_the_work_is_done(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from core.connect import make_drive

    # Far from its limit, the worker reads Drive's quota only every few polls: a figure read
    # before the end (the user's file there, exports landing) must not be the last one shown.
    with emulator_with() as emulator:
        drive = make_drive(emulator.url)
        theirs = drive.CreateFile({"title": "thesis.pdf"})
        (tmp_path / "thesis.pdf").write_bytes(bytes(1_000_000))
        theirs.SetContentFile(str(tmp_path / "thesis.pdf"))
        theirs.Upload()
        store = make_session(tmp_path, emulator.url)
        assert run(capsys, "pause", "t-1")[0] == 0
        with worker_thread(store):
            wait_for(lambda: (store.worker_status() or {}).get("drive_used")
                     == 1_000_000, "the worker's first read of Drive")
            theirs.Delete()  # the user empties their Drive while the job is paused
            assert run(capsys, "resume", "t-1")[0] == 0
            wait_for(lambda: store.conn.execute(
                "SELECT 1 FROM events WHERE message LIKE 'finished:%'").fetchone(), "the end")
        assert store.counts() == {"done": 8}
        assert store.worker_status()["drive_used"] == 0


def test_rm_of_a_running_session_names_its_worker_and_keeps_it(
        tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    store = make_session(tmp_path, emulator.url)
    assert run(capsys, "pause", "t-1")[0] == 0  # it stays running, with nothing to race
    with worker_thread(store):
        wait_for(store.worker_alive, "the worker")
        code, out = run(capsys, "rm", "t-1", "--yes")
    assert code == 2
    assert f"error: session t-1 is being run by pid {os.getpid()} on " in out
    assert "stop it first (ctrl+c where it runs, or kill that pid)" in out
    assert store.path.exists()
