"""Direct tables: EE's interactive route for a FeatureCollection (table:computeFeatures).

`POST /v1/projects/{p}/table:computeFeatures` (what ee.data.computeFeatures sends) takes a
ComputeFeaturesRequest {expression, pageSize, pageToken, workloadTag} and answers a
ComputeFeaturesResponse {type: "FeatureCollection", features, nextPageToken}: one page of the
collection's features as GeoJSON. The features are the ones a table export of the same
expression writes: both evaluate it with the same evaluator and turn the result into a table
the same way (`computed_table`, which the batch finisher in ee.py calls too), so a row of the
export's CSV and a feature here hold the same index, properties and geometry.

Where Google's behaviour is not documented this takes the strictest reading:

* a Feature is EE's v1 `Feature` message, `type`, `geometry` and `properties` only (each null
  when absent): no `id`, so a client that wants `system:index` must carry it in a property;
* a page holds at most 1,000 features (EE's default page; no larger one is documented) and at
  most config.max_page_size; an empty page omits `features` (proto3 JSON);
* every page is a computation of its own: the whole collection is computed again, timed and
  charged again (no cursor is kept between requests). The token names the expression (a hash)
  and the offset; a token from another expression, or beyond the end, is refused;
* an expression the emulator cannot compute is refused (400, as value:compute does) rather
  than answered with the made-up rows a batch export gets.

Interactive rules as computePixels' (pixels.py): the request takes one of the project's
`direct_concurrency` slots of the shared DirectModel (429 "Too many concurrent requests."
beyond), runs latency + work / direct_pixel_rate simulated seconds, and fails "User memory
limit exceeded." (a quarter into its run) or "Computation timed out." (at the interactive
limit), both 400. Its work is what the computation reads: for each region a reduction or a
sample looks at, the model pixels of its grid (outputs.model_pixels, one per sampled point)
times the content factor of that grid times the image's bands, plus 100 pixel-bands per
feature answered (what the batch model charges a table row); its memory is the same without
the bands. A computation already over either limit stops before it reads more. EECU is
charged in the DirectModel's totals (GET /_emulator/state, ee.direct), with this route's own
counts under ee.direct.tables.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from core.emulator import outputs
from core.emulator.batch import EECU_PER_SECOND, MEMORY_MSG, TIMEOUT_MSG
from core.emulator.compute import Coll, Feat, Img
from core.emulator.config import EmulatorConfig
from core.emulator.evaluate import to_json
from core.emulator.expression import ExpressionError, TableSpec
from core.emulator.pixels import DirectModel, PixelsError, Plan, _fields, _int32
from core.emulator.reduce import where

REQUEST_FIELDS = {"expression", "pageSize", "pageToken", "workloadTag"}
MAX_PAGE_SIZE = 1000  # EE's default page size (REST reference); the most served
ROW_WORK = 100  # pixel-bands per feature answered, as the batch model charges a table row
# The algorithms that read pixels, and where each finds its regions.
READERS = {
    "Image.reduceRegions": "collection",
    "Image.sampleRegions": "collection",
    "Image.sample": "region",
    "Image.reduceRegion": "geometry",
}
TOKEN_RE = re.compile(r"([0-9a-f]{16})-(\d{1,10})")


def computed_table(value: Any) -> TableSpec:
    """A computed FeatureCollection as the table an export of it writes: its features in
    order, their properties and geometries (none stays none), ids and every property name.
    ExpressionError when the value is not a FeatureCollection."""
    if not isinstance(value, Coll) or value.kind != "feature":
        raise ExpressionError("A table export needs a FeatureCollection.")
    feats = [f for f in value.items if isinstance(f, Feat)]
    columns = sorted({str(k) for f in feats for k in f.props})
    return TableSpec(
        len(feats),
        columns,
        [dict(f.props) for f in feats],
        [f.geometry for f in feats],
        ids=[f.id for f in feats],
        computed=True,
    )


class _TooHeavy(Exception):
    """The computation is past a limit already: stop reading pixels."""


class Meter:
    """The work and memory a computation reads, added up as its reductions and samples start
    (module doc); past `stop_memory` or `stop_work` it raises _TooHeavy."""

    def __init__(self, config: EmulatorConfig, stop_memory: float, stop_work: float) -> None:
        self.config = config
        self.stop_memory = stop_memory
        self.stop_work = stop_work
        self.memory = 0.0  # model pixels x content
        self.work = 0.0  # the same x bands

    def wrap(self, name: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        def metered(ev: Any, node: Any, env: dict[str, Any], a: dict[str, Any]) -> Any:
            self.charge(ev, name, a)
            return handler(ev, node, env, a)

        return metered

    def charge(self, ev: Any, name: str, a: dict[str, Any]) -> None:
        img = ev.as_image(a.get("image"))
        wh = where(img, a)
        pixels = 0.0
        for geometry in _regions(a.get(READERS[name])):
            if geometry.get("type") in ("Point", "MultiPoint"):
                coords = geometry.get("coordinates") or []
                pixels += 1 if geometry["type"] == "Point" else len(coords)
                continue
            try:
                grid = wh.grid(geometry)
            except (ValueError, TypeError):
                continue  # the handler itself says what is wrong with it
            pixels += outputs.model_pixels(grid) * outputs.content_factor(grid, self.config)
        self.memory += pixels
        self.work += pixels * max(len(img.bands), 1)
        if self.memory > self.stop_memory or self.work > self.stop_work:
            raise _TooHeavy


def _regions(value: Any) -> list[dict[str, Any]]:
    """The GeoJSON geometries a reader's argument holds (a collection's, a feature's, one)."""
    if isinstance(value, Coll):
        return [f.geometry for f in value.items if isinstance(f, Feat) and f.geometry]
    if isinstance(value, Feat):
        return [value.geometry] if value.geometry else []
    geojson = getattr(value, "geojson", None)
    if isinstance(geojson, dict):
        return [geojson]
    return [value] if isinstance(value, dict) and "type" in value else []


class DirectTables:
    """computeFeatures on the DirectModel's slots, clock and EECU totals."""

    def __init__(self, config: EmulatorConfig, direct: DirectModel,
                 evaluator: Callable[[], Any]) -> None:
        self.config = config
        self.direct = direct
        self.evaluator = evaluator  # a fresh evaluator of the service's world
        self.lock = threading.Lock()
        self.pages = 0
        self.features = 0
        self.failed: Counter[str] = Counter()

    def compute(self, project: str, body: Any) -> bytes:
        """Serve one request: the page as JSON bytes; PixelsError (status, EE's text) when EE
        refuses it (400 at once), has no slot for it (429) or fails it (400 in its time)."""
        try:
            expression, size, offset, digest, tag = self._parse(body)
        except PixelsError as exc:
            self.direct.refused(exc.status)
            raise
        with self.direct.slot(project):
            start = self.direct.clock.now()
            meter = self._meter()
            try:
                rows = self._rows(expression, meter)
            except _TooHeavy:
                rows = None
            except ExpressionError as exc:  # EE fails the computation with its own text
                self._account(tag, Plan(0.0, 0.0, str(exc)))
                raise PixelsError(400, str(exc)) from None
            plan = self._plan(meter, 0 if rows is None else len(rows))
            if plan.failure is None and rows is not None and offset > len(rows):
                refused = f"Invalid pageToken '{digest}-{offset}'."
                self._account(tag, Plan(0.0, 0.0, refused))
                raise PixelsError(400, refused)
            # Answered on the DirectModel's simulated clock, as computePixels is.
            self.direct._wait_until(start + plan.seconds)
            if plan.failure is not None or rows is None:
                self._account(tag, plan)
                raise PixelsError(400, plan.failure or TIMEOUT_MSG)
            page = rows[offset : offset + size]
            answer: dict[str, Any] = {"type": "FeatureCollection"}
            if page:
                answer["features"] = page
            if offset + size < len(rows):
                answer["nextPageToken"] = f"{digest}-{offset + size}"
            data = json.dumps(answer, separators=(",", ":")).encode()
            self._account(tag, plan, len(page), len(data))
            return data

    # -- the request ------------------------------------------------------------------------------

    def _parse(self, body: Any) -> tuple[dict[str, Any], int, int, str, str]:
        """(expression, page size, offset, the expression's hash, workload tag)."""
        req = _fields(body, REQUEST_FIELDS, "")
        expression = req.get("expression")
        if not isinstance(expression, dict):
            raise PixelsError(400, "Invalid request: expression is required.")
        raw_size = req.get("pageSize")
        size = 0 if raw_size in (None, "") else _int32(raw_size, "page_size")
        if size < 0:
            raise PixelsError(400, f"Invalid value at 'page_size' ({size}): must not be "
                                   "negative.")
        cap = max(1, min(MAX_PAGE_SIZE, self.config.max_page_size))
        size = cap if size == 0 else min(size, cap)
        digest = hashlib.sha256(
            json.dumps(expression, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()[:16]
        offset = 0
        token = req.get("pageToken")
        if token not in (None, ""):
            m = TOKEN_RE.fullmatch(str(token))
            if m is None or m.group(1) != digest:
                raise PixelsError(400, f"Invalid pageToken '{token}'.")
            offset = int(m.group(2))
        tag = req.get("workloadTag")
        return expression, size, offset, digest, "" if tag in (None, "") else str(tag)

    # -- the computation --------------------------------------------------------------------------

    def _meter(self) -> Meter:
        cfg = self.config
        room = max(cfg.direct_timeout_seconds - cfg.direct_latency_seconds, 0.0)
        return Meter(cfg, self.direct.memory_limit(), room * cfg.direct_pixel_rate)

    def _rows(self, expression: dict[str, Any], meter: Meter) -> list[dict[str, Any]]:
        """Every feature of the collection, as the page's GeoJSON Feature messages."""
        ev = self.evaluator()
        ev.handlers = {**ev.handlers, **{name: meter.wrap(name, ev.handlers[name])
                                         for name in READERS if name in ev.handlers}}
        value = ev.graph(expression)
        if isinstance(value, Img) or (isinstance(value, Coll) and value.kind != "feature"):
            raise ExpressionError("table.computeFeatures: the expression must be a "
                                  "FeatureCollection.")
        spec = computed_table(value)
        _, rows = outputs.table_rows(spec, self.config.seed)
        return [
            {
                "type": "Feature",
                "geometry": row["geometry"],
                "properties": to_json(row["props"]) if row["props"] else None,
            }
            for row in rows
        ]

    def _plan(self, meter: Meter, features: int) -> Plan:
        """Latency + work / rate, failing as DirectModel.plan does (module doc)."""
        cfg = self.config
        compute = (meter.work + features * ROW_WORK) / cfg.direct_pixel_rate
        latency, limit = cfg.direct_latency_seconds, cfg.direct_timeout_seconds
        if meter.memory > self.direct.memory_limit():
            spent = min(compute * 0.25, max(limit - latency, 0.0))
            return Plan(latency + spent, spent * EECU_PER_SECOND, MEMORY_MSG)
        if latency + compute > limit:
            spent = max(limit - latency, 0.0)
            return Plan(limit, spent * EECU_PER_SECOND, TIMEOUT_MSG)
        return Plan(latency + compute, compute * EECU_PER_SECOND, None)

    # -- the counts -------------------------------------------------------------------------------

    def _account(self, tag: str, plan: Plan, features: int = 0, nbytes: int = 0) -> None:
        """Into the DirectModel's totals (EECU, successes, failures by message, bytes), and
        this route's own counts."""
        d = self.direct
        with d.lock:
            d.eecu += plan.eecu
            d.eecu_by_tag[tag] += plan.eecu
            if plan.failure is not None:
                d.failed[plan.failure] += 1
            else:
                d.succeeded += 1
                d.bytes += nbytes
        with self.lock:
            if plan.failure is not None:
                self.failed[plan.failure] += 1
            else:
                self.pages += 1
                self.features += features

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {"pages": self.pages, "features": self.features, "failed": dict(self.failed)}
