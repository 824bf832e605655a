"""The emulator's evaluator with every handler (compute.py's, reductions and samples,
classifiers, and the classifier assets `Classifier.load` finds), and the JSON a `value:compute`
answers with."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.emulator import classifier, compute, reduce
from core.emulator.compute import (
    Closure,
    Coll,
    Date,
    Evaluator,
    Feat,
    Filt,
    Geom,
    Img,
    Proj,
    ReducerSpec,
    TableLookup,
    python_value,
)

HANDLERS = {**compute.HANDLERS, **reduce.HANDLERS, **classifier.HANDLERS}


def evaluator(
    seed: int,
    tables: TableLookup | None = None,
    classifiers: classifier.ClassifierLookup | None = None,
) -> Evaluator:
    """An evaluator over the world of `seed`; `tables(asset name)` → a table asset's features
    (None when there is no such table); `classifiers(asset name)` → (asset type, trained model)
    of an asset (None when there is none)."""
    if classifiers is None:
        return Evaluator(seed, tables, HANDLERS)
    return Evaluator(
        seed, tables, {**HANDLERS, "Classifier.load": classifier.loader(classifiers)}
    )


def _precision(dtype: str) -> dict[str, Any]:
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.floating):
        return {"type": "PixelType", "precision": "float" if dt.itemsize == 4 else "double"}
    info = np.iinfo(dt)
    return {"type": "PixelType", "precision": "int", "min": int(info.min), "max": int(info.max)}


def feature_json(f: Feat) -> dict[str, Any]:
    return {"type": "Feature", "geometry": f.geometry, "id": f.id, "properties": to_json(f.props)}


def image_json(img: Img) -> dict[str, Any]:
    bands = [
        {
            "id": b,
            "data_type": _precision(img.dtype),
            "crs": "EPSG:4326",
            "crs_transform": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        }
        for b in img.bands
    ]
    return {"type": "Image", "bands": bands, "properties": to_json(img.props)}


def to_json(value: Any) -> Any:
    """A computed value as getInfo() receives it."""
    if isinstance(value, Img):
        return image_json(value)
    if isinstance(value, Feat):
        return feature_json(value)
    if isinstance(value, Coll):
        if value.kind == "image":
            return {
                "type": "ImageCollection",
                "bands": [],
                "properties": {},
                "features": [image_json(i) for i in value.items if isinstance(i, Img)],
            }
        columns: dict[str, str] = {}
        for f in value.items:
            for k, v in f.props.items():
                columns.setdefault(k, "Number" if isinstance(v, (int, float)) else "String")
        return {
            "type": "FeatureCollection",
            "columns": columns,
            "properties": {},
            "features": [feature_json(f) for f in value.items],
        }
    if isinstance(value, Geom):
        return value.geojson
    if isinstance(value, Date):
        return {"type": "Date", "value": int(value.ms)}
    if isinstance(value, tuple) and len(value) == 2:  # a DateRange
        return {"type": "DateRange", "dates": [int(value[0]), int(value[1])]}
    if isinstance(value, (Closure, Filt, ReducerSpec, Proj)):
        return {"type": type(value).__name__}
    if isinstance(value, classifier.TrainedClassifier | classifier.ClassifierSpec):
        return {"type": "Classifier"}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return python_value(value)
