"""The classify recipe: a random forest trained in EE on labelled points over a feature image
built as the composite recipe builds its image (bands, plus NDVI and NDWI by default), applied
to each tile and exported as one band, "classification" (uint8).

The training points come from a local file (GeoJSON, GeoPackage, Shapefile), sent inline as
an ee.FeatureCollection, or from an EE table asset. The classifier is trained once in EE: the
worker exports it to an asset (ee.batch.Export.classifier.toAsset, core/engine/training.py)
before any tile is sent, and every tile classifies with ee.Classifier.load of that asset, so
every tile uses the same trained classifier and its training is paid for once. The training
image is the composite over the training points' bounds and over `training_dates`; without
them over each period's own dates, so a job of several periods trains one classifier per
period.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from core.recipes import _image, _vector
from core.recipes.base import Output, Param, Recipe, RecipeError, UnitWork, between

MAX_CLASS = 255  # the classification is exported as uint8
PAD = 0.01  # degrees around the training points: the images the training composite reads


def _dates(value: Any) -> str | None:
    if not value:
        return None
    days = [_day(v) for v in value] if len(value) == 2 else [None]
    if None in days:
        return "must be [] or two dates [YYYY-MM-DD, YYYY-MM-DD] (the end exclusive)"
    start, end = days
    return None if start < end else f"the end {end} must be after the start {start}"


def _day(value: Any) -> dt.date | None:
    """A date as TOML writes it (2023-06-01) or as a string ("2023-06-01")."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    try:
        return dt.date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _asset(value: Any) -> str | None:
    return "must not hold spaces" if any(c.isspace() for c in value) else None


class Classify(Recipe):
    name = "classify"
    help = "a random forest trained on labelled points, applied to each tile (one band)"
    count_batches = True  # its image is cut to the unit's batch (_image.composite_image)
    trains = True  # the classifier, once per job (or per period), before the tiles
    parameters = (
        Param("training_file", str, None,
              "GeoJSON, GeoPackage or Shapefile of labelled points, sent with the job (or "
              "give training_asset instead)", required=True),
        Param("training_layer", str, "", "the layer of a multi-layer training file"),
        Param("training_asset", str, "", "an EE table asset of labelled points, instead of "
                                         "training_file", _asset),
        Param("class_property", str, "class", "the points' column holding the class, an "
                                              "integer 0-255"),
        Param("trees", int, 50, "trees of the random forest", between(1, 1000)),
        Param("seed", int, 0, "the random forest's seed: the same in every tile",
              between(-(2**31), 2**31 - 1)),
        Param("training_dates", list, [], "[start, end] of the training composite; [] each "
                                          "unit's own period", _dates),
        Param("model_folder", str, "", "the EE folder the trained classifier is exported to "
                                       "(projects/PROJECT/assets/...); '' the project's root",
              _asset),
        _image.scale_parameter("metres per pixel the training points are sampled at"),
        *_image.image_parameters(bands=["SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7"],
                                 indices=["NDVI", "NDWI"]),
    )

    def output(self, params: dict[str, Any]) -> Output:
        return "image"

    def bands(self, params: dict[str, Any]) -> list[tuple[str, int]]:
        return [("classification", 1)]

    def validate(self, raw: dict[str, Any],
                 job_dir: Path | None = None) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        params, problems = super().validate(raw)
        problems += _image.image_problems(params)
        if raw.get("training_asset"):
            if "training_file" in raw:
                problems.append(("training_asset", "give training_file or training_asset, "
                                                   "not both"))
            else:  # the asset stands in for the file
                problems.remove(("training_file", "is required"))
        elif params["training_file"] is not None:
            problems += _training_problems(params, job_dir)
        return params, problems

    def model_key(self, params: dict[str, Any], period: str) -> str:
        # With training_dates one classifier serves every period; without, each period's.
        return "job" if params["training_dates"] else period

    def model_summary(self, params: dict[str, Any]) -> str:
        folder = params["model_folder"] or "projects/PROJECT/assets"
        each = "once" if params["training_dates"] else "once a period"
        return (f"random forest ({params['trees']} trees) trained in EE {each} before the "
                f"tiles, kept as {folder}/eebatch_SESSION_classify")

    def model(self, params: dict[str, Any], job_dir: Path, start: str | None,
              end: str | None) -> Any:
        import ee

        p = params
        training, bounds = _training(p, job_dir)
        if p["training_dates"]:
            start, end = (str(_day(d)) for d in p["training_dates"])
        samples = _image.composite_image(p, bounds, start, end).sampleRegions(
            collection=training, properties=[p["class_property"]], scale=p["scale"])
        return ee.Classifier.smileRandomForest(numberOfTrees=p["trees"], seed=p["seed"]).train(
            features=samples, classProperty=p["class_property"],
            inputProperties=_image.band_names(p))

    def build(self, params: dict[str, Any], geometry: Any, unit: UnitWork,
              job_dir: Path) -> Any:
        import ee

        if unit.model is None:  # the worker trains it first; anything else is eebatch's bug
            raise RecipeError("the classifier has not been trained for this unit")
        image = _image.composite_image(params, geometry, unit.start, unit.end, unit.batch)
        classifier = ee.Classifier.load(unit.model)
        return image.classify(classifier, "classification").toUint8()


def _training_problems(params: dict[str, Any], job_dir: Path | None) -> list[tuple[str, str]]:
    """What is wrong with the training file: unreadable, too big to send inline, no class
    column, a class that is no integer 0-255, or fewer than two classes."""
    source, column = params["training_file"], params["class_property"]
    path = _vector.resolve(job_dir, source)
    if path is None:  # relative, and the job file's folder not known: checked at build
        return []
    try:
        points = _vector.read_features(path, source, params["training_layer"])
    except _vector.VectorError as exc:
        return [("training_file", str(exc))]
    if len(points) > _vector.MAX_INLINE:
        return [("training_file", f"{source!r} has {len(points):,} features, more than the "
                                  f"{_vector.MAX_INLINE:,} sent inline with each request; "
                                  "upload it as an EE table asset and give training_asset")]
    if column not in points.columns:
        return [("class_property", f"{column!r} is not a column of {source!r} (its columns: "
                                   f"{', '.join(points.columns) or 'none'})")]
    classes = set()
    for i, row in enumerate(points.properties):
        value = row[column]
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or value != int(value) or not 0 <= value <= MAX_CLASS):
            return [("class_property", f"feature {i + 1} of {source!r} has {column} = "
                                       f"{value!r}; classes must be integers 0-{MAX_CLASS}")]
        classes.add(int(value))
    if len(classes) < 2:
        return [("training_file", f"{source!r} holds only class {classes.pop()} in "
                                  f"{column!r}; a classifier needs at least two classes")]
    return []


def _training(params: dict[str, Any], job_dir: Path) -> tuple[Any, Any]:
    """(the training points as an ee.FeatureCollection holding only the class property, the
    bounds the training composite is made over). Identical for every unit of the job."""
    import ee

    column = params["class_property"]
    if params["training_asset"]:
        training = ee.FeatureCollection(params["training_asset"])
        return training, training.geometry()
    problems = _training_problems(params, job_dir)
    if problems:
        raise RecipeError("; ".join(f"recipe.{k}: {m}" for k, m in problems))
    path = _vector.resolve(job_dir, params["training_file"])
    assert path is not None
    points = _vector.read_features(path, params["training_file"], params["training_layer"])
    training = _vector.ee_collection([(g, {column: int(row[column])}) for g, row in
                                      zip(points.geometries, points.properties, strict=True)])
    west, south, east, north = (round(v, _vector.DIGITS) for v in _bounds(points))
    bounds = ee.Geometry.Rectangle([max(west - PAD, -180), max(south - PAD, -90),
                                    min(east + PAD, 180), min(north + PAD, 90)], None, False)
    return training, bounds


def _bounds(points: _vector.Features) -> tuple[float, float, float, float]:
    import shapely

    west, south, east, north = shapely.total_bounds(points.geometries)
    return float(west), float(south), float(east), float(north)


RECIPE = Classify()
