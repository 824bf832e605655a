"""The Earth Engine side of the emulator: the REST v1 subset earthengine-api 1.7.50 uses.

Routes: the discovery document, the algorithms list from the wheel, the
export endpoints feeding the batch model (batch.py), operations list/get/cancel, assets,
value:compute (evaluate.py: constants, statistics, sizes, samples, ... of the synthetic world),
direct pixels (image:computePixels, and getDownloadURL's thumbnails + getPixels: pixels.py, the
export's pixels on the request's grid, 40 in flight per project), direct tables
(table:computeFeatures: features.py, the export's features a page at a time, on the same 40
slots), project config, and a fake
OAuth token endpoint. Image exports are the world's values at each
pixel (world.py), table exports the features the expression computes (or, for what the
emulator does not model, made-up rows as outputs.py describes); table assets exported here can
be loaded again with ee.FeatureCollection(asset id). A classifier export trains its classifier
once and stores the model in a CLASSIFIER asset, which ee.Classifier.load(asset id) brings back
(classifier.py).
Exports are checked as Google documents (requestId, description, file-name prefixes, workload
tag, the pending-task cap). `POST /_emulator/ee/quota_status` puts the project in restricted
mode: every EE response then carries `x-earth-engine-quota-status`.
Never 401 (the client would try to refresh), never 5xx for "unsupported" (it would retry with
backoff): unsupported calls get 400/404 JSON.
"""

from __future__ import annotations

import importlib.resources
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.emulator import classifier, features, outputs, pixels
from core.emulator.assets import AssetError, AssetStore, is_root, parent_of, split_name
from core.emulator.batch import DONE_STATES, BatchModel, QueueFull, Task
from core.emulator.classifier import TrainedClassifier
from core.emulator.clock import SimClock, rfc3339
from core.emulator.compute import Feat, Unsupported
from core.emulator.config import EmulatorConfig
from core.emulator.discovery import document_bytes
from core.emulator.drive_port import DriveForExports
from core.emulator.drive_types import QUOTA_EXCEEDED
from core.emulator.evaluate import evaluator, to_json
from core.emulator.expression import (
    ExpressionError,
    ImageSpec,
    TableSpec,
    analyze_image,
    analyze_table,
    analyze_video,
)
from core.emulator.http import Handler, Request, Response, Router, error_response, json_response
from core.emulator.pixels import DirectModel, PixelJob, PixelsError

# No public source gives EE's own text for an export that does not fit into Drive: the task
# fails with Drive's (storageQuotaExceeded), the one error a full Drive is known to give.
DRIVE_QUOTA_MSG = QUOTA_EXCEEDED
DEFAULT_MAX_PIXELS = 100_000_000  # EE's default maxPixels (1e8)
# The work a classifier export is charged in the batch model: a small table's (its training
# happens when it finishes, as a table export's rows are computed then).
CLASSIFIER_PIXELS = 10_000
STATE_TASKS = 500  # tasks listed in /_emulator/state
# Google's documented limits on an export request (field notes, section 8).
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9-]{1,60}")
MAX_DESCRIPTION = 100
NAME_CHARS = re.compile(r"[A-Za-z0-9_-]")
# earthengine-api's own rule for ee.data.setWorkloadTag (ee/_state.py _WorkloadTag.validate).
WORKLOAD_TAG_RE = re.compile(r"[a-z0-9]|[a-z0-9][-_a-z0-9]{0,61}[a-z0-9]")
QUOTA_STATUS_HEADER = "x-earth-engine-quota-status"
EXPORT_TYPES = {
    "image": "EXPORT_IMAGE",
    "table": "EXPORT_FEATURES",
    "video": "EXPORT_VIDEO",
    "map": "EXPORT_TILES",
    "classifier": "EXPORT_CLASSIFIER",
}
P = r"(?P<project>[^/:]+)"
OP = r"(?P<op>[A-Za-z0-9_-]+)"
ASSET = r"(?P<path>[^:]+?)"


@dataclass
class ExportJob:
    """What the finisher needs to produce outputs (the Task's payload)."""

    kind: str  # image | table | video | classifier
    destination: str  # drive | gcs | asset
    file_format: str = ""
    folder: str = ""
    prefix: str = ""
    bucket: str = ""
    asset_name: str = ""
    overwrite: bool = False
    image: ImageSpec | None = None
    grid: outputs.Grid | None = None
    table: TableSpec | None = None
    selectors: list[str] | None = None
    file_dims: tuple[int, int] | None = None
    nodata: float | None = None
    # The export's graph (tables and classifiers are computed from it when the task finishes).
    expression: dict[str, Any] | None = None
    est_bytes: int = 0
    files: list[str] = field(default_factory=list)  # names written (for state/tests)


class EarthEngineService:
    def __init__(
        self,
        config: EmulatorConfig,
        drive: DriveForExports,
        state_dir: Path,
        clock: Any | None = None,
    ) -> None:
        self.config = config
        self.drive = drive
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.clock = clock or SimClock(config.speed)
        self.model = BatchModel(config, self.clock, self._finish)
        # The interactive route (computePixels, getDownloadURL): no queue, no Drive.
        self.direct = DirectModel(config, self.clock)
        # Its tables (table:computeFeatures): the same slots, clock and EECU.
        self.direct_tables = features.DirectTables(config, self.direct, self._evaluator)
        self.assets = AssetStore(self.clock)
        # The features of table assets the emulator's exports wrote, by asset name (the asset
        # store holds their metadata; an asset deleted there is gone here too).
        self.tables: dict[str, TableSpec] = {}
        # Likewise the trained models of the CLASSIFIER assets, by asset name (updated with the
        # asset under the store's lock, so a Classifier.load sees both or neither).
        self.classifiers: dict[str, TrainedClassifier] = {}
        self._algorithms: bytes | None = None
        # Restricted mode (a project over its noncommercial tier): service state, set through
        # POST /_emulator/ee/quota_status.
        self.parallelism_restricted = False

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self.model.start()

    def stop(self) -> None:
        self.direct.stop()
        self.model.stop()

    def state(self) -> dict[str, Any]:
        tasks = []
        with self.model.lock:
            everything = sorted(self.model.tasks.values(), key=lambda t: t.seq)
        for t in everything[-STATE_TASKS:]:
            job = t.payload if isinstance(t.payload, ExportJob) else None
            tasks.append(
                {
                    "id": t.id,
                    "project": t.project,
                    "description": t.description,
                    "state": t.state,
                    "priority": t.priority,
                    "pixels": t.pixels,
                    "bands": t.bands,
                    "duration": round(t.duration, 3),
                    "files": list(job.files) if job else [],
                    "error": (t.error or {}).get("message"),
                    "workload_tag": t.workload_tag,
                }
            )
        return {
            "clock": rfc3339(self.clock.now()),
            "speed": self.config.speed,
            "operations": self.model.counts(),
            "tasks": tasks,  # the newest STATE_TASKS
            "tasks_total": len(everything),
            "assets": self.assets.count(),
            "parallelism_restricted": self.parallelism_restricted,
            "direct": {**self.direct.state(), "tables": self.direct_tables.state()},
        }

    # -- routes ---------------------------------------------------------------------------------

    def register(self, router: Router) -> None:
        router.add(
            "POST", r"/_emulator/ee/quota_status", self._quota_status, name="admin ee.quota_status"
        )

        def add(method: str, pattern: str, handler: Handler, *, name: str) -> None:
            router.add(method, pattern, self._with_quota_status(handler), name=name)

        add("GET", r"/\$discovery/rest", self._discovery, name="ee discovery")
        add("POST", r"/token", self._token, name="ee token")
        add(
            "GET", rf"/v1/projects/{P}/algorithms", self._algorithms_list, name="ee algorithms.list"
        )
        for kind in EXPORT_TYPES:
            add(
                "POST",
                rf"/v1/projects/{P}/(?P<kind>{kind}):export",
                self._export,
                name=f"ee {kind}.export",
            )
        add("GET", rf"/v1/projects/{P}/operations", self._ops_list, name="ee operations.list")
        add("GET", rf"/v1/projects/{P}/operations/{OP}", self._ops_get, name="ee operations.get")
        add(
            "POST",
            rf"/v1/projects/{P}/operations/{OP}:cancel",
            self._ops_cancel,
            name="ee operations.cancel",
        )
        add(
            "POST",
            rf"/v1/projects/{P}/operations/{OP}:wait",
            self._ops_get,
            name="ee operations.wait",
        )
        add(
            "DELETE",
            rf"/v1/projects/{P}/operations/{OP}",
            self._ops_delete,
            name="ee operations.delete",
        )
        add("GET", rf"/v1/projects/{P}:listAssets", self._list_root, name="ee projects.listAssets")
        add(
            "GET",
            rf"/v1/projects/{P}/assets/{ASSET}:listAssets",
            self._list_assets,
            name="ee assets.listAssets",
        )
        add(
            "GET",
            rf"/v1/projects/{P}/assets/{ASSET}:listImages",
            self._list_assets,
            name="ee assets.listImages",
        )
        add(
            "POST",
            rf"/v1/projects/{P}/assets/{ASSET}:copy",
            self._asset_copy,
            name="ee assets.copy",
        )
        add(
            "POST",
            rf"/v1/projects/{P}/assets/{ASSET}:move",
            self._asset_move,
            name="ee assets.move",
        )
        add("GET", rf"/v1/projects/{P}/assets/{ASSET}", self._asset_get, name="ee assets.get")
        add("POST", rf"/v1/projects/{P}/assets", self._asset_create, name="ee assets.create")
        add(
            "DELETE",
            rf"/v1/projects/{P}/assets/{ASSET}",
            self._asset_delete,
            name="ee assets.delete",
        )
        add("PATCH", rf"/v1/projects/{P}/assets/{ASSET}", self._asset_patch, name="ee assets.patch")
        add(
            "POST", rf"/v1/projects/{P}/value:compute", self._value_compute, name="ee value.compute"
        )
        add(
            "POST",
            rf"/v1/projects/{P}/image:computePixels",
            self._compute_pixels,
            name="ee image.computePixels",
        )
        add(
            "POST",
            rf"/v1/projects/{P}/table:computeFeatures",
            self._compute_features,
            name="ee table.computeFeatures",
        )
        add("POST", rf"/v1/projects/{P}/thumbnails", self._thumbnail_create,
            name="ee thumbnails.create")
        add(
            "GET",
            rf"/v1/projects/{P}/thumbnails/(?P<thumb>[A-Za-z0-9_-]+):getPixels",
            self._thumbnail_pixels,
            name="ee thumbnails.getPixels",
        )
        add("GET", rf"/v1/projects/{P}/config", self._config_get, name="ee getConfig")
        add("PATCH", rf"/v1/projects/{P}/config", self._config_update, name="ee updateConfig")
        # Everything else under /v1 is unsupported: a 400 (a 404 or 5xx would mislead or be
        # retried; 404 is reserved for missing things).
        for method in ("GET", "POST", "PATCH", "DELETE"):
            add(method, r"/v1/.*", self._unsupported, name="ee unsupported")

    # -- restricted mode ------------------------------------------------------------------------

    def _with_quota_status(self, handler: Handler) -> Handler:
        """The handler, its responses carrying the quota-status header in restricted mode (as
        Google's since 2026-03; earthengine-api warns on `parallelism_restricted=true`)."""

        def wrapped(req: Request, **kw: str) -> Response:
            resp = handler(req, **kw)
            if self.parallelism_restricted:
                resp.headers[QUOTA_STATUS_HEADER] = "parallelism_restricted=true"
            return resp

        return wrapped

    def _quota_status(self, req: Request) -> Response:
        try:
            body = req.json()
        except ValueError:
            body = None
        flag = body.get("parallelism_restricted") if isinstance(body, dict) else None
        if not isinstance(flag, bool):
            return error_response(400, 'Send {"parallelism_restricted": true|false}.')
        self.parallelism_restricted = flag
        return json_response({"parallelism_restricted": flag})

    # -- small endpoints ------------------------------------------------------------------------

    def _discovery(self, req: Request) -> Response:
        return Response(200, document_bytes(), {"Content-Type": "application/json"})

    def _token(self, req: Request) -> Response:
        # Service-account JWT-bearer exchange: any assertion gets a token.
        return json_response(
            {"access_token": "eebatch-emulator-token", "expires_in": 3600, "token_type": "Bearer"}
        )

    def _algorithms_list(self, req: Request, project: str) -> Response:
        if self._algorithms is None:
            # The complete ListAlgorithmsResponse that ships in the wheel (991 algorithms).
            res = importlib.resources.files("ee") / "tests" / "algorithms.json"
            self._algorithms = res.read_bytes()
        return Response(200, self._algorithms, {"Content-Type": "application/json"})

    def _unsupported(self, req: Request) -> Response:
        return error_response(400, f"The emulator does not support {req.method} {req.path}.")

    def _value_compute(self, req: Request, project: str) -> Response:
        body = req.json()
        try:
            value = self._evaluator().graph(body.get("expression") or {})
            return json_response({"result": to_json(value)})
        except ExpressionError as exc:
            return error_response(400, str(exc))

    # -- direct pixels (pixels.py) -----------------------------------------------------------

    def _compute_pixels(self, req: Request, project: str) -> Response:
        try:
            job = pixels.parse_compute_pixels(_body(req))
        except PixelsError as exc:
            self.direct.refused(exc.status)
            return error_response(exc.status, exc.message)
        return self._serve_pixels(project, job)

    def _compute_features(self, req: Request, project: str) -> Response:
        """A page of a FeatureCollection, computed directly (features.py)."""
        try:
            data = self.direct_tables.compute(project, _body(req))
        except PixelsError as exc:
            return error_response(exc.status, exc.message)
        return Response(200, data, {"Content-Type": "application/json; charset=UTF-8"})

    def _thumbnail_create(self, req: Request, project: str) -> Response:
        """getDownloadId's request: checked now (EE refuses an oversized download here), its
        pixels computed by :getPixels."""
        try:
            job = pixels.parse_thumbnail(_body(req))
        except PixelsError as exc:
            self.direct.refused(exc.status)
            return error_response(exc.status, exc.message)
        thumb = secrets.token_hex(16)
        self.direct.remember(f"{project}/{thumb}", job)
        return json_response({"name": f"projects/{project}/thumbnails/{thumb}"})

    def _thumbnail_pixels(self, req: Request, project: str, thumb: str) -> Response:
        job = self.direct.thumbnail(f"{project}/{thumb}")
        if job is None:
            return error_response(404, f"Thumbnail 'projects/{project}/thumbnails/{thumb}' "
                                       "not found.")
        return self._serve_pixels(project, job)

    def _serve_pixels(self, project: str, job: PixelJob) -> Response:
        def compute() -> tuple[bytes, str]:
            render = pixels.band_render(self._evaluator(), job)
            return pixels.encode(job, render, self.config.seed)

        try:
            data, mime = self.direct.run(project, job, compute)
        except PixelsError as exc:
            return error_response(exc.status, exc.message)
        return Response(200, data, {"Content-Type": mime})

    # -- the synthetic world --------------------------------------------------------------------

    def _evaluator(self) -> Any:
        return evaluator(self.config.seed, self._table_features, self._classifier_asset)

    def _classifier_asset(self, name: str) -> tuple[str, TrainedClassifier | None] | None:
        """(type, stored model) of the asset `name`, for Classifier.load; None: no asset."""
        with self.assets.lock:
            try:
                asset = self.assets.get(name)
            except AssetError:
                return None
            return str(asset["type"]), self.classifiers.get(name)

    def _table_features(self, name: str) -> list[Feat] | None:
        """The features of a table asset an export of this emulator wrote (None: no such
        table, or its asset was deleted)."""
        spec = self.tables.get(name)
        if spec is None:
            return None
        try:
            self.assets.get(name)
        except AssetError:
            return None
        _, rows = outputs.table_rows(spec, 0)
        return [Feat(dict(r["props"]), r["geometry"], r["system:index"]) for r in rows]

    def _computed_table(self, job: ExportJob) -> TableSpec:
        """The table an export's expression computes; what the emulator does not model gets the
        made-up table of the plan (analyze_table)."""
        assert job.table is not None
        if job.expression is None:
            return job.table
        try:
            value = self._evaluator().graph(job.expression)
        except Unsupported:
            return job.table
        # The same table computeFeatures pages through (the direct route).
        return features.computed_table(value)

    def _image_render(self, job: ExportJob) -> Any:
        """Pixels → band values of the export's image."""
        assert job.image is not None
        bands = list(job.image.bands)
        try:
            img = self._evaluator().image(job.image.core)
        except Unsupported:
            return outputs.named_render(bands)
        return lambda px: img.render(px)

    def _config_get(self, req: Request, project: str) -> Response:
        return json_response(self._config_json(project))

    def _config_update(self, req: Request, project: str) -> Response:
        body = req.json()
        n = body.get("maxConcurrentExports")
        if not isinstance(n, int) or n < 1:
            return error_response(400, "maxConcurrentExports must be a positive integer.")
        self.model.set_slots(project, n)
        return json_response(self._config_json(project))

    def _config_json(self, project: str) -> dict[str, Any]:
        return {
            "name": f"projects/{project}/config",
            "maxConcurrentExports": self.model.slots_for(project),
            "planMaxConcurrentExports": max(self.model.slots_for(project), self.config.slots),
        }

    # -- operations -----------------------------------------------------------------------------

    def _task(self, project: str, op: str) -> Task | None:
        t = self.model.tasks.get(op)
        return t if t is not None and t.project == project else None

    def _missing_op(self, project: str, op: str) -> Response:
        return error_response(404, f"Operation 'projects/{project}/operations/{op}' not found.")

    def _ops_get(self, req: Request, project: str, op: str) -> Response:
        task = self._task(project, op)
        if task is None:
            return self._missing_op(project, op)
        return json_response(self.model.operation(task))

    def _ops_cancel(self, req: Request, project: str, op: str) -> Response:
        task = self._task(project, op)
        if task is None:
            return self._missing_op(project, op)
        if task.state in ("SUCCEEDED", "FAILED"):
            return error_response(
                400, f"Operation '{task.name}' has already finished ({task.state})."
            )
        self.model.cancel(task)
        return json_response({})

    def _ops_delete(self, req: Request, project: str, op: str) -> Response:
        task = self._task(project, op)
        if task is None:
            return self._missing_op(project, op)
        if task.state not in DONE_STATES:
            return error_response(400, f"Operation '{task.name}' is still running.")
        self.model.delete(task)
        return json_response({})

    def _ops_list(self, req: Request, project: str) -> Response:
        try:
            size = int(req.query.get("pageSize") or 500)
        except ValueError:
            return error_response(400, "pageSize must be an integer.")
        size = max(1, min(size, self.config.max_page_size))
        try:
            keep = _op_filter(req.query.get("filter", ""))
        except ValueError as exc:
            return error_response(400, str(exc))
        tasks = self.model.list_tasks(project)  # in the configured order
        token = req.query.get("pageToken")
        if token:
            # s<seq>: the last task of the previous page; the next page starts after it.
            m = re.fullmatch(r"s(\d+)", token)
            if not m:
                return error_response(400, f"Invalid pageToken '{token}'.")
            after = int(m.group(1))
            if self.config.operations_oldest_first:
                tasks = [t for t in tasks if t.seq > after]
            else:
                tasks = [t for t in tasks if t.seq < after]
        ops = []
        last: Task | None = None
        more = False
        for t in tasks:
            op = self.model.operation(t)
            if not keep(op):
                continue
            if len(ops) == size:
                more = True
                break
            ops.append(op)
            last = t
        out: dict[str, Any] = {}
        if ops:
            out["operations"] = ops
        if more and last is not None:
            out["nextPageToken"] = f"s{last.seq}"
        return json_response(out)

    # -- exports --------------------------------------------------------------------------------

    def _export(self, req: Request, project: str, kind: str) -> Response:
        body = req.json()
        if not isinstance(body, dict):
            return error_response(400, "The request body must be a JSON object.")
        request_id = body.get("requestId") or None
        problem = _request_problem(body, self.config.strict_names)
        if problem:
            return error_response(400, problem)
        existing = self.model.find_by_request(project, request_id)
        if existing is not None:
            return json_response(self.model.operation(existing))
        if kind == "map":
            return error_response(400, f"{kind}:export is not supported by the emulator.")
        try:
            job, pixels, bands, fail = self._plan_export(project, kind, body)
        except (ExpressionError, AssetError, ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, AssetError):
                return error_response(exc.status, exc.message)
            return error_response(400, str(exc).strip("'\""))
        priority = body.get("priority", {})
        priority = priority.get("value", 100) if isinstance(priority, dict) else priority
        try:
            priority = int(priority)
        except (TypeError, ValueError):
            return error_response(400, "priority must be an integer.")
        if not 0 <= priority <= 9999:
            return error_response(400, "priority must be between 0 and 9999.")
        try:
            task, _ = self.model.submit(
                project,
                EXPORT_TYPES[kind],
                str(body.get("description") or ""),
                priority=priority,
                request_id=request_id,
                pixels=pixels,
                bands=bands,
                payload=job,
                fail_on_start=fail,
                workload_tag=_workload_tag(body),
            )
        except QueueFull as exc:
            # A repeated requestId was answered above; a new task finds the queue full.
            return error_response(429, exc.message)
        return json_response(self.model.operation(task))

    def _plan_export(
        self, project: str, kind: str, body: dict[str, Any]
    ) -> tuple[ExportJob, int, int, str | None]:
        """Decode an export request; returns (job, model pixels, bands, failure at start)."""
        expression = body.get("expression")
        if not isinstance(expression, dict):
            raise ExpressionError("The export request has no expression.")
        job = self._destination(project, kind, body)
        fail: str | None = None
        if kind == "classifier":
            # What the graph already tells (untrained, not a classifier) is refused now; the
            # training itself runs when the task finishes.
            problem = classifier.export_problem(expression)
            if problem:
                raise ExpressionError(problem)
            job.expression = expression
            job.est_bytes = 0
            return job, CLASSIFIER_PIXELS, 1, None
        if kind == "table":
            job.table = analyze_table(expression)
            job.expression = expression
            sel = body.get("selectors")
            job.selectors = [str(s) for s in sel] if isinstance(sel, list) and sel else None
            est = max(job.table.count, 1) * (64 + 24 * len(job.selectors or job.table.columns))
            job.est_bytes = est
            return job, max(job.table.count, 1) * 100, 1, None
        if kind == "video":
            opts = body.get("videoOptions") or {}
            spec = analyze_video(expression, opts.get("maxFrames"))
        else:
            spec = analyze_image(expression)
        job.image = spec
        if spec.region is None:
            # EE accepts the task and fails it: composites have no footprint.
            fail = "Unable to export unbounded image."
            job.grid = None
            return job, 0, len(spec.bands), fail
        grid = outputs.image_grid(spec)
        job.grid = grid
        bands = 3 if kind == "video" else len(spec.bands)
        limit_field = (
            (body.get("videoOptions") or {}).get("maxPixelsPerFrame")
            if kind == "video"
            else body.get("maxPixels")
        )
        limit = DEFAULT_MAX_PIXELS
        if isinstance(limit_field, dict) and "value" in limit_field:
            limit = int(limit_field["value"])
        elif isinstance(limit_field, (int, str)):
            limit = int(limit_field)
        if grid.pixels > limit:
            fail = (
                f"Export too large: specified {grid.pixels} pixels (max: {limit}). "
                "Specify higher maxPixels value if you intend to export a large area."
            )
        frames = spec.frames if kind == "video" else 1
        factor = outputs.content_factor(grid, self.config)  # config.size_spread
        pixels = round(outputs.model_pixels(grid) * factor) * frames
        job.est_bytes = round(outputs.image_bytes(grid, bands, spec.dtype) * factor) * frames
        if kind == "video":
            job.est_bytes //= 40  # compressed video, roughly
        return job, pixels, bands, fail

    def _destination(self, project: str, kind: str, body: dict[str, Any]) -> ExportJob:
        file_opts = body.get("fileExportOptions")
        asset_opts = body.get("assetExportOptions")
        if kind == "classifier" and not isinstance(asset_opts, dict):
            # Export.classifier has toAsset only (ExportClassifierRequest has no file options).
            raise ValueError(
                "A classifier export needs assetExportOptions.earthEngineDestination "
                "(classifiers are exported only to Earth Engine assets)."
            )
        if isinstance(asset_opts, dict):
            if kind == "video":
                raise ValueError("Video exports cannot go to an asset.")
            dest = asset_opts.get("earthEngineDestination") or {}
            if kind == "classifier" and not dest.get("name"):
                raise ValueError(
                    "A classifier export needs assetExportOptions.earthEngineDestination.name."
                )
            name = str(dest.get("name") or "")
            split_name(name)  # 400 when malformed
            overwrite = bool(dest.get("overwrite"))
            self._check_asset_destination(name, overwrite)
            return ExportJob(kind, "asset", asset_name=name, overwrite=overwrite)
        if not isinstance(file_opts, dict):
            for other in ("featureViewExportOptions", "bigqueryExportOptions"):
                if other in body:
                    raise ValueError(f"{other} exports are not supported by the emulator.")
            raise ValueError("The export request has no destination.")
        fmt = str(file_opts.get("fileFormat") or ("MP4" if kind == "video" else "")).upper()
        supported = {
            "image": {"GEO_TIFF"},
            "table": set(outputs.TABLE_MIME),
            "video": {"MP4"},
        }[kind]
        if fmt not in supported:
            raise ValueError(
                f"fileFormat {fmt or '(none)'} is not supported by the emulator for {kind} "
                f"exports (supported: {', '.join(sorted(supported))})."
            )
        job = ExportJob(kind, "", file_format=fmt)
        geotiff = file_opts.get("geoTiffOptions") or {}
        dims = geotiff.get("tileDimensions")
        if isinstance(dims, dict) and dims.get("width") and dims.get("height"):
            w, h = int(dims["width"]), int(dims["height"])
            if w <= 0 or h <= 0 or w > outputs.MAX_SIDE or h > outputs.MAX_SIDE:
                raise ValueError(f"fileDimensions must be between 1 and {outputs.MAX_SIDE}.")
            job.file_dims = (w, h)
        nodata = (geotiff.get("noData") or {}).get("floatValue")
        job.nodata = float(nodata) if isinstance(nodata, (int, float)) else None
        if "driveDestination" in file_opts:
            d = file_opts["driveDestination"] or {}
            job.destination = "drive"
            job.folder = str(d.get("folder") or "")
            job.prefix = str(d.get("filenamePrefix") or body.get("description") or "export")
        elif "cloudStorageDestination" in file_opts:
            d = file_opts["cloudStorageDestination"] or {}
            if not d.get("bucket"):
                raise ValueError("cloudStorageDestination needs a bucket.")
            job.destination = "gcs"
            job.bucket = str(d["bucket"])
            job.prefix = str(d.get("filenamePrefix") or body.get("description") or "export")
        else:
            raise ValueError("fileExportOptions needs driveDestination or cloudStorageDestination.")
        return job

    def _check_asset_destination(self, name: str, overwrite: bool) -> None:
        """EE refuses an export into an existing asset without overwrite, or into a folder that
        does not exist, when the task is submitted."""
        try:
            self.assets.get(name)
            exists = True
        except AssetError:
            exists = False
        if exists and not overwrite:
            raise AssetError(400, f"Cannot overwrite asset '{name}'.")
        parent = parent_of(name)
        if not is_root(parent):
            try:
                p = self.assets.get(parent)
            except AssetError:
                raise AssetError(
                    400, f"Cannot export to '{name}': folder '{parent}' does not exist."
                ) from None
            if p["type"] not in ("FOLDER", "IMAGE_COLLECTION"):
                raise AssetError(400, f"'{parent}' is not a folder.")

    # -- outputs (the batch model's finisher; runs without the model lock) ------------------------

    def _finish(self, task: Task) -> str | None:
        job = task.payload
        if not isinstance(job, ExportJob):
            return None
        if job.destination == "gcs":
            # No storage is emulated: the task succeeds and names where the files would be.
            task.destination_uris = [f"gs://{job.bucket}/{job.prefix}"]
            return None
        if job.destination == "asset":
            return self._finish_asset(task, job)
        free = self.drive.free_bytes()
        if free is not None and job.est_bytes > free:
            return DRIVE_QUOTA_MSG
        tmp = Path(tempfile.mkdtemp(prefix=f"{task.id}-", dir=self.state_dir))
        try:
            try:
                files = self._write_files(task, job, tmp)
            except ExpressionError as exc:  # EE fails the task with its computation's error
                return str(exc)
            total = sum(p.stat().st_size for p, _, _ in files)
            free = self.drive.free_bytes()
            if free is not None and total > free:
                return DRIVE_QUOTA_MSG
            folder_id = self.drive.ensure_export_folder(job.folder)  # '': the Drive root
            for path, title, mime in files:
                try:
                    self.drive.add_file(folder_id, title, path, mime)
                except Exception as exc:
                    if "quota" in str(exc).lower() or "space" in str(exc).lower():
                        return DRIVE_QUOTA_MSG
                    raise
                job.files.append(title)
            task.destination_uris = [f"https://drive.google.com/#folders/{folder_id}"]
            return None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _write_files(self, task: Task, job: ExportJob, tmp: Path) -> list[tuple[Path, str, str]]:
        seed = self.config.seed * 1_000_003 + task.seq
        out: list[tuple[Path, str, str]] = []
        if job.kind == "image":
            assert job.grid is not None and job.image is not None
            grid, bands, dtype = job.grid, len(job.image.bands), job.image.dtype
            windows = outputs.shard_plan(
                grid, bands, dtype, self.config.file_split_bytes, job.file_dims
            )
            render = self._image_render(job)
            for row0, col0, h, w in windows:
                title = (
                    f"{job.prefix}.tif"
                    if len(windows) == 1
                    else outputs.shard_name(job.prefix, row0, col0)
                )
                path = tmp / title
                outputs.write_geotiff(
                    path,
                    grid,
                    bands,
                    dtype,
                    render,
                    (row0, col0, h, w),
                    job.nodata,
                    self.config.seed,
                    outputs.content_factor(grid, self.config),
                )
                out.append((path, title, "image/tiff"))
        elif job.kind == "video":
            assert job.grid is not None and job.image is not None
            title = f"{job.prefix}.mp4"
            outputs.write_video_placeholder(tmp / title, job.image.frames, job.grid)
            out.append((tmp / title, title, "video/mp4"))
        else:
            assert job.table is not None
            table = self._computed_table(job)
            fmt = job.file_format
            ext, mime = outputs.TABLE_MIME[fmt]
            if fmt == "SHP":
                for p in outputs.write_shp(tmp, job.prefix, table, job.selectors, seed):
                    out.append(
                        (p, p.name, outputs.SHP_MIME.get(p.suffix, "application/octet-stream"))
                    )
                return out
            path = tmp / f"{job.prefix}.{ext}"
            writer = {
                "CSV": outputs.write_csv,
                "GEO_JSON": outputs.write_geojson,
                "KML": outputs.write_kml,
                "KMZ": outputs.write_kmz,
            }[fmt]
            writer(path, table, job.selectors, seed)
            out.append((path, path.name, mime))
        return out

    def _finish_asset(self, task: Task, job: ExportJob) -> str | None:
        extra: dict[str, Any] = {"sizeBytes": str(job.est_bytes)}
        table: TableSpec | None = None
        model: TrainedClassifier | None = None
        if job.kind == "classifier":
            asset_type = classifier.CLASSIFIER_ASSET
            try:
                # Trained once, here; every Classifier.load of the asset gets this model.
                assert job.expression is not None
                model = classifier.exported_model(self._evaluator().graph(job.expression))
            except ExpressionError as exc:  # untrained, no training data, not computable, ...
                return str(exc)
            extra["sizeBytes"] = str(classifier.model_bytes(model))
        elif job.kind == "image" and job.image is not None and job.grid is not None:
            asset_type = "IMAGE"
            extra["bands"] = [
                {
                    "id": b,
                    "dataType": {"precision": "FLOAT" if "float" in job.image.dtype else "INT"},
                    "grid": {
                        "crsCode": job.grid.crs,
                        "dimensions": {"width": job.grid.width, "height": job.grid.height},
                        "affineTransform": {
                            "scaleX": job.grid.dx,
                            "translateX": job.grid.x0,
                            "scaleY": -job.grid.dy,
                            "translateY": job.grid.y0,
                        },
                    },
                }
                for b in job.image.bands
            ]
        else:
            asset_type = "TABLE"
            try:
                table = self._computed_table(job)
            except ExpressionError as exc:
                return str(exc)
            extra["featureCount"] = str(table.count)
        with self.assets.lock:  # the asset and what loading it finds change together
            try:
                self.assets.create(
                    job.asset_name, asset_type, extra, overwrite=job.overwrite, allow_any_type=True
                )
            except AssetError as exc:
                return exc.message
            if table is not None:
                self.tables[job.asset_name] = table
            else:
                self.tables.pop(job.asset_name, None)
            if model is not None:
                self.classifiers[job.asset_name] = model
            else:
                self.classifiers.pop(job.asset_name, None)
        task.destination_uris = [f"https://code.earthengine.google.com/?asset={job.asset_name}"]
        job.files.append(job.asset_name)
        return None

    # -- assets ---------------------------------------------------------------------------------

    def _asset_call(self, fn: Any, *args: Any) -> Response:
        try:
            return json_response(fn(*args))
        except AssetError as exc:
            return error_response(exc.status, exc.message)

    def _page_size(self, req: Request) -> int:
        try:
            size = int(req.query.get("pageSize") or self.config.max_page_size)
        except ValueError:
            size = self.config.max_page_size
        return max(1, min(size, self.config.max_page_size))

    def _list_root(self, req: Request, project: str) -> Response:
        parent = f"projects/{project}/assets"
        return self._asset_call(
            self.assets.list, parent, self._page_size(req), req.query.get("pageToken")
        )

    def _list_assets(self, req: Request, project: str, path: str) -> Response:
        parent = f"projects/{project}/assets/{path}".rstrip("/")
        return self._asset_call(
            self.assets.list, parent, self._page_size(req), req.query.get("pageToken")
        )

    def _asset_get(self, req: Request, project: str, path: str) -> Response:
        return self._asset_call(self.assets.get, f"projects/{project}/assets/{path}")

    def _asset_create(self, req: Request, project: str) -> Response:
        asset_id = req.query.get("assetId", "").strip("/")
        if not asset_id:
            return error_response(400, "assetId is required.")
        body = req.json() or {}
        overwrite = req.query.get("overwrite", "").lower() == "true"
        return self._asset_call(
            lambda: self.assets.create(
                f"projects/{project}/assets/{asset_id}",
                str(body.get("type") or ""),
                body,
                overwrite=overwrite,
            )
        )

    def _asset_delete(self, req: Request, project: str, path: str) -> Response:
        def delete() -> dict[str, Any]:
            self.assets.delete(f"projects/{project}/assets/{path}")
            return {}

        return self._asset_call(delete)

    def _asset_patch(self, req: Request, project: str, path: str) -> Response:
        body = req.json() or {}
        if "updateMask" in req.query and "updateMask" not in body:
            body["updateMask"] = {"paths": req.query["updateMask"].split(",")}
        return self._asset_call(self.assets.patch, f"projects/{project}/assets/{path}", body)

    def _asset_copy(self, req: Request, project: str, path: str) -> Response:
        body = req.json() or {}
        dst = str(body.get("destinationName") or "")
        src = f"projects/{project}/assets/{path}"
        resp = self._asset_call(self.assets.copy, src, dst, bool(body.get("overwrite")))
        if resp.status == 200:
            self._move_contents(src, dst, keep=True)
        return resp

    def _asset_move(self, req: Request, project: str, path: str) -> Response:
        body = req.json() or {}
        dst = str(body.get("destinationName") or "")
        src = f"projects/{project}/assets/{path}"
        resp = self._asset_call(self.assets.move, src, dst)
        if resp.status == 200:
            self._move_contents(src, dst, keep=False)
        return resp

    def _move_contents(self, src: str, dst: str, keep: bool) -> None:
        """Table features and classifier models follow their assets (and the assets inside a
        moved folder)."""
        with self.assets.lock:
            _move_keys(self.tables, src, dst, keep)
            _move_keys(self.classifiers, src, dst, keep)


def _move_keys(store: dict[str, Any], src: str, dst: str, keep: bool) -> None:
    """Entries named `src` or inside it, renamed to under `dst` (copied when `keep`)."""
    for name in [n for n in store if n == src or n.startswith(src + "/")]:
        store[dst + name[len(src) :]] = store[name] if keep else store.pop(name)


def _body(req: Request) -> Any:
    try:
        return req.json()
    except ValueError:
        raise PixelsError(400, "Invalid JSON payload received.") from None


def _workload_tag(body: dict[str, Any]) -> str:
    tag = body.get("workloadTag")
    return "" if tag is None or tag == "" else str(tag)


def _invalid(field_: str, why: str) -> str:
    return f"Invalid value for field '{field_}': {why}"


def _bad_name_char(value: str, allow_slash: bool = False) -> str | None:
    for ch in value:
        if not NAME_CHARS.fullmatch(ch) and not (allow_slash and ch == "/"):
            return ch
    return None


def _request_problem(body: dict[str, Any], strict_names: bool) -> str | None:
    """The first rule of Google's an export request breaks, as a 400 message; None if none.

    requestId: 1-60 of [A-Za-z0-9-]. description: at most 100 characters, no whitespace, and
    with strict names only [A-Za-z0-9_-], like the file-name prefixes (a Cloud Storage prefix
    may hold '/' path separators; asset ids keep their own rules). workloadTag: as
    earthengine-api's setWorkloadTag."""
    rid = body.get("requestId")
    if rid not in (None, ""):
        if not isinstance(rid, str):
            return _invalid("requestId", "must be a string.")
        if not REQUEST_ID_RE.fullmatch(rid):
            if len(rid) > 60:
                why = f"must be at most 60 characters (got {len(rid)})."
            else:
                bad = next(ch for ch in rid if not REQUEST_ID_RE.fullmatch(ch))
                why = f"character {bad!r} is not allowed; use only letters, digits and '-'."
            return _invalid("requestId", why)
    desc = body.get("description")
    if desc is not None:
        desc = str(desc)
        if len(desc) > MAX_DESCRIPTION:
            return _invalid(
                "description", f"must be at most {MAX_DESCRIPTION} characters (got {len(desc)})."
            )
        space = next((ch for ch in desc if ch.isspace()), None)
        if space is not None:
            return _invalid("description", f"must not contain whitespace (found {space!r}).")
    if strict_names:
        names: list[tuple[str, str, bool]] = []
        if desc:
            names.append(("description", desc, False))
        for opts_key in ("fileExportOptions", "tileExportOptions"):
            opts = body.get(opts_key)
            if not isinstance(opts, dict):
                continue
            for dest, slash in (("driveDestination", False), ("cloudStorageDestination", True)):
                d = opts.get(dest)
                if isinstance(d, dict) and d.get("filenamePrefix"):
                    path = f"{opts_key}.{dest}.filenamePrefix"
                    names.append((path, str(d["filenamePrefix"]), slash))
        for field_, value, slash in names:
            bad = _bad_name_char(value, allow_slash=slash)
            if bad is not None:
                allowed = "letters, digits, '-' and '_'" + (" ('/' between parts)" if slash else "")
                return _invalid(field_, f"character {bad!r} is not allowed; use only {allowed}.")
    tag = body.get("workloadTag")
    if tag not in (None, "") and not WORKLOAD_TAG_RE.fullmatch(str(tag)):
        return _invalid(
            "workloadTag",
            f"{str(tag)!r}. Tags must be 1-63 characters, beginning and ending with a lowercase "
            "alphanumeric character ([a-z0-9]) with dashes (-), underscores (_), and lowercase "
            "alphanumerics between.",
        )
    return None


def _op_filter(text: str) -> Any:
    """A small subset of AIP-160 for operations.list (the Python client never sends one):
    clauses `field = "value"` / `field != "value"` joined by AND, on `metadata.<key>` or
    `done`. Anything else is a 400."""
    text = text.strip()
    if not text:
        return lambda op: True
    clauses = []
    for part in re.split(r"\s+AND\s+", text):
        m = re.fullmatch(r'\s*([A-Za-z_.]+)\s*(!=|=)\s*"?([^"]*)"?\s*', part)
        if not m:
            raise ValueError(f"Unsupported filter '{text}' (the emulator supports field=\"v\").")
        field_, op, value = m.groups()
        if not (field_.startswith("metadata.") or field_ == "done"):
            raise ValueError(f"Unsupported filter field '{field_}'.")
        clauses.append((field_, op, value))

    def keep(opj: dict[str, Any]) -> bool:
        for field_, op, value in clauses:
            cur: Any = opj
            for key in field_.split("."):
                cur = cur.get(key) if isinstance(cur, dict) else None
            actual = str(cur).lower() if isinstance(cur, bool) else str(cur)
            if (actual == value) != (op == "="):
                return False
        return True

    return keep
