"""Create a session from a job file: validate, plan, store. Shared by the CLI and the TUI.

Two sessions of one job never write the same files: a session created while another session of
the same job is unfinished writes into its own subfolder of output_dir and its own Drive folder
(`own_outputs`), so both can run, now or later, without taking or deleting each other's files.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from filelock import FileLock

from core import paths
from core.limits import LiveLimits
from core.plan import Plan, make_plan
from core.routes import starting_route
from core.spec import JobSpec, load_spec, parse_spec
from core.store import SessionInfo, Store, UnitLayout, UnitSlices

# Setting: this session's files go to output_dir/SESSION/ and Drive folder FOLDER_SESSION.
OWN_OUTPUTS = "own_outputs"


def unfinished_sessions(spec: JobSpec) -> list[SessionInfo]:
    """Sessions of this job (the same job file, or the same job name) with units not done yet,
    oldest first. A session that ended with failed or cancelled units is unfinished too: a
    retry finishes it, where a fresh session would export everything again."""
    job_path = spec.path.resolve()
    return [s for s in Store.list_sessions()
            if (s.job_path == job_path or s.name == spec.name) and s.done < s.total]


def create_session(job_path: Path, spec: JobSpec | None = None) -> tuple[Store, Plan]:
    """Raise SpecError (nothing written) or return the new session and its plan."""
    spec = spec or load_spec(job_path)
    plan = make_plan(spec)
    # Limits the worker reads live from the store, so a UI can change them while it runs.
    settings = LiveLimits.initial_settings(spec.limits)
    # One `new` of a job at a time: two at once both found no unfinished session and wrote
    # into the same output dir and Drive folder (reliability suite, concurrency part).
    with FileLock(paths.locks_dir() / f"new-{spec.name}.lock"):
        if unfinished_sessions(spec):
            settings[OWN_OUTPUTS] = True
        rows, cols, columns = plan.layout()
        store = Store.create(spec.name, job_path.resolve(), spec.text,
                             UnitSlices(plan.slice_rows()), settings,
                             UnitLayout(rows, cols, columns), starting_route(spec))
    return store, plan


def load_session_spec(store: Store) -> JobSpec:
    """The job as it was when the session was created (the file may have changed since), with
    its own output subfolder and Drive folder when it was created beside an unfinished session
    of the same job."""
    spec = parse_spec(store.job_text, store.job_path)
    if not store.setting(OWN_OUTPUTS):
        return spec
    export = dataclasses.replace(spec.export, folder=f"{spec.export.folder}_{store.id}")
    return dataclasses.replace(spec, output_dir=spec.output_dir / store.id, export=export)
