"""How the dashboard names routes (core/routes.py): the job's route, read from the job file
the session was made from (what its worker runs), and a unit's route in words."""

from __future__ import annotations

import tomllib
from typing import Any

from core.recipes import RECIPES
from core.routes import BATCH, DIRECT, ROUTES

BATCH_TEXT = "batch (export via Drive)"
# What moved a unit from direct to batch (core/engine/direct.py logs it; the store finds it)
MOVED_SUFFIX = ": it goes by the batch route"


def job_route(job_text: str) -> str:
    """export.route of the session's job (batch for a file without it, or one not read)."""
    try:
        route = tomllib.loads(job_text).get("export", {}).get("route", BATCH)
    except (tomllib.TOMLDecodeError, AttributeError):
        return BATCH
    return route if route in ROUTES else BATCH


def direct_text(job_text: str) -> str:
    """The direct route of this job in words: EE's call that computes its units."""
    try:
        recipe: dict[str, Any] = tomllib.loads(job_text).get("recipe", {})
        kind = RECIPES[recipe["name"]].output(recipe)
    except Exception:  # a recipe the file does not name plainly: say it in general
        return "direct (computed by EE interactively, no Drive)"
    return "direct (computeFeatures)" if kind == "table" else "direct (computePixels)"


def unit_route_text(route: str, job_text: str) -> str:
    return direct_text(job_text) if route == DIRECT else BATCH_TEXT


def moved_text(message: str, unit: str, own: str) -> str:
    """', moved from direct: <why>' for a unit on batch that EE could not compute directly,
    from the event that moved it (`unit`: the unit itself, or the ancestor it was split
    from)."""
    why = message.removesuffix(MOVED_SUFFIX)
    return f", moved from direct{'' if unit == own else f' with {unit}'}: {why}"

