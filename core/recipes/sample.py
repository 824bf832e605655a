"""The sample recipe: a composite-style image's values at points from a local vector file, the
points split by the tile they fall in, exported as a table.

Each unit sends EE only its tile's points, half-open: a point on a tile's west or south edge is
that tile's, one on its east or north edge the next tile's, so every point of the grid is
sampled once per period (points outside every planned tile are not sampled). One
`image.sampleRegions(points, properties, scale, geometries=True)` per unit: each row keeps its
point's own properties and geometry, plus its tile and its period's start and end. A point
where the image has no data (masked: no image of the period there) gives no row, as in EE.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.recipes import _image, _vector
from core.recipes.base import Output, Param, Recipe, RecipeError, UnitWork


def _names(value: Any) -> str | None:
    if not all(isinstance(v, str) and v for v in value):
        return "must be a list of column names"
    return "names a column twice" if len(set(value)) != len(value) else None


class Sample(Recipe):
    name = "sample"
    help = "an image's values at points from a local file, split by tile, as a table"
    count_batches = True  # its image is cut to the unit's batch (_image.composite_image)
    parameters = (
        Param("points_file", str, None, "GeoJSON, GeoPackage or Shapefile of points",
              required=True),
        Param("points_layer", str, "", "the layer of a multi-layer points file (GeoPackage)"),
        Param("properties", list, [], "the points' columns to keep in each row ([]: all)",
              _names),
        _image.scale_parameter("metres per pixel the image is sampled at"),
        *_image.image_parameters(bands=["SR_B2", "SR_B3", "SR_B4", "SR_B5"],
                                 indices=["NDVI"]),
    )

    def output(self, params: dict[str, Any]) -> Output:
        return "table"

    def bands(self, params: dict[str, Any]) -> list[tuple[str, int]]:
        return []  # a table: a row per point

    def validate(self, raw: dict[str, Any],
                 job_dir: Path | None = None) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        params, problems = super().validate(raw)
        problems += _image.image_problems(params)
        if params["points_file"] is not None:
            problems += _point_problems(params, job_dir)
        return params, problems

    def build(self, params: dict[str, Any], geometry: Any, unit: UnitWork,
              job_dir: Path) -> Any:
        p = params
        problems = _point_problems(p, job_dir)
        if problems:
            raise RecipeError("; ".join(f"recipe.{k}: {m}" for k, m in problems))
        path = _vector.resolve(job_dir, p["points_file"])
        assert path is not None
        points = _vector.read_features(path, p["points_file"], p["points_layer"])
        keep = p["properties"] or list(points.columns)
        unit_props = _vector.unit_properties(unit)
        crs = _vector.grid_crs(geometry)
        collection = _vector.ee_collection([
            (points.geometries[i], {**{c: points.properties[i][c] for c in keep}, **unit_props})
            for i in _vector.points_in_tile(points, unit.bounds, crs)])
        image = _image.composite_image(p, geometry, unit.start, unit.end, unit.batch)
        return image.sampleRegions(collection=collection,
                                   properties=[*keep, *_vector.UNIT_COLUMNS],
                                   scale=p["scale"], geometries=True)


def _point_problems(params: dict[str, Any], job_dir: Path | None) -> list[tuple[str, str]]:
    path = _vector.resolve(job_dir, params["points_file"])
    if path is None:  # relative, and the job file's folder not known: checked at build
        return []
    try:
        points = _vector.read_features(path, params["points_file"], params["points_layer"])
    except _vector.VectorError as exc:
        return [("points_file", str(exc))]
    problems = []
    kinds = _vector.check_kinds(points, ("Point",), "points")
    if kinds:
        problems.append(("points_file", kinds))
    unknown = [c for c in params["properties"] if c not in points.columns]
    if unknown:
        problems.append(("properties", f"{unknown[0]!r} is not a column of "
                                       f"{params['points_file']!r} (its columns: "
                                       f"{', '.join(points.columns) or 'none'})"))
    taken = [*_vector.UNIT_COLUMNS, *_image.band_names(params)]
    kept = params["properties"] or list(points.columns)
    clash = _vector.check_columns(params["points_file"], kept, taken)
    if clash:
        problems.append(("properties" if params["properties"] else "points_file", clash))
    return problems


RECIPE = Sample()
