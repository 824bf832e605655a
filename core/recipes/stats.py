"""The stats recipe: statistics (mean, stdDev, min, max, median, count, sum, percentiles) of a
composite-style image's bands and indices over each unit's tile, or over zones from a local
vector file split by the grid, exported as a table.

Zones: each unit gets the zones that share area with its tile, each cut to the tile; a zone in
two tiles gives a row in each, with its zone id and the tile, so the job's merged table can be
recombined per zone (min and max directly, mean and stdDev weighted by `count`; medians and
percentiles of parts do not recombine exactly). One `image.reduceRegions(zones, reducer,
scale)` per unit, the statistics one reducer (`combine(..., sharedInputs=True)`), so EE reads
each pixel once. Every row also holds its tile and its period's start and end.

Columns are `{band}_{statistic}` whatever the number of bands (EE names reduceRegions outputs
by statistic for one band, by band for one statistic, `band_statistic` otherwise: the recipe
renames so the names never depend on that).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from core.recipes import _image, _vector
from core.recipes.base import Output, Param, Recipe, RecipeError, UnitWork

SIMPLE = ("mean", "stdDev", "min", "max", "median", "count", "sum")
_PERCENTILE = re.compile(r"^p(\d{1,2}|100)\Z")
ZONE_KINDS = ("Polygon", "MultiPolygon")


def _statistics(value: Any) -> str | None:
    if not value:
        return "must name at least one statistic"
    bad = [v for v in value if not isinstance(v, str)
           or (v not in SIMPLE and not _PERCENTILE.match(v))]
    if bad:
        return (f"unknown statistic {bad[0]!r}; known: {', '.join(SIMPLE)}, and percentiles "
                "p0 to p100 (e.g. p10, p90)")
    if len(set(value)) != len(value):
        return "names a statistic twice"
    return None


def outputs(statistics: list[str]) -> list[str]:
    """The statistics in the order the combined reducer gives them: the simple ones as
    listed, then the percentiles (one percentile reducer) in increasing order."""
    simple = [s for s in statistics if s in SIMPLE]
    percentiles = sorted((s for s in statistics if s not in SIMPLE), key=lambda s: int(s[1:]))
    return simple + percentiles


class Stats(Recipe):
    name = "stats"
    help = ("statistics (mean, stdDev, …, percentiles) of bands or indices over each tile or "
            "zones, as a table")
    count_batches = True  # its image is cut to the unit's batch (_image.composite_image)
    parameters = (
        Param("statistics", list, ["mean", "stdDev"],
              "mean, stdDev, min, max, median, count, sum, p0-p100", _statistics),
        Param("zones_file", str, "",
              "GeoJSON, GeoPackage or Shapefile of zones; a row per zone part per tile "
              "(recombine by zone_id, weighting by count); without it a row per tile"),
        Param("zones_layer", str, "", "the layer of a multi-layer zones file (GeoPackage)"),
        Param("zone_id", str, "", "the zones file's column identifying each zone (required "
                                  "with zones_file)"),
        _image.scale_parameter("metres per pixel the statistics are computed at"),
        *_image.image_parameters(bands=[], indices=["NDVI"]),
    )

    def output(self, params: dict[str, Any]) -> Output:
        return "table"

    def bands(self, params: dict[str, Any]) -> list[tuple[str, int]]:
        return []  # a table: a row per zone part, not a value per pixel

    def validate(self, raw: dict[str, Any],
                 job_dir: Path | None = None) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        params, problems = super().validate(raw)
        problems += _image.image_problems(params)
        if params["zones_file"]:
            problems += _zone_problems(params, job_dir)
        else:
            problems += [(key, "only applies with zones_file") for key in
                         ("zones_layer", "zone_id") if params[key]]
        return params, problems

    def build(self, params: dict[str, Any], geometry: Any, unit: UnitWork,
              job_dir: Path) -> Any:
        import ee

        p = params
        names = _image.band_names(p)
        image = _image.composite_image(p, geometry, unit.start, unit.end, unit.batch)
        unit_props = _vector.unit_properties(unit)
        if p["zones_file"]:
            zones = _zones(p, job_dir)
            crs = _vector.grid_crs(geometry)
            collection = _vector.ee_collection([
                (part, {p["zone_id"]: zones.properties[i][p["zone_id"]], **unit_props})
                for i, part in _vector.zone_parts(zones, unit.bounds, crs)])
        else:  # the tile clipped to the region: a tile at its edge reaches beyond it
            part = None if unit.region is None else _vector.region_part(
                unit.region, unit.bounds, _vector.grid_crs(geometry))
            collection = _vector.ee_collection([(part, unit_props)]) if part is not None \
                else ee.FeatureCollection([ee.Feature(geometry, unit_props)])
        reducer, image = _reducer(p["statistics"], image, names)
        return image.reduceRegions(collection=collection, reducer=reducer, scale=p["scale"])


def columns(params: dict[str, Any]) -> list[str]:
    """The table's columns beside EE's system:index and .geo: the zone id (with zones), the
    tile, the period's start and end, then `{band}_{statistic}`."""
    zone = [params["zone_id"]] if params["zones_file"] else []
    stats = [f"{band}_{stat}" for band in _image.band_names(params)
             for stat in outputs(params["statistics"])]
    return [*zone, *_vector.UNIT_COLUMNS, *stats]


def _zone_problems(params: dict[str, Any], job_dir: Path | None) -> list[tuple[str, str]]:
    zone_id = params["zone_id"]
    path = _vector.resolve(job_dir, params["zones_file"])
    if path is None:  # relative, and the job file's folder not known: checked at build
        return [] if zone_id else [("zone_id", "is required with zones_file")]
    try:
        zones = _vector.read_features(path, params["zones_file"], params["zones_layer"])
    except _vector.VectorError as exc:
        return [("zones_file", str(exc))]
    problems = []
    kinds = _vector.check_kinds(zones, ZONE_KINDS, "zones")
    if kinds:
        problems.append(("zones_file", kinds))
    if not zone_id:
        problems.append(("zone_id", f"is required with zones_file (a column of "
                                    f"{params['zones_file']!r}: "
                                    f"{', '.join(zones.columns) or 'it has none'})"))
    elif zone_id not in zones.columns:
        problems.append(("zone_id", f"{zone_id!r} is not a column of "
                                    f"{params['zones_file']!r} (its columns: "
                                    f"{', '.join(zones.columns) or 'none'})"))
    elif zone_id in columns(params)[1:]:
        problems.append(("zone_id", f"{zone_id!r} is a column the recipe writes itself"))
    else:
        missing = [i for i, row in enumerate(zones.properties) if row[zone_id] is None]
        if missing:
            problems.append(("zone_id", f"feature {missing[0] + 1} of "
                                        f"{params['zones_file']!r} has no {zone_id!r}"))
    return problems


def _zones(params: dict[str, Any], job_dir: Path) -> _vector.Features:
    problems = _zone_problems(params, job_dir)
    if problems:
        raise RecipeError("; ".join(f"recipe.{key}: {problem}" for key, problem in problems))
    path = _vector.resolve(job_dir, params["zones_file"])
    assert path is not None
    return _vector.read_features(path, params["zones_file"], params["zones_layer"])


def _reducer(statistics: list[str], image: Any, names: list[str]) -> tuple[Any, Any]:
    """(the combined reducer, the image to reduce) whose outputs are `{band}_{statistic}`."""
    import ee

    made = {"mean": ee.Reducer.mean, "stdDev": ee.Reducer.stdDev, "min": ee.Reducer.min,
            "max": ee.Reducer.max, "median": ee.Reducer.median, "count": ee.Reducer.count,
            "sum": ee.Reducer.sum}
    order = outputs(statistics)
    reducers = [made[s]() for s in order if s in SIMPLE]
    percentiles = [int(s[1:]) for s in order if s not in SIMPLE]
    if percentiles:
        reducers.append(ee.Reducer.percentile(percentiles))
    reducer = reducers[0]
    for other in reducers[1:]:
        reducer = reducer.combine(other, sharedInputs=True)
    if len(names) == 1:  # EE names the properties by the reducer's outputs
        return reducer.setOutputs([f"{names[0]}_{s}" for s in order]), image
    if len(order) == 1:  # EE names them by the bands
        return reducer, image.rename([f"{band}_{order[0]}" for band in names])
    return reducer, image  # EE names them band_output


RECIPE = Stats()
