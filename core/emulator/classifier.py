"""Classifiers of the emulator, in numpy: `ee.Classifier.smileRandomForest` is a small real random
forest (CART trees on Gini impurity, each grown on a seeded subsample of the training rows —
`bagFraction` of them, drawn without replacement, with replacement at 1.0 — trying a seeded
choice of `variablesPerSplit` inputs (default the square root of their number) at each split;
a majority vote, ties to the smallest class). `smileCart` is one such tree on all rows and inputs;
`minimumDistance` is nearest centroid (euclidean).

Everything is seeded (the classifier's `seed`, default 0) and the training rows keep the
collection's order, so a classifier trained twice on the same features is the same classifier,
and every tile classified with it gets the same answer for the same pixel. Predictions are only
ever classes present in the training data.

A trained forest or tree can be exported to a CLASSIFIER asset (`classifier:export`):
`export_problem` is what a submit can already tell from the graph, `exported_model` what the
run finds; `loader` evaluates `Classifier.load(id)` to the model such an export stored.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.emulator.assets import not_found
from core.emulator.compute import (
    Coll,
    EvalError,
    Evaluator,
    Feat,
    Handler,
    Unsupported,
    _asset_name,
    _coll,
    cast_values,
    registry,
)
from core.emulator.expression import ArgRef, Call, FuncDef, resolve
from core.emulator.world import Pixels, Span

HANDLERS, handles = registry()
NO_DATA = "Classifier training failed: 'No valid training data were found.'"

# What a classifier export accepts (earthengine-api's Export.classifier.toAsset: "Only supported
# for ee.Classifier.smileRandomForest, ee.Classifier.smileCart, ee.Classifier.DecisionTree and
# ee.Classifier.DecisionTreeEnsemble"); the last two are models already, no .train() needed.
TRAINABLE_EXPORTS = ("Classifier.smileRandomForest", "Classifier.smileCart")
MODEL_EXPORTS = ("Classifier.decisionTree", "Classifier.decisionTreeEnsemble", "Classifier.load")
EXPORTABLE_KINDS = ("forest", "cart")
UNTRAINED_MSG = "Classifier export: the classifier has not been trained."
NOT_A_CLASSIFIER_MSG = "Classifier export: the exported value must be a Classifier, not {kind}."
UNSUPPORTED_KIND_MSG = (
    "Classifier export: only smileRandomForest, smileCart, DecisionTree and "
    "DecisionTreeEnsemble classifiers can be exported (got {kind})."
)
CLASSIFIER_ASSET = "CLASSIFIER"  # the EarthEngineAsset type an export of a classifier creates


@dataclass
class ClassifierSpec:
    kind: str  # "forest" | "cart" | "centroid"
    trees: int = 1
    variables: int | None = None
    min_leaf: int = 1
    bag: float = 1.0
    max_nodes: int | None = None
    seed: int = 0


@dataclass
class Tree:
    feature: np.ndarray  # per node; -1 = leaf
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    klass: np.ndarray  # class index of a leaf
    depth: int

    def predict(self, x: np.ndarray) -> np.ndarray:
        node = np.zeros(len(x), dtype=np.int64)
        rows = np.arange(len(x))
        for _ in range(self.depth):
            f = self.feature[node]
            leaf = f < 0
            if leaf.all():
                break
            go_left = x[rows, np.maximum(f, 0)] <= self.threshold[node]
            node = np.where(leaf, node, np.where(go_left, self.left[node], self.right[node]))
        return self.klass[node]


@dataclass
class TrainedClassifier:
    spec: ClassifierSpec
    inputs: list[str]
    classes: np.ndarray  # the distinct training classes, ascending
    trees: list[Tree] = field(default_factory=list)
    centroids: np.ndarray | None = None

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Rows of input values → class labels (always classes of the training data)."""
        x = np.asarray(x, dtype=np.float64)
        if len(x) == 0:
            return np.zeros(0, dtype=self.classes.dtype)
        if self.centroids is not None:
            d = ((x[:, None, :] - self.centroids[None, :, :]) ** 2).sum(axis=2)
            return self.classes[np.argmin(d, axis=1)]
        votes = np.zeros((len(x), len(self.classes)), dtype=np.int32)
        rows = np.arange(len(x))
        for tree in self.trees:
            votes[rows, tree.predict(x)] += 1
        return self.classes[np.argmax(votes, axis=1)]  # ties: the first (smallest) class


def _gini_split(
    x: np.ndarray, y: np.ndarray, n_classes: int, min_leaf: int
) -> tuple[float, float] | None:
    """Best (impurity, threshold) splitting one input at a midpoint; None if none."""
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    n = len(xs)
    onehot = np.zeros((n, n_classes))
    onehot[np.arange(n), ys] = 1.0
    left = np.cumsum(onehot, axis=0)[:-1]  # counts left of each cut i | i+1
    total = left[-1] + onehot[-1] if n > 1 else onehot.sum(axis=0)
    right = total - left
    nl = np.arange(1, n, dtype=np.float64)
    nr = n - nl
    valid = (xs[1:] > xs[:-1]) & (nl >= min_leaf) & (nr >= min_leaf)
    if not valid.any():
        return None
    gini_l = 1.0 - ((left / nl[:, None]) ** 2).sum(axis=1)
    gini_r = 1.0 - ((right / nr[:, None]) ** 2).sum(axis=1)
    impurity = (nl * gini_l + nr * gini_r) / n
    impurity[~valid] = np.inf
    i = int(np.argmin(impurity))
    return float(impurity[i]), float((xs[i] + xs[i + 1]) / 2.0)


def _grow(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    spec: ClassifierSpec,
    rng: np.random.Generator,
) -> Tree:
    mtry = spec.variables or max(1, int(math.sqrt(x.shape[1])))
    mtry = min(mtry, x.shape[1])
    feature: list[int] = []
    threshold: list[float] = []
    left: list[int] = []
    right: list[int] = []
    klass: list[int] = []
    depth = 0

    def new_node(idx: np.ndarray) -> int:
        counts = np.bincount(y[idx], minlength=n_classes)
        feature.append(-1)
        threshold.append(0.0)
        left.append(len(left))
        right.append(len(right))
        klass.append(int(np.argmax(counts)))
        return len(feature) - 1

    stack = [(new_node(np.arange(len(y))), np.arange(len(y)), 1)]
    while stack:
        node, idx, level = stack.pop()
        depth = max(depth, level)
        if len(np.unique(y[idx])) < 2 or len(idx) < 2 * spec.min_leaf:
            continue
        if spec.max_nodes is not None and len(feature) + 2 > spec.max_nodes:
            continue
        best: tuple[float, int, float] | None = None
        for f in sorted(rng.choice(x.shape[1], size=mtry, replace=False).tolist()):
            found = _gini_split(x[idx, f], y[idx], n_classes, spec.min_leaf)
            if found is not None and (best is None or found[0] < best[0]):
                best = (found[0], f, found[1])
        if best is None:
            continue
        _, f, thr = best
        mask = x[idx, f] <= thr
        li, ri = idx[mask], idx[~mask]
        feature[node], threshold[node] = f, thr
        left[node] = new_node(li)
        right[node] = new_node(ri)
        stack.append((right[node], ri, level + 1))
        stack.append((left[node], li, level + 1))
    return Tree(
        np.array(feature, dtype=np.int64),
        np.array(threshold),
        np.array(left, dtype=np.int64),
        np.array(right, dtype=np.int64),
        np.array(klass, dtype=np.int64),
        depth,
    )


def train(
    spec: ClassifierSpec, x: np.ndarray, labels: np.ndarray, inputs: list[str]
) -> TrainedClassifier:
    if len(labels) == 0 or x.shape[1] == 0:
        raise EvalError(NO_DATA)
    classes, y = np.unique(labels, return_inverse=True)
    if spec.kind == "centroid":
        centroids = np.stack([x[y == i].mean(axis=0) for i in range(len(classes))])
        return TrainedClassifier(spec, inputs, classes, centroids=centroids)
    rng = np.random.default_rng(spec.seed)
    trees = []
    n = len(y)
    for _ in range(spec.trees):
        if spec.kind == "forest":
            size = max(1, round(spec.bag * n))
            rows = np.sort(rng.choice(n, size=size, replace=spec.bag >= 1.0))
        else:
            rows = np.arange(n)
        trees.append(_grow(x[rows], y[rows], len(classes), spec, rng))
    return TrainedClassifier(spec, inputs, classes, trees)


# -- handlers ----------------------------------------------------------------------------------


def _int(v: Any, default: int | None) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else default


@handles("Classifier.smileRandomForest")
def _h_forest(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    trees = _int(a.get("numberOfTrees"), None)
    if not trees or trees < 1:
        raise EvalError("Classifier.smileRandomForest: numberOfTrees must be positive.")
    bag = a.get("bagFraction")
    return ClassifierSpec(
        "forest",
        trees=trees,
        variables=_int(a.get("variablesPerSplit"), None),
        min_leaf=_int(a.get("minLeafPopulation"), 1) or 1,
        bag=float(bag) if isinstance(bag, (int, float)) else 0.5,
        max_nodes=_int(a.get("maxNodes"), None),
        seed=_int(a.get("seed"), 0) or 0,
    )


@handles("Classifier.smileCart")
def _h_cart(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    return ClassifierSpec(
        "cart",
        variables=10**9,
        min_leaf=_int(a.get("minLeafPopulation"), 1) or 1,
        max_nodes=_int(a.get("maxNodes"), None),
    )


@handles("Classifier.minimumDistance")
def _h_centroid(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    metric = a.get("metric") or "euclidean"
    if metric != "euclidean":
        raise Unsupported(f"Classifier.minimumDistance with metric {metric!r}")
    return ClassifierSpec("centroid")


@handles("Classifier.train")
def _h_train(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    spec = a.get("classifier")
    if not isinstance(spec, ClassifierSpec):
        raise Unsupported("this kind of classifier")
    feats: list[Feat] = [f for f in _coll(a.get("features")).items if isinstance(f, Feat)]
    klass = str(a.get("classProperty"))
    inputs = a.get("inputProperties")
    if not isinstance(inputs, list) or not inputs:
        first = feats[0].props if feats else {}
        inputs = [k for k in first if k != klass and not str(k).startswith("system:")]
    inputs = [str(i) for i in inputs]
    rows, labels = [], []
    for f in feats:
        values = [f.props.get(k) for k in [*inputs, klass]]
        if any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in values):
            continue
        rows.append([float(v) for v in values[:-1]])
        labels.append(int(values[-1]))
    x = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(inputs))
    return train(spec, x, np.asarray(labels, dtype=np.int64), inputs)


@handles("Image.classify")
def _h_classify(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    src = ev.as_image(a.get("image"))
    clf = a.get("classifier")
    if not isinstance(clf, TrainedClassifier):
        raise EvalError("Image.classify: the classifier has not been trained.")
    missing = [b for b in clf.inputs if b not in src.bands]
    if missing:
        raise EvalError(
            f"Image.classify: Property '{missing[0]}' of the classifier's inputs is not a band "
            f"of the image (bands: {', '.join(src.bands)})."
        )
    dtype = src.dtype

    def band(px: Pixels, span: Span | None, i: int) -> np.ndarray | None:
        if i > 0:
            return None
        cols = [cast_values(src.named(px, b, span), dtype).astype(np.float64).ravel()
                for b in clf.inputs]
        return clf.predict(np.stack(cols, axis=1)).astype(np.float64).reshape(px.shape)

    return ev._new_image(node, env, band, dict(src.props), src.span)


@handles("FeatureCollection.classify")
def _h_classify_features(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
    coll = _coll(a.get("features"))
    clf = a.get("classifier")
    if not isinstance(clf, TrainedClassifier):
        raise EvalError("FeatureCollection.classify: the classifier has not been trained.")
    out_name = str(a.get("outputName") or "classification")
    out = []
    for f in coll.items:
        if not isinstance(f, Feat):
            continue
        values = [f.props.get(k) for k in clf.inputs]
        if all(isinstance(v, (int, float)) for v in values):
            label = clf.predict(np.asarray([values], dtype=np.float64))[0]
            out.append(Feat({**f.props, out_name: int(label)}, f.geometry, f.id))
        else:
            out.append(f)
    return Coll(out, "feature")


# -- export and load ---------------------------------------------------------------------------

# A classifier asset as the asset store holds it: (asset type, stored model); None: no asset.
ClassifierLookup = Callable[[str], "tuple[str, TrainedClassifier | None] | None"]


@functools.cache
def _return_types() -> dict[str, str]:
    """Algorithm name -> returnType, from the algorithm list the emulator serves."""
    res = importlib.resources.files("ee") / "tests" / "algorithms.json"
    algos = json.loads(res.read_text())["algorithms"]
    return {a["name"].removeprefix("algorithms/"): str(a.get("returnType", "")) for a in algos}


def export_problem(graph: dict[str, Any]) -> str | None:
    """Why a classifier export of this graph cannot succeed, when the graph already says so
    (a submit answers it with a 400); None when only running it can tell."""
    node = resolve(graph)
    if isinstance(node, (ArgRef, FuncDef)) or (isinstance(node, Call) and node.func is not None):
        return None  # a function's result: known when it runs
    if not isinstance(node, Call):
        return NOT_A_CLASSIFIER_MSG.format(kind=type(node).__name__)
    rtype = _return_types().get(node.name)
    if rtype is None:
        return None  # not an EE algorithm: the run reports it
    if rtype != "Classifier":
        return NOT_A_CLASSIFIER_MSG.format(kind=rtype.split("<", 1)[0])
    # Down the chain of classifier-returning calls (setOutputMode(...), train(...), ...) to the
    # constructor; trained when a train or a ready model is on the way.
    trained = False
    while isinstance(node, Call) and _return_types().get(node.name) == "Classifier":
        if node.name in MODEL_EXPORTS:
            return None
        trained = trained or node.name == "Classifier.train"
        inner = node.args.get("classifier")
        if inner is None:
            break
        node = inner
    if not isinstance(node, Call) or node.func is not None:
        return None
    if node.name not in TRAINABLE_EXPORTS:
        return UNSUPPORTED_KIND_MSG.format(kind=node.name)
    return None if trained else UNTRAINED_MSG


def exported_model(value: Any) -> TrainedClassifier:
    """The model a classifier export stores, from its evaluated expression; EvalError with
    the reason the task fails otherwise."""
    if isinstance(value, ClassifierSpec):
        raise EvalError(UNTRAINED_MSG)
    if not isinstance(value, TrainedClassifier):
        raise EvalError(NOT_A_CLASSIFIER_MSG.format(kind=type(value).__name__))
    if value.spec.kind not in EXPORTABLE_KINDS:
        raise EvalError(UNSUPPORTED_KIND_MSG.format(kind=value.spec.kind))
    return value


def model_bytes(model: TrainedClassifier) -> int:
    """The stored size of a model: its nodes (feature, threshold, children, class) and inputs."""
    nodes = sum(len(t.feature) for t in model.trees)
    centroids = 0 if model.centroids is None else model.centroids.size
    return 40 * nodes + 8 * centroids + sum(len(i) + 8 for i in model.inputs) + 64


def loader(lookup: ClassifierLookup | None) -> Handler:
    """The `Classifier.load(id)` handler over the classifier assets `lookup` finds."""

    def load(ev: Evaluator, node: Call, env: dict[str, Any], a: dict[str, Any]) -> Any:
        asset_id = a.get("id")
        if not isinstance(asset_id, str) or not asset_id:
            raise EvalError("Classifier.load: Parameter 'id' is required and must be a string.")
        name = _asset_name(asset_id)
        found = lookup(name) if lookup is not None else None
        if found is None or (found[0] == CLASSIFIER_ASSET and found[1] is None):
            raise EvalError(f"Classifier.load: {not_found(name).message}")
        asset_type, model = found
        if asset_type != CLASSIFIER_ASSET or model is None:
            raise EvalError(
                f"Classifier.load: Asset '{name}' is not a Classifier (its type is {asset_type})."
            )
        return model

    return load


# Without a lookup (an evaluator that knows no assets) every load finds nothing.
HANDLERS["Classifier.load"] = loader(None)
