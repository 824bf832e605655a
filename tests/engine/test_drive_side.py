"""What the engine finds in Drive: split files by prefix, every folder of the export's name,
and never a file that is not its own."""

from __future__ import annotations

import hashlib
from pathlib import Path

from core.connect import make_drive
from core.engine.runner import run_session
from tests.engine.conftest import drive_files, emulator_with, make_session, md5

# EE's task error when Drive is full: Drive's own text (storageQuotaExceeded).
DRIVE_FULL_LIKE = "The user's Drive storage quota has been exceeded%"


def test_split_files_are_all_fetched_and_verified(tmp_path: Path) -> None:
    # Outputs above 100 kB are split into 256-pixel prefix-RRRRRRRRRR-CCCCCCCCCC.tif shards;
    # a 0.5° tile at 200 m is 278 pixels a side: four shards.
    with emulator_with(file_split_bytes=100_000) as emu:
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 1, 0.5]", scale=200)
        summary = run_session(store.path)
        assert summary.ok, summary.failed
        files = store.conn.execute("SELECT * FROM files").fetchall()
        per_unit: dict[str, list[str]] = {}
        for f in files:
            per_unit.setdefault(f["unit"], []).append(f["title"])
            assert md5(Path(f["local_path"])) == f["md5"]
        assert len(per_unit) == 2
        for unit, titles in per_unit.items():
            assert len(titles) == 4
            assert all(t.startswith(f"t_{unit}-") and t.endswith(".tif") for t in titles)
        assert drive_files(emu.url) == []


def test_other_files_and_duplicate_folders_are_left_alone(tmp_path: Path) -> None:
    with emulator_with() as emu:
        drive = make_drive(emu.url)
        # The user already has two folders with the export's name, with files of their own,
        # one of them named like a unit of ours but for another prefix.
        older = drive.CreateFile({"title": "eebatch-test",
                                  "mimeType": "application/vnd.google-apps.folder"})
        older.Upload()
        mine = tmp_path / "notes.txt"
        mine.write_text("the user's own file")
        for title in ("notes.txt", "other_r179c360.tif"):
            f = drive.CreateFile({"title": title, "parents": [{"id": older["id"]}]})
            f.SetContentFile(str(mine))
            f.Upload()
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 1, 0.5]")
        assert run_session(store.path).ok
        left = sorted(f["title"] for f in drive_files(emu.url))
        assert left == ["notes.txt", "other_r179c360.tif"]
        digest = hashlib.md5(mine.read_bytes(), usedforsecurity=False).hexdigest()
        assert all(f["md5Checksum"] == digest for f in drive_files(emu.url))


def test_a_drive_almost_full_of_other_files_is_waited_on_not_overfilled(tmp_path: Path) -> None:
    # What one unit's output weighs here, learned from a first run.
    with emulator_with() as emu:
        probe = make_session(tmp_path, emu.url, name="probe", bbox="[0, 0, 1, 0.5]")
        assert run_session(probe.path).ok
        size = probe.conn.execute("SELECT MAX(size) FROM files").fetchone()[0]
    # The user's own 1 MB file, and room beside it for about two of our outputs at a time,
    # while max_tasks would allow 4: exports that find Drive full are retried, never lost,
    # and the quota is read again at once to see how much room there is.
    with emulator_with(drive_quota=1_000_000 + int(size * 2.5)) as emu:
        drive = make_drive(emu.url)
        mine = tmp_path / "thesis.pdf"
        mine.write_bytes(b"%PDF" + bytes(999_996))
        own = drive.CreateFile({"title": "thesis.pdf"})
        own.SetContentFile(str(mine))
        own.Upload()
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 2, 1]", max_attempts=20)
        summary = run_session(store.path)
        assert summary.ok, summary.failed
        assert store.counts() == {"done": 8}
        # The first wave is admitted on estimates, so some exports did find Drive full.
        full = store.conn.execute("SELECT COUNT(*) FROM attempts WHERE error LIKE ?",
                                  (DRIVE_FULL_LIKE,)).fetchone()[0]
        assert full > 0
        assert [f["title"] for f in drive_files(emu.url)] == ["thesis.pdf"]
        files = store.conn.execute("SELECT * FROM files").fetchall()
        assert len(files) == 8 and all(md5(Path(f["local_path"])) == f["md5"] for f in files)
