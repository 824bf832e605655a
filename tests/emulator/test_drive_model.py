"""The emulator's Drive model on its own: no server, no HTTP, no client. Quota accounting,
trash, refusals with Google's reasons, and the folder rule Earth Engine exports follow."""

from __future__ import annotations

import ast
import hashlib
import inspect
from collections.abc import Callable
from pathlib import Path

import pytest

from core.emulator import drive_model, drive_types
from core.emulator.config import EmulatorConfig
from core.emulator.drive_model import DriveModel
from core.emulator.drive_port import DriveForExports
from core.emulator.drive_query import compile_query
from core.emulator.drive_types import (
    FOLDER_MIME,
    ROOT_ID,
    USER_EMAIL,
    FileInfo,
    Forbidden,
    InsufficientFilePermissions,
    InvalidValue,
    NotDownloadable,
    NotFound,
    Patch,
    StorageQuotaExceeded,
)

T0 = 1_790_000_000.0


@pytest.fixture
def make_model(tmp_path: Path) -> Callable[..., DriveModel]:
    """make(quota) → a fresh model under tmp_path, on a clock that stands still (the model
    still stamps every change a millisecond after the last)."""
    count = 0

    def make(quota: int | None = 1000) -> DriveModel:
        nonlocal count
        count += 1
        return DriveModel(
            EmulatorConfig(drive_quota=quota), tmp_path / f"drive{count}", now=lambda: T0
        )

    return make


@pytest.fixture
def model(make_model: Callable[..., DriveModel]) -> DriveModel:
    return make_model(1000)


def put(model: DriveModel, tmp_path: Path, parent: str, title: str, data: bytes) -> FileInfo:
    """A file as an export adds it (add_file: no quota check)."""
    src = tmp_path / f"src-{title}"
    src.write_bytes(data)
    return model.add_file(parent, title, src, "image/tiff")


def upload(model: DriveModel, tmp_path: Path, parent: str, title: str, data: bytes) -> FileInfo:
    """A file as a client uploads it (create_file: the quota is checked)."""
    src = tmp_path / f"up-{title}"
    src.write_bytes(data)
    return model.create_file(src, title, "application/octet-stream", [parent], Patch())


def folder(model: DriveModel, title: str, parent: str = "root") -> str:
    return model.insert(title, FOLDER_MIME, [parent], Patch()).id


def titles(infos: list[FileInfo]) -> list[str]:
    return sorted(i.title for i in infos)


# -- quota accounting ------------------------------------------------------------------------


def test_quota_counts_every_file_and_frees_on_delete(model, tmp_path):
    assert (model.quota, model.quota_used(), model.free_bytes()) == (1000, 0, 1000)
    exports = model.ensure_export_folder("exports")
    a = put(model, tmp_path, exports, "a.tif", b"a" * 300)
    b = upload(model, tmp_path, exports, "b.bin", b"b" * 200)
    assert (a.size, b.size) == (300, 200)
    assert a.md5 == hashlib.md5(b"a" * 300).hexdigest()
    assert model.quota_used() == 500 and model.free_bytes() == 500
    assert model.usage().used == 500 and model.usage().trash == 0
    assert model.state()["quota"] == {"total": 1000, "used": 500, "trash": 0}
    model.delete(a.id)
    assert model.quota_used() == 200 and model.free_bytes() == 800
    model.delete(exports)  # a folder goes with what is only inside it
    assert model.quota_used() == 0 and model.search()[0] == []


def test_replacing_content_counts_the_old_bytes_as_free(model, tmp_path):
    f = upload(model, tmp_path, "root", "f.bin", b"x" * 600)
    model.check_room(900, replacing=f.id)  # 600 of the 900 replace the old content
    with pytest.raises(StorageQuotaExceeded):
        model.check_room(900)
    src = tmp_path / "new"
    src.write_bytes(b"y" * 900)
    new = model.replace_content(f.id, src, "text/plain", Patch())
    assert (new.size, new.version, new.mime_type) == (900, 2, "text/plain")
    assert model.quota_used() == 900


def test_an_export_may_overfill_the_drive_and_free_bytes_stops_at_zero(model, tmp_path):
    # add_file is EE's: it checks free_bytes() first and never asks the model for room.
    put(model, tmp_path, ROOT_ID, "big.tif", b"z" * 1500)
    assert model.quota_used() == 1500 and model.free_bytes() == 0


def test_an_unlimited_drive_never_refuses(make_model, tmp_path):
    model = make_model(None)
    assert model.quota is None and model.free_bytes() is None
    model.check_room(10**15)
    upload(model, tmp_path, "root", "huge.bin", b"h" * 5000)
    assert model.quota_used() == 5000 and model.free_bytes() is None
    assert model.state()["quota"]["total"] is None


# -- a full Drive ----------------------------------------------------------------------------


def test_a_full_drive_refuses_a_file_with_storage_quota_exceeded(model, tmp_path):
    upload(model, tmp_path, "root", "fits.bin", b"a" * 600)
    src = tmp_path / "too-big"
    src.write_bytes(b"b" * 600)
    with pytest.raises(StorageQuotaExceeded) as exc:
        model.create_file(src, "too-big.bin", "application/octet-stream", ["root"], Patch())
    assert exc.value.reason == "storageQuotaExceeded"
    assert exc.value.message == "The user's Drive storage quota has been exceeded."
    assert exc.value.location is None
    assert src.exists()  # refused before it was taken in; the caller disposes of it
    assert titles(model.search()[0]) == ["fits.bin"] and model.quota_used() == 600
    with pytest.raises(StorageQuotaExceeded):
        model.check_room(401)
    model.check_room(400)  # exactly full is allowed


def test_trashed_files_still_take_quota_until_the_trash_is_emptied(model, tmp_path):
    old = upload(model, tmp_path, "root", "old.bin", b"o" * 700)
    model.set_trashed(old.id, True)
    assert model.usage().used == 700 and model.usage().trash == 700
    with pytest.raises(StorageQuotaExceeded):
        model.check_room(400)
    model.empty_trash()
    assert model.usage() == (0, 0, model.usage().change_id)
    model.check_room(1000)


# -- trash -----------------------------------------------------------------------------------


def test_trashing_a_folder_trashes_what_is_inside(model, tmp_path):
    outer = folder(model, "outer")
    inner = folder(model, "inner", outer)
    f = put(model, tmp_path, inner, "t.tif", b"t" * 10)
    trashed = model.set_trashed(outer, True)
    assert trashed.trashed and trashed.explicitly_trashed and trashed.version == 2
    got = model.get(f.id)
    assert got.trashed and not got.explicitly_trashed  # by its ancestor
    assert model.usage().trash == 10
    not_trashed = compile_query("trashed = false", {"root": ROOT_ID, "me": USER_EMAIL})
    assert model.search(not_trashed)[0] == []
    model.set_trashed(outer, False)
    assert not model.get(f.id).trashed
    assert titles(model.search(not_trashed)[0]) == ["inner", "outer", "t.tif"]


def test_emptying_the_trash_deletes_trashed_trees_for_good(model, tmp_path):
    gone = folder(model, "gone")
    put(model, tmp_path, gone, "in-gone.tif", b"g" * 5)
    kept = put(model, tmp_path, ROOT_ID, "kept.tif", b"k" * 7)
    model.set_trashed(gone, True)
    model.empty_trash()
    assert titles(model.search()[0]) == ["kept.tif"]
    assert model.quota_used() == 7
    with pytest.raises(NotFound):
        model.get(gone)
    assert model.get(kept.id).title == "kept.tif"


def test_the_root_cannot_be_trashed_deleted_or_modified(model):
    with pytest.raises(InsufficientFilePermissions) as trash:
        model.set_trashed("root", True)
    assert (trash.value.reason, trash.value.message) == (
        "insufficientFilePermissions",
        "The root folder cannot be trashed.",
    )
    with pytest.raises(InsufficientFilePermissions) as delete:
        model.delete(ROOT_ID)
    assert delete.value.message == "The root folder cannot be deleted."
    with pytest.raises(Forbidden) as update:
        model.update("root", Patch(title="Mine"))
    assert (update.value.reason, update.value.message) == (
        "forbidden",
        "The root folder cannot be modified.",
    )
    assert model.get("root").is_root and model.get("root").title == "My Drive"


# -- folder lookup -------------------------------------------------------------------------


def test_ensure_export_folder_follows_the_ee_rule(model, tmp_path):
    assert model.ensure_export_folder("") == ROOT_ID  # no folder: the Drive root
    created = model.ensure_export_folder("exports")  # none yet: a new one at the root
    info = model.get(created)
    assert info.folder and info.parents == (ROOT_ID,) and info.title == "exports"
    assert model.ensure_export_folder("exports") == created
    # Duplicates: the most recently modified wins; adding a file modifies a folder.
    nested = folder(model, "exports", folder(model, "deep"))
    assert model.ensure_export_folder("exports") == nested
    put(model, tmp_path, created, "t.tif", b"tile")
    assert model.ensure_export_folder("exports") == created
    # Trashed folders do not count.
    model.set_trashed(created, True)
    assert model.ensure_export_folder("exports") == nested
    # A separator is part of the title, not a path.
    ab = model.ensure_export_folder("a/b")
    assert model.get(ab).title == "a/b" and model.get(ab).parents == (ROOT_ID,)
    assert [f.id for f in model.find_folders("exports")] == [nested]


def test_find_folders_skips_files_and_trashed_folders(model, tmp_path):
    top = folder(model, "out")
    put(model, tmp_path, top, "out", b"a file titled like the folder")
    other = folder(model, "out", folder(model, "archive"))
    assert sorted(f.id for f in model.find_folders("out")) == sorted([top, other])
    model.set_trashed(top, True)
    assert [f.id for f in model.find_folders("out")] == [other]
    assert model.find_folders("never") == []


def test_parents_are_checked_in_order(model, tmp_path):
    f = put(model, tmp_path, ROOT_ID, "f.tif", b"f")
    sub = folder(model, "sub")
    assert model.resolve_parents([]) == [ROOT_ID]
    assert model.resolve_parents(["root", sub, ROOT_ID, sub]) == [ROOT_ID, sub]
    with pytest.raises(InvalidValue) as empty:
        model.resolve_parents([sub, ""])
    assert (empty.value.message, empty.value.location) == ("Invalid Value", "parents.id")
    with pytest.raises(NotFound) as missing:
        model.resolve_parents(["nope", ""])  # the first bad one is reported
    assert (missing.value.message, missing.value.location) == ("File not found: nope.", "fileId")
    with pytest.raises(NotFound):
        model.resolve_parents([f.id])  # a file is no folder


# -- refusals and updates ------------------------------------------------------------------


def test_an_unknown_file_is_not_found_with_googles_reason(model, tmp_path):
    with pytest.raises(NotFound) as exc:
        model.get("no-such-id")
    assert (exc.value.reason, exc.value.message, exc.value.location) == (
        "notFound",
        "File not found: no-such-id.",
        "fileId",
    )
    with pytest.raises(KeyError):  # EE's add_file: a programming error, not a Drive answer
        model.add_file("no-such-folder", "x", tmp_path / "missing", "image/tiff")


def test_only_files_with_content_open(model, tmp_path):
    f = put(model, tmp_path, ROOT_ID, "f.tif", b"bytes")
    info, fh = model.open_content(f.id)
    model.delete(f.id)  # the open handle outlives the delete
    with fh:
        assert fh.read() == b"bytes" and info.size == 5
    with pytest.raises(NotDownloadable) as exc:
        model.open_content(folder(model, "dir"))
    assert (exc.value.reason, exc.value.location) == ("fileNotDownloadable", "alt")


def test_a_folder_cannot_move_into_itself(model):
    outer = folder(model, "outer")
    inner = folder(model, "inner", outer)
    with pytest.raises(InvalidValue) as exc:
        model.update(outer, Patch(title="renamed", add_parents=[inner]))
    assert exc.value.message == "A folder cannot contain itself." and exc.value.location is None
    # As Drive's patch: what came before the refusal stays applied.
    assert model.get(outer).title == "renamed" and model.get(outer).parents == (ROOT_ID,)


def test_update_applies_a_patch(model):
    a, b = folder(model, "a"), folder(model, "b")
    doc = model.insert("doc", "text/plain", [a], Patch(description="d"))
    assert (doc.version, doc.description, doc.md5) == (1, "d", hashlib.md5(b"").hexdigest())
    moved = model.update(
        doc.id,
        Patch(
            starred=True,
            add_parents=[b],
            remove_parents=[a],
            modified_date="2020-01-02T03:04:05.678Z",
        ),
    )
    assert moved.parents == (b,) and moved.starred and moved.version == 2
    assert moved.modified == 1577934245.678 and moved.description == "d"
    with pytest.raises(InvalidValue) as exc:
        model.update(doc.id, Patch(modified_date="yesterday"))
    assert exc.value.location == "modifiedDate"


# -- what the model is not -------------------------------------------------------------------


@pytest.mark.parametrize("module", [drive_model, drive_types])
def test_the_model_imports_no_http(module):
    tree = ast.parse(Path(inspect.getfile(module)).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    http_side = {
        "core.emulator.http",
        "core.emulator.drive",
        "core.emulator.drive_json",
        "core.emulator.drive_uploads",
    }
    assert imported & http_side == set()
    assert not any(m.startswith(("http", "urllib")) for m in imported)


def test_the_model_serves_the_protocol_ee_holds():
    wanted = {n for n in vars(DriveForExports) if not n.startswith("_")}
    assert wanted == {"free_bytes", "ensure_export_folder", "add_file"}
    for name in wanted:
        ours = inspect.signature(getattr(DriveModel, name))
        theirs = inspect.signature(getattr(DriveForExports, name))
        assert list(ours.parameters) == list(theirs.parameters), name
