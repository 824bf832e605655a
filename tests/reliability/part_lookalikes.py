"""Look-alikes: files named like a job's outputs that are not this run's exports, in, under and
beside the Drive export folder and in and beside the local output dir — stale outputs of an
earlier run, the user's own copies and near names, a trashed copy, a Google Doc, a shard name,
a stale output moved into the folder after the submit, and one exact name uploaded after EE
accepted the export, and a shard's name beside it (clashes no one can resolve by name:
reported, never guessed).

What must hold, read from the emulator's Drive and the disk: every one of those files is left
as it was (same id, bytes, title, folder, trash state; same bytes on disk), the clash is
reported and costs no second export once the user moves their file and retries, and every
output is what EE wrote (the harness's invariants).
"""

from __future__ import annotations

import hashlib
import io
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.connect import make_drive
from core.emulator.app import Emulator
from core.naming import file_prefix
from core.session import load_session_spec
from core.store import Store
from tests.emulator.drive_fixtures import make_folder
from tests.reliability._inputs import cli
from tests.reliability.common import Result
from tests.reliability.harness import (
    Ledger,
    check_finished_job,
    emulator,
    md5,
    new_session,
    rows,
    run_to_end,
    start_worker,
    state,
    use_home,
    wait_for,
)

PROJECT = "eebatch-demo"
TIMEOUT = 180.0
MONTHS = '\n[time]\nstart = 2023-06-01\nend = 2023-08-01\nstep = "1 month"\n'
GEOTIFF = b"II*\x00"  # a little-endian TIFF's first bytes: a stale output looks like one


@dataclass
class Mine:
    """A user's file in Drive as it was made: what must still be there."""

    id: str
    title: str
    where: str  # in / under / beside, for the evidence
    md5: str | None
    parents: tuple[str, ...]
    trashed: bool = False


class Planter:
    """Makes the user's files through pydrive2, as a user's script or the Drive UI would."""

    def __init__(self, url: str, rng: random.Random) -> None:
        self.drive = make_drive(url)
        self.rng = rng
        self.mine: list[Mine] = []

    def folder(self, title: str, parent: str | None = None) -> str:
        return str(make_folder(self.drive, title, parent)["id"])

    def file(self, title: str, parent: str | None, where: str, *, size: int = 3000,
             mime: str | None = None) -> Mine:
        meta: dict[str, Any] = {"title": title}
        if parent:
            meta["parents"] = [{"id": parent}]
        if mime:
            meta["mimeType"] = mime
        f = self.drive.CreateFile(meta)
        data = None
        if mime is None or not mime.startswith("application/vnd.google-apps."):
            data = GEOTIFF + self.rng.randbytes(size)
            f.content = io.BytesIO(data)
        f.Upload()
        digest = hashlib.md5(data, usedforsecurity=False).hexdigest() if data else None
        mine = Mine(f["id"], title, where, digest, (parent or "root",))
        self.mine.append(mine)
        return mine

    def trash(self, mine: Mine) -> None:
        self.drive.CreateFile({"id": mine.id}).Trash()
        mine.trashed = True

    def move(self, mine: Mine, parent: str) -> None:
        f = self.drive.CreateFile({"id": mine.id})
        f.FetchMetadata()
        f.Upload(param={"addParents": parent, "removeParents": ",".join(mine.parents)})
        mine.parents = (parent,)

    def remove(self, mine: Mine) -> None:
        """The user deletes their own file (after eebatch reported the clash)."""
        self.drive.CreateFile({"id": mine.id}).Delete()
        self.mine.remove(mine)


def _untouched(url: str, mine: list[Mine], root: str) -> list[str]:
    """Each of the user's Drive files as it was made (or moved, or trashed, by the user)."""
    files = {f["id"]: f for f in state(url)["drive"]["files"]}
    wrong = []
    for m in mine:
        there = files.get(m.id)
        if there is None:
            wrong.append(f"{m.where} {m.title}: deleted")
            continue
        parents = tuple(root if p == "root" else p for p in m.parents)
        if (there["title"] != m.title or (m.md5 and there["md5Checksum"] != m.md5)
                or tuple(there["parents"]) != parents or there["trashed"] != m.trashed):
            wrong.append(f"{m.where} {m.title}: now {there['title']!r} md5 "
                         f"{there['md5Checksum']} in {there['parents']} trashed "
                         f"{there['trashed']}")
    return wrong


def _plant_local(output_dir: Path, outputs: list[Path],
                 rng: random.Random) -> tuple[dict[Path, str], dict[Path, str]]:
    """The user's files on disk, and stale outputs at an output's own path (a run of the job
    made before): each with its MD5. `outputs` are where the job's files will land."""
    first = outputs[0].name
    period = outputs[0].parent.name
    names = {
        output_dir / "notes.txt": "in",
        output_dir / period / f"{first}.bak": "in",
        output_dir / period / first.replace(".tif", ".TIF"): "in",
        output_dir / period / f"{first}.aux.xml.bak": "in",
        output_dir / period / "keep" / first: "under",
        output_dir / "old-run" / period / first: "under",
        output_dir / first: "in (a run without period folders)",
        output_dir.parent / first: "beside",
        output_dir.parent / f"{output_dir.name}-copy" / period / first: "beside",
    }
    user: dict[Path, str] = {}
    for path in names:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(GEOTIFF + rng.randbytes(2000))
        user[path] = md5(path)
    stale: dict[Path, str] = {}
    for path in outputs[1:3]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(GEOTIFF + rng.randbytes(2500))
        stale[path] = md5(path)
    return user, stale


def run(quick: bool, seed: int, workdir: Path) -> Result:
    result = Result("lookalikes", "")
    use_home(workdir)
    rng = random.Random(seed)
    started = time.monotonic()
    # The full run adds a job whose exports come in shards (images over 256 pixels a side,
    # over the emulator's split size).
    rounds = [{}] if quick else [{}, {"file_split_bytes": 100_000}]
    total_mine = 0
    for n, config in enumerate(rounds):
        with emulator(seed=seed, **config) as (emu, ledger):
            round_result = Result("lookalikes", "")
            total_mine += _round(round_result, emu, ledger, rng, workdir / f"round{n}",
                                 sharded=bool(config))
        tag = "" if n == 0 else " (exports in shards)"
        for check in round_result.checks:
            result.check(check.name + tag, check.held, check.detail)
        for key, value in round_result.numbers.items():
            result.numbers[f"{key}_sharded" if n else key] = value
    result.tried = (f"{total_mine} look-alike files in, under and beside the export folder "
                    f"and the output dir, around {len(rounds)} job(s) of 16 units"
                    + (", one exported in shards" if not quick else ""))
    result.numbers["seconds"] = round(time.monotonic() - started, 1)
    return result


def _round(result: Result, emu: Emulator, ledger: Ledger, rng: random.Random, workdir: Path,
           sharded: bool) -> int:
    workdir.mkdir(parents=True)
    folder = "lookalike"
    session = new_session(workdir, emu.url, name="t", bbox="[0, 0, 2, 1]", max_tasks=16,
                          folder=folder, extra=MONTHS,  # 8 tiles x 2 months
                          scale=150 if sharded else 2000)
    store = Store(session.path)
    try:
        template = load_session_spec(store).export.prefix
    finally:
        store.close()
    period = {r["id"]: r["period"] for r in rows(session, "SELECT id, period FROM units")}
    units = sorted(period)
    title = {u: file_prefix(template, "t", u) + ".tif" for u in units}
    picked = rng.sample(units, 8)
    stale_u, near_u, doc_u, clash_u, shard_u, moved_u, trash_u, beside_u = picked
    shard = "-0000000000-0000000000.tif"

    plant = Planter(emu.url, rng)
    root = state(emu.url)["drive"]["rootFolderId"]
    # Before the run. An older folder of the same name inside an archive (EE writes to the
    # most recently modified folder of the name, so it is made first), then the export
    # folder itself, holding the rest.
    archive = plant.folder("archive")
    old = plant.folder(folder, archive)
    for u in rng.sample(units, 3):
        plant.file(title[u], old, "under (an older folder of the same name)")
    sibling = plant.folder(f"{folder}-old")
    plant.file(title[beside_u], sibling, "beside (a sibling folder)")
    plant.file(title[beside_u], None, "beside (the Drive root)")
    top = plant.folder(folder)
    sub = plant.folder("2022", top)
    plant.file(title[stale_u], sub, "under (a subfolder)")
    plant.file(title[stale_u], top, "in (a stale output of an earlier run)")
    plant.file(title[stale_u].replace(".tif", shard), top, "in (a stale shard)")
    for near in (".TIF", ".tif.bak", ".txt", " (1).tif", "-0000000000-00000.tif", ".tiff"):
        plant.file(title[near_u].replace(".tif", near), top, "in (a near name)")
    plant.trash(plant.file(title[trash_u], top, "in (trashed by the user)"))
    plant.file(title[doc_u], top, "in (a Google Doc of the same name)",
               mime="application/vnd.google-apps.document")
    stale_moved = plant.file(title[moved_u], sibling, "in (a stale output moved in later)")
    user_local, stale_local = _plant_local(
        session.output_dir, [session.output_dir / period[u] / title[u] for u in units], rng)
    if sharded:  # the outputs carry shard names: a file of the unsharded name is the user's
        user_local.update(stale_local)
        stale_local = {}

    # EE accepts every export, and runs none of them yet.
    emu.ee.model.set_slots(PROJECT, 0)
    worker = start_worker(session, workdir / "worker.log")
    accepted = wait_for(lambda: len(rows(
        session, "SELECT id FROM attempts WHERE ee_created IS NOT NULL")) == len(units),
        TIMEOUT, worker)
    result.check("every export accepted by EE", accepted)
    # After the submit: near names and a shard name uploaded, the stale output moved in, and
    # one exact name: the clash. (The export folder last: it stays the most recently
    # modified folder of its name, where EE writes.)
    plant.file(title[near_u].replace(".tif", ".TIF"), top, "in (a near name, after the submit)")
    plant.move(stale_moved, top)
    # Two clashes: the very name, and a shard's name beside the export's own file (or its
    # shards), both made after the export started.
    clashes = {clash_u: plant.file(title[clash_u], top, "in (the same name, after the submit)"),
               shard_u: plant.file(title[shard_u].replace(".tif", shard), top,
                                   "in (a shard's name, after the submit)")}
    emu.ee.model.set_slots(PROJECT, 4)
    try:
        code = worker.wait(timeout=TIMEOUT)
    except Exception:
        worker.kill()
        code = None

    failed = {r["id"]: r["error"] or "" for r in rows(
        session, "SELECT id, error FROM units WHERE state = 'failed'")}
    result.check("each clash is reported: its unit waits for the user, naming the files",
                 code == 1 and set(failed) == set(clashes) and all(
                     "name clash" in failed[u] and clashes[u].title in failed[u]
                     for u in clashes), f"exit {code}; failed: {failed}")
    result.check("every user file in Drive untouched while the job ran",
                 not (wrong := _untouched(emu.url, plant.mine, root)), "; ".join(wrong[:4]))

    # The user moves their files away and retries: EE's exports, still in Drive, are taken.
    for mine in clashes.values():
        plant.remove(mine)
    retried = cli(["retry", session.id, *clashes])
    result.check("retry of the clashed units is queued", retried.code == 0, retried.evidence())
    code = run_to_end(session, workdir / "worker.log", TIMEOUT)
    result.check("the job ends with every unit done (exit 0)", code == 0,
                 f"exit {code}: {(workdir / 'worker.log').read_text()[-300:]}")

    wrong = _untouched(emu.url, plant.mine, root)
    result.check(f"every user file in Drive untouched ({len(plant.mine)}: same id, bytes, "
                 "title, folder, trash state)", not wrong, "; ".join(wrong[:4]))
    changed = [f"{p}" for p, digest in user_local.items()
               if not p.exists() or md5(p) != digest]
    result.check(f"every user file on disk untouched ({len(user_local)})", not changed,
                 "; ".join(changed[:4]))
    finished = Result("lookalikes", "")
    check_finished_job(finished, emu.url, ledger, session)
    recorded = {Path(r["local_path"]).resolve() for r in rows(
        session, "SELECT local_path FROM files WHERE local_path IS NOT NULL")}
    for check in finished.checks:
        if check.name == "no output file the job did not record":
            # The harness counts every .tif: the user's own are checked above instead.
            stray = [p for p in session.output_dir.rglob("*.tif")
                     if p.resolve() not in recorded and p not in user_local]
            result.check(check.name + " (beside the user's own)", not stray,
                         "; ".join(str(p) for p in stray[:4]))
        else:
            result.check(check.name, check.held, check.detail)
    if stale_local:
        replaced = [p for p, digest in stale_local.items() if p.exists() and md5(p) != digest]
        result.check("a stale file at an output's own path holds the verified output now",
                     len(replaced) == len(stale_local) and all(p.resolve() in recorded
                                                              for p in replaced),
                     f"{len(replaced)} of {len(stale_local)} replaced")
    if sharded:
        result.check("the exports came in shards", finished.numbers.get("files", 0) > len(units),
                     f"{finished.numbers.get('files')} files of {len(units)} units")
    result.numbers.update({"drive_lookalikes": len(plant.mine) + len(clashes),
                           "files": finished.numbers.get("files", 0),
                           "local_lookalikes": len(user_local) + len(stale_local),
                           "ee_tasks": finished.numbers.get("ee_tasks", 0)})
    return len(plant.mine) + len(clashes) + len(user_local) + len(stale_local)

