"""A job's own Earth Engine assets (`destination = "asset"`): list them, merge a table job's
parts into one asset, delete them. Only assets eebatch made are ever touched: the ones its
finished exports wrote (`asset_folder/PREFIX`, from the session's attempts) and the merged
asset it made itself. Whatever else is in the folder is left alone.

The merge is crash-safe the way every export is: its requestId is stored before it is sent, so
running it again adopts the same export. The parts are deleted only once the merged asset
exists, and only when the caller agrees (`confirm`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from core.backends.earthengine import EarthEngine
from core.naming import ee_safe, legacy_file_prefix
from core.spec import JobSpec
from core.states import EE_FAILED, EE_SUCCEEDED
from core.store import Store

MERGE_REQUEST = "merge_request_id"  # session setting: the merge export's requestId
MERGE_POLL = 5.0  # the most seconds between looks at the merge export (sooner at first)


class AssetsError(Exception):
    """Why the job's assets could not be merged or listed (one line)."""


@dataclass(frozen=True)
class JobAssets:
    parts: list[str]  # the assets the job's exports wrote, in unit order
    merged: str  # where the merged table goes (asset_folder/JOB_merged)
    present: set[str]  # which of those exist in EE now

    @property
    def parts_present(self) -> list[str]:
        return [a for a in self.parts if a in self.present]


def merged_id(spec: JobSpec) -> str:
    return f"{_folder(spec)}/{ee_safe(spec.name)}_merged"


def job_assets(store: Store, spec: JobSpec, ee: EarthEngine) -> JobAssets:
    """The assets this session made, and which of them EE still has."""
    folder = _folder(spec)
    parts: list[str] = []
    for unit, prefix in store.succeeded_prefixes():
        name = f"{folder}/{prefix or legacy_file_prefix(spec.export.prefix, spec.name, unit)}"
        if name not in parts:
            parts.append(name)
    listed = {_id(a) for a in ee.list_assets(folder)}
    merged = merged_id(spec)
    return JobAssets(parts, merged, {a for a in [*parts, merged] if _id(a) in listed})


def merge(store: Store, spec: JobSpec, ee: EarthEngine, *,
          progress: Callable[[str], None], confirm: Callable[[str], bool],
          timeout: float = 6 * 3600.0, stopped: Callable[[], bool] = lambda: False) -> str:
    """Merge the job's table parts into one asset, then (if `confirm` agrees) delete the
    parts. Returns what was done, in one line."""
    if spec.recipe is not None and _output(spec) != "table":
        raise AssetsError("only table outputs merge into one asset; image parts stay as they "
                          "are (mosaic them in EE with ee.ImageCollection(parts).mosaic())")
    assets = job_assets(store, spec, ee)
    if assets.merged not in assets.present:
        parts = assets.parts_present
        if not parts:
            raise AssetsError(f"no asset of session {store.id} is in {_folder(spec)}: nothing "
                              "to merge")
        missing = len(assets.parts) - len(parts)
        if missing:
            raise AssetsError(f"{missing} of the job's {len(assets.parts)} parts are gone from "
                              f"{_folder(spec)}; a merge without them would be incomplete")
        _run_merge(store, spec, ee, parts, assets.merged, progress, timeout, stopped)
        progress(f"merged {len(parts)} parts into {assets.merged}")
    leftover = assets.parts_present
    if not leftover:
        return f"{assets.merged} holds the job's table; no part is left"
    if not confirm(f"Delete the {len(leftover)} parts now that {assets.merged} holds them?"):
        return f"{assets.merged} holds the job's table; the {len(leftover)} parts are kept"
    for asset_id in leftover:
        ee.delete_asset(asset_id)
    return f"{assets.merged} holds the job's table; deleted its {len(leftover)} parts"


def remove(store: Store, spec: JobSpec, ee: EarthEngine, *,
           confirm: Callable[[str], bool]) -> str:
    """Delete the job's own assets (parts and merged table) after asking."""
    assets = job_assets(store, spec, ee)
    doomed = [a for a in [*assets.parts, assets.merged] if a in assets.present]
    if not doomed:
        return f"no asset of session {store.id} is left in {_folder(spec)}"
    if not confirm(f"Delete {len(doomed)} assets of session {store.id} from {_folder(spec)} "
                   "(nothing else in the folder is touched)?"):
        return "kept"
    for asset_id in doomed:
        ee.delete_asset(asset_id)
    return f"deleted {len(doomed)} assets of session {store.id}"


def _run_merge(store: Store, spec: JobSpec, ee: EarthEngine, parts: list[str], target: str,
               progress: Callable[[str], None], timeout: float,
               stopped: Callable[[], bool]) -> None:
    request_id = store.setting(MERGE_REQUEST)
    if not request_id:
        request_id = str(uuid.uuid4())
        with store.tx():  # stored before it is sent: a rerun adopts the same export
            store.set_setting(MERGE_REQUEST, request_id)
    name = ee.start_table_merge(
        request_id, parts, target, description=f"eebatch_{ee_safe(store.id)}_merge",
        workload_tag=spec.export.workload_tag)
    deadline = time.monotonic() + timeout
    looks = 0
    while True:
        op = ee.get_operation(name)
        if op is not None and op.state == EE_SUCCEEDED:
            return
        if op is None or op.state == EE_FAILED or not op.active:
            with store.tx():  # a rerun sends a new merge
                store.set_setting(MERGE_REQUEST, None)
            why = op.error if op is not None and op.error else "EE no longer knows it"
            raise AssetsError(f"the merge export failed: {why}")
        if stopped():
            raise AssetsError("stopped before the merge export finished; it goes on in EE, "
                              "and the next start (or `eebatch assets merge`) adopts it")
        if time.monotonic() > deadline:
            raise AssetsError(f"the merge export is still {op.state} after {timeout:.0f} s; "
                              "run the command again to keep waiting for it")
        progress(f"merging {len(parts)} parts into {target}: {op.state.lower()} "
                 f"{op.progress:.0%}")
        looks += 1
        time.sleep(min(MERGE_POLL, 0.25 * 2 ** looks))  # EE's pace: nothing to wake for


def _folder(spec: JobSpec) -> str:
    if spec.export.destination != "asset" or not spec.export.asset_folder:
        raise AssetsError(f"job {spec.name!r} exports to {spec.export.destination}, not to "
                          "EE assets (export.destination = \"asset\")")
    return spec.export.asset_folder.rstrip("/")


def _id(name: str) -> str:
    """An asset's id whichever way EE spells it: 'projects/p/assets/x' or 'users/u/x'."""
    return name.rstrip("/")


def _output(spec: JobSpec) -> str:
    from core.recipes import RECIPES

    assert spec.recipe is not None
    return RECIPES[spec.recipe.name].output(spec.recipe.params)
