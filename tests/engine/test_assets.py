"""A table job exported to EE assets is merged into one asset at its end, its parts deleted only
after the merged asset exists; `eebatch assets list|merge|rm SESSION` shows them, merges again
(after a failure) and deletes them after asking; nothing in the folder that eebatch did not make
is ever touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.connect import init_ee
from core.engine.runner import run_session
from tests.engine.conftest import emulator_with, make_session
from tui.cli import main

FOLDER = "projects/eebatch-demo/assets/exports"
MINE = f"{FOLDER}/my-own-folder"


def assets_in(url: str) -> set[str]:
    import ee

    init_ee(url)
    return {a["id"] for a in ee.data.listAssets({"parent": FOLDER}).get("assets", [])}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_table_job_in_assets_is_merged_at_its_end_and_nothing_else_is_touched(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any) -> None:
    import ee

    emu = emulator_with()
    try:
        init_ee(emu.url)
        ee.data.createAsset({"type": "FOLDER"}, FOLDER)
        ee.data.createAsset({"type": "FOLDER"}, MINE)  # the user's own, beside the parts
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 1, 0.5]",
                             recipe='name = "stats"\nindices = ["NDVI"]\nbands = []',
                             export={"destination": "asset", "asset_folder": FOLDER})
        assert run_session(store.path).ok
        # At the job's end its two table parts were merged into one asset and then deleted
        # (eebatch made them); the user's folder beside them is untouched.
        merged = f"{FOLDER}/t_merged"
        assert assets_in(emu.url) == {MINE, merged}
        assert ee.FeatureCollection(merged).size().getInfo() == 2  # both units' rows
        said = [r[0] for r in store.conn.execute(
            "SELECT message FROM events WHERE message LIKE '%t_merged%'")]
        assert said == [f"merged 2 parts into {merged}",
                        f"{merged} holds the job's table; deleted its 2 parts"]

        code, out, _ = run(capsys, "assets", "list", store.id)
        lines = out.splitlines()
        assert code == 0 and lines[-1] == f"{merged}  in EE" and len(lines) == 3
        assert all(line.endswith("  gone") for line in lines[:2])  # the parts, deleted
        code, out, _ = run(capsys, "assets", "merge", store.id)  # again: nothing to do
        assert code == 0 and out == f"{merged} holds the job's table; no part is left\n"

        monkeypatch.setattr("sys.stdin.isatty", lambda: False)
        code, out, err = run(capsys, "assets", "rm", store.id)  # no terminal, no --yes
        assert code == 2 and len(err.strip().splitlines()) == 1 and "--yes" in err
        assert assets_in(emu.url) == {MINE, merged}

        code, out, _ = run(capsys, "assets", "rm", store.id, "--yes")
        assert code == 0 and out == f"deleted 1 assets of session {store.id}\n"
        assert assets_in(emu.url) == {MINE}
    finally:
        emu.stop()


def test_assets_of_a_drive_job_is_one_clear_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    emu = emulator_with()
    try:
        store = make_session(tmp_path, emu.url, bbox="[0, 0, 0.5, 0.5]")
        code, out, err = run(capsys, "assets", "list", store.id)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
        assert 'not to EE assets (export.destination = "asset")' in err
    finally:
        emu.stop()
