"""A job's plan as text: what `eebatch plan` prints and the job form previews."""

from __future__ import annotations

import humanize

from core.plan import Plan, preview


def size_text(n: float) -> str:
    return humanize.naturalsize(n, binary=False, format="%.1f")


def describe_plan(plan: Plan) -> list[str]:
    spec = plan.spec
    unit = "°" if plan.tiles.frame.geographic else " m"
    first, last = plan.periods[0], plan.periods[-1]
    when = ("all dates" if first.start is None else
            f"{first.start} to {last.end} (end exclusive)")
    bands = len(plan.spec.recipe.params.get("bands", [])) + len(
        plan.spec.recipe.params.get("indices", [])) if spec.recipe.name == "composite" else \
        spec.recipe.params["bands"]
    lines = [
        f"Job      {spec.name}  ({spec.path})",
        f"Region   {spec.region_source}",
        f"Grid     {plan.tiles.frame.size:g}{unit} tiles on {spec.grid.crs}"
        f"{' aligned to the pixel grid' if spec.grid.align else ''}: {len(plan.tiles):,} tiles",
        f"Periods  {len(plan.periods):,}  {when}",
        f"Units    {plan.units:,}  ({len(plan.tiles):,} tiles x {len(plan.periods):,} periods)",
        f"Pixels   {humanize.intword(plan.pixels)} at {spec.export.scale:g} m",
        f"Output   ~{size_text(plan.est_bytes)} estimated ({spec.export.file_format},"
        f" {bands} bands, recipe {spec.recipe.name})",
        f"Drive    {plan.budgets:.2f} x the {size_text(spec.limits.drive_budget)} budget"
        f" (files are deleted from Drive as soon as they are downloaded)",
        f"Limits   {spec.limits.max_tasks} tasks at once, {spec.limits.max_attempts} attempts,"
        f" split depth {spec.limits.split_depth}",
        "",
    ]
    return lines + ["  " + line for line in preview(plan)]
