"""Create a session from a job file: validate, plan, store. Shared by the CLI and the TUI."""

from __future__ import annotations

from pathlib import Path

from core.plan import Plan, make_plan
from core.spec import JobSpec, load_spec
from core.store import Store


def initial_settings(spec: JobSpec) -> dict[str, object]:
    """Limits the worker reads live from the store, so a UI can change them while it runs."""
    return {"max_tasks": spec.limits.max_tasks, "drive_budget": spec.limits.drive_budget,
            "paused": False}


def create_session(job_path: Path) -> tuple[Store, Plan]:
    """Raise SpecError (nothing written) or return the new session and its plan."""
    spec = load_spec(job_path)
    plan = make_plan(spec)
    store = Store.create(spec.name, job_path.resolve(), spec.text, plan.unit_rows(),
                         initial_settings(spec))
    return store, plan
