"""A job's plan as text: what `eebatch plan` prints and the job form previews."""

from __future__ import annotations

import humanize
import numpy as np

from core.plan import BATCH_MODEL, Plan, plan_warnings, preview
from core.recipes import RECIPES
from core.region import extent_text
from core.routes import (
    AUTO,
    BATCH,
    DIRECT,
    chunk_side,
    direct_refusal,
    direct_seconds,
    starting_route,
)


def size_text(n: float) -> str:
    return humanize.naturalsize(n, binary=False, format="%.1f")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'s' * (n != 1)}"


def ee_text(plan: Plan) -> str:
    """EE tasks and time, with the assumptions the time rests on."""
    slots = plan.slots
    at = (f"{slots} tasks at a time (a new project's default)" if slots == BATCH_MODEL.slots else
          f"{slots} task{'s' if slots > 1 else ''} at a time (limits.max_tasks)")
    return (f"{plan.units:,} tasks, ~{humanize.naturaldelta(plan.ee_seconds)} at {at}, assuming "
            f"{BATCH_MODEL.task_overhead_seconds:g} s a task + "
            f"{humanize.intcomma(int(BATCH_MODEL.pixel_rate))} pixel-bands a second "
            "(the emulator's batch model)")


def _slices(plan: Plan) -> str:
    """"12 periods", "12 periods x 4 batches", or "53 batches over 12 periods" when the
    periods hold different numbers of batches (by date)."""
    periods = _count(len(plan.periods), "period")
    counts = plan.batches
    if not counts:
        return periods
    if len(set(counts)) == 1:
        return f"{periods} x {counts[0]:,} batch{'es' * (counts[0] != 1)}"
    return f"{sum(counts):,} batches over {periods}"


def batches_lines(plan: Plan) -> list[str]:
    """The [batches] line: how many a period, and what a batch is."""
    batches, counts = plan.spec.batches, plan.batches
    if batches is None:
        return []
    low, high = min(counts), max(counts)
    many = f"{low:,}" if low == high else f"{low:,}-{high:,}"
    given = f" ({batches.images:,} images given)" if batches.images else ""
    return [f"Batches  {many} a period: {batches}{given}"]


def describe_plan(plan: Plan) -> list[str]:
    """The plan's summary, its warnings ("warning: key: …"), a blank line, and the map."""
    spec = plan.spec
    unit = "°" if plan.tiles.frame.geographic else " m"
    first, last = plan.periods[0], plan.periods[-1]
    when = ("all dates" if first.start is None else
            f"{first.start} to {last.end} (end exclusive)")
    limits = spec.limits
    recipe = RECIPES[spec.recipe.name]
    settings = recipe.settings(spec.recipe.params)
    lines = [
        f"Job      {spec.name}  ({spec.path})",
        f"Region   {spec.region_source}",
        f"Extent   {extent_text(spec.region.bounds)}",
        f"Grid     {plan.tiles.frame.size:g}{unit} tiles on {spec.grid.crs}"
        f"{' aligned to the pixel grid' if spec.grid.align else ''}: {len(plan.tiles):,} tiles",
        f"Periods  {len(plan.periods):,}  {when}",
        *batches_lines(plan),
        f"Units    {plan.units:,}  ({_count(len(plan.tiles), 'tile')} x {_slices(plan)})",
        _pixels_line(plan),
        f"Recipe   {recipe.name}: {recipe.help}",
        *(["         " + ", ".join(settings)] if settings else []),
        *([f"Model    {model}"] if (model := recipe.model_summary(spec.recipe.params)) else []),
        _output_line(plan),
        *_ee_and_drive_lines(plan),
        f"Limits   {limits.max_tasks} tasks at once, {limits.max_attempts} attempts,"
        f" split depth {limits.split_depth}",
        *plan_warnings(plan),
        "",
    ]
    return lines + ["  " + line for line in preview(plan)]


def _ee_and_drive_lines(plan: Plan) -> list[str]:
    """EE's batch work, the route, and Drive: on the direct route there is no batch task and
    no Drive (auto keeps both: what EE cannot compute interactively goes batch)."""
    if starting_route(plan.spec)[0] == DIRECT:
        return ["EE       no batch task: every unit is computed interactively",
                *route_lines(plan),
                "Drive    not used: the direct route writes each file into output_dir"]
    return [f"EE       {ee_text(plan)}", *route_lines(plan), _drive_line(plan)]


def route_lines(plan: Plan) -> list[str]:
    """The Route line when the job asks for more than the batch route (core/routes.py): how
    many units go direct, in how many requests, and what the emulator's model says of their
    time."""
    spec = plan.spec
    asked = spec.export.route
    if asked == BATCH:
        return []
    route, max_pixels = starting_route(spec)
    if route == BATCH:
        return [f"Route    {asked}: every unit by batch: the direct route cannot serve this "
                f"job ({direct_refusal(spec)})"]
    at = f"{spec.limits.direct_requests} at a time (limits.direct_requests)"
    if _table(plan):
        return [f"Route    {asked}: every unit's table by computeFeatures, {at}, no EE task and "
                "no Drive" + ("; one EE cannot answer in 5 minutes goes batch"
                              if asked == AUTO else "")]
    side = chunk_side(spec)
    pixels = plan.tile_pixels
    direct = pixels <= max_pixels if max_pixels is not None else np.ones(len(pixels), bool)
    n = int(direct.sum()) * len(plan.slices)
    requests = int(np.ceil(pixels[direct] / side**2).sum()) * len(plan.slices)
    seconds = direct_seconds(int(pixels[direct].sum()) * len(plan.slices) * plan.bands,
                             requests, spec.limits.direct_requests)
    line = (f"Route    {asked}: {n:,} units by computePixels, ~{requests:,} requests of up to "
            f"{side:,}² pixels, {at}: ~{humanize.naturaldelta(seconds)} (the emulator's "
            "direct model), no EE task and no Drive")
    if asked == AUTO:
        bigger = f"{plan.units - n:,} bigger units by batch, and " if plan.units > n else ""
        line += f"; {bigger}any unit EE cannot compute interactively goes batch"
    return [line]


def _pixels_line(plan: Plan) -> str:
    """The pixels the units read: at the export's scale, or for a table recipe that reduces
    or samples at a scale of its own (stats, sample), at that one."""
    spec = plan.spec
    scale, pixels = spec.export.scale, plan.pixels
    own = spec.recipe.params.get("scale")
    if _table(plan) and isinstance(own, int | float) and own > 0:
        pixels, scale = int(pixels * (scale / own) ** 2), own
        return f"Pixels   {humanize.intword(pixels)} read at {scale:g} m (the recipe's scale)"
    return f"Pixels   {humanize.intword(pixels)} at {scale:g} m"


def _output_line(plan: Plan) -> str:
    """What the units export: an image's estimated size, or for a table recipe what its rows
    are (a table's size is not known before the first ones arrive; they are small)."""
    spec = plan.spec
    if _table(plan):
        fmt = spec.export.file_format if spec.export.file_format.upper() != "GEOTIFF" else "CSV"
        merged = {"drive": "merged at the end into table.csv and table.parquet",
                  "asset": "`eebatch assets merge` joins them into one asset"}.get(
                      spec.export.destination, "left where they are written")
        return (f"Output   a table ({fmt}) per unit, {merged}; their sizes are learned as "
                "they arrive")
    return (f"Output   ~{size_text(plan.est_bytes)} estimated ({spec.export.file_format},"
            f" {_count(plan.bands, 'band')})")


def _drive_line(plan: Plan) -> str:
    limits = plan.spec.limits
    if plan.spec.export.destination != "drive":
        return f"Drive    not used: the exports go to {plan.spec.export.destination}"
    if _table(plan):
        return ("Drive    a table a unit, deleted from Drive as soon as it is downloaded "
                f"(within the {size_text(limits.drive_budget)} budget)")
    return (f"Drive    peak ~{size_text(plan.drive_peak)} (the {limits.max_tasks} largest "
            f"exports at once, within the {size_text(limits.drive_budget)} budget): files are "
            "deleted from Drive as soon as they are downloaded")


def _table(plan: Plan) -> bool:
    recipe = plan.spec.recipe
    return RECIPES[recipe.name].output(recipe.params) == "table"
