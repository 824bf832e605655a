"""The Earth Engine adapter, on earthengine-api: start an export under our own requestId,
list operations a page at a time, cancel, ping, and compute a grid's pixels directly
(computePixels, from many threads at once)."""

from __future__ import annotations

import re
import threading
import warnings
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from core.backends.timestamps import unix_time
from core.spec import ExportSpec
from core.states import EE_LIVE

# The client keeps module-level state; the worker thread and a TUI thread must not interleave
# Initialize with calls.
_EE_LOCK = threading.RLock()

# What ee.data.listOperations asks for; the most the service returns in one page.
OPERATIONS_PAGE_SIZE = 500
# The client's own retries of a poll's call (operations.list, .get): the worker polls again
# anyway. earthengine-api's default (5, backing off ~60 s in all) held the loop, under the
# adapter's lock, through most of an outage before it could say EE is unreachable.
OPERATION_GET_RETRIES = 2
QUOTA_STATUS_HEADER = "x-earth-engine-quota-status"
RESTRICTED_WARNING = "Your project has exceeded its noncommercial compute quota"
# Google's endpoint for many automated interactive requests (computePixels); the same 40
# concurrent requests per project, less caching (field.md).
HIGH_VOLUME_URL = "https://earthengine-highvolume.googleapis.com"
# Connections kept per host for direct requests from threads (EE allows 40 in flight).
PIXELS_POOL = 64
_WIDENED: weakref.WeakSet[Any] = weakref.WeakSet()  # requests.Sessions given PIXELS_POOL


@dataclass(frozen=True)
class Operation:
    """What the worker needs of an EE operation (the raw dict has more)."""

    name: str
    description: str
    state: str  # PENDING, RUNNING, CANCELLING, SUCCEEDED, FAILED, CANCELLED
    progress: float
    eecu_seconds: float | None
    error: str | None
    start_time: str | None
    destination_uris: tuple[str, ...]
    create_time: str | None = None
    update_time: str | None = None
    end_time: str | None = None

    @classmethod
    def from_json(cls, op: dict[str, Any]) -> Operation:
        meta = op.get("metadata", {})
        error = op.get("error", {}).get("message") if op.get("done") else None
        return cls(op["name"], meta.get("description", ""), meta.get("state", "UNKNOWN"),
                   float(meta.get("progress", 1.0 if op.get("done") else 0.0)),
                   meta.get("batchEecuUsageSeconds"), error, meta.get("startTime"),
                   tuple(meta.get("destinationUris", ())), meta.get("createTime"),
                   meta.get("updateTime"), meta.get("endTime"))

    def started_at(self) -> float | None:
        """startTime as a Unix time. EE sets it when the task starts running, so a task that
        ran between two polls still gets its real start."""
        return unix_time(self.start_time)

    def created_at(self) -> float | None:
        """createTime as a Unix time (the service's clock): when the export was accepted."""
        return unix_time(self.create_time)

    def ran_seconds(self) -> float | None:
        """How long EE has run it, by EE's own clock (startTime to endTime, or to its last
        progress report while it runs); None before it starts."""
        start = unix_time(self.start_time)
        last = unix_time(self.end_time) or unix_time(self.update_time)
        return max(last - start, 0.0) if start is not None and last is not None else None

    def drive_folder(self) -> str | None:
        """The id of the Drive folder EE wrote to, from destinationUris
        (`https://drive.google.com/#folders/ID`), if it names one."""
        for uri in self.destination_uris:
            match = re.search(r"[#/]folders/([A-Za-z0-9_-]+)", uri)
            if match:
                return match.group(1)
        return None

    @property
    def active(self) -> bool:
        return self.state in EE_LIVE


class EarthEngine:
    """One initialised client for one project."""

    def __init__(self, project: str, pixels_url: str | None = None) -> None:
        self.project = project
        # Where computePixels goes, if not where ee.Initialize pointed (None): the
        # high-volume endpoint for Google.
        self.pixels_url = pixels_url.rstrip("/") if pixels_url else None
        # EE's x-earth-engine-quota-status header on our last answer said the project ran
        # over its noncommercial tier (restricted mode); None: no answer read yet.
        self.restricted: bool | None = None
        # earthengine-api prints its own warning for it (to stderr, under a dashboard); the
        # worker says it once, in the log and the header, instead.
        warnings.filterwarnings("ignore", message=RESTRICTED_WARNING)

    def _inspect(self, response: Any) -> None:
        """A response callback on our own requests: read the quota-status header."""
        status = response.get(QUOTA_STATUS_HEADER, "") if hasattr(response, "get") else ""
        self.restricted = "parallelism_restricted=true" in status

    @classmethod
    def for_emulator(cls, url: str, project: str = "eebatch-demo",
                     pixels_url: str | None = None) -> EarthEngine:
        from core.connect import init_ee

        with _EE_LOCK:
            init_ee(url, project)
        return cls(project, pixels_url)

    @classmethod
    def for_google(cls, project: str, credentials: Any) -> EarthEngine:
        import ee

        with _EE_LOCK:
            ee.Reset()
            ee.Initialize(credentials=credentials, project=project)
        return cls(project, HIGH_VOLUME_URL)

    def start_export(self, request_id: str, obj: Any, *, kind: str, description: str,
                     prefix: str, export: ExportSpec, region: Any,
                     crs_transform: list[float] | None = None,
                     dimensions: str | None = None, priority: int | None = None) -> str:
        """Send one export with our requestId (EE runs one attempt per id, however often it is
        sent) and return the operation name."""
        import ee

        with _EE_LOCK:
            if kind == "table":
                task = _table_task(obj, description, prefix, export, priority)
            else:
                task = _image_task(obj, description, prefix, export, region, crs_transform,
                                   dimensions, priority)
            # The job's workload tag (EECU per job in Cloud Monitoring), set on the request
            # rather than ee.data's process-wide tag, which a TUI thread might share.
            task.config["workloadTag"] = export.workload_tag
            send = ee.data.exportTable if kind == "table" else ee.data.exportImage
            op = send(request_id, task.config)
        return str(op["name"])

    def operation_pages(self) -> Iterator[list[Operation]]:
        """operations.list one page (one request) at a time (newest first as far as anyone has
        seen; Google does not document it), so the caller stops as soon as it has what it
        looks for. ee.data.listOperations fetches every page before
        it returns, and EE keeps finished operations for weeks: at the end of a 100,000-unit
        job that was 200 requests and 100,000 dicts per poll. This is the same request, built
        by the same client (ee.data's own cloud-API helpers)."""
        import ee

        with _EE_LOCK:
            operations = ee.data._get_cloud_projects().operations()
            request = operations.list(name=f"projects/{self.project}",
                                      pageSize=OPERATIONS_PAGE_SIZE)
        while request is not None:
            request.add_response_callback(self._inspect)
            with _EE_LOCK:
                response = ee.data._execute_cloud_call(request,
                                                       num_retries=OPERATION_GET_RETRIES)
                request = operations.list_next(request, response)
            yield [Operation.from_json(op) for op in response.get("operations", [])]

    def get_operation(self, name: str) -> Operation | None:
        """operations.get: the operation, or None if EE does not know it (404). Sent as the
        client's own request, whose HttpError keeps the status (ee.data.getOperation turns
        it into a bare message)."""
        import ee
        from googleapiclient.errors import HttpError

        with _EE_LOCK:
            request = ee.data._get_cloud_projects().operations().get(name=name)
            request.add_response_callback(self._inspect)
            try:
                return Operation.from_json(request.execute(num_retries=OPERATION_GET_RETRIES))
            except HttpError as exc:
                if exc.resp.status == 404:
                    return None
                raise

    def list_operations(self) -> list[Operation]:
        """Every operation of the project, newest first (every page)."""
        return [op for page in self.operation_pages() for op in page]

    def list_assets(self, parent: str) -> list[str]:
        """The ids of the assets directly in folder `parent` (every page)."""
        import ee

        with _EE_LOCK:
            listed = ee.data.listAssets({"parent": parent})
        return [str(a.get("id") or a.get("name", "")) for a in listed.get("assets", [])]

    def delete_asset(self, asset_id: str) -> None:
        import ee

        with _EE_LOCK:
            ee.data.deleteAsset(asset_id)

    def start_table_merge(self, request_id: str, parts: list[str], asset_id: str, *,
                          description: str, workload_tag: str) -> str:
        """Export the union of table assets `parts` to one table asset (the parts' features,
        properties kept) under our requestId; returns the operation name."""
        import ee

        with _EE_LOCK:
            merged = ee.FeatureCollection([ee.FeatureCollection(p) for p in parts]).flatten()
            task = ee.batch.Export.table.toAsset(merged, description=description,
                                                 assetId=asset_id)
            task.config["workloadTag"] = workload_tag
            op = ee.data.exportTable(request_id, task.config)
        return str(op["name"])

    def start_classifier_export(self, request_id: str, classifier: Any, asset_id: str, *,
                                description: str, workload_tag: str) -> str:
        """Export a trained ee.Classifier to the asset `asset_id` under our requestId (never
        over an existing asset); returns the operation name."""
        import ee

        with _EE_LOCK:
            task = ee.batch.Export.classifier.toAsset(classifier, description=description,
                                                      assetId=asset_id)
            task.config["workloadTag"] = workload_tag
            op = ee.data.exportClassifier(request_id, task.config)
        return str(op["name"])

    def compute_pixels(self, image: Any, *, crs: str, transform: Sequence[float], width: int,
                       height: int, band_ids: Sequence[str] | None = None,
                       file_format: str = "GEO_TIFF", workload_tag: str = "",
                       num_retries: int = 0) -> bytes:
        """The pixels of `image` on one grid, computed by EE directly (computePixels: no batch
        slot, no Drive): the raw bytes of the file (a GeoTIFF by default). The grid is
        `width` x `height` pixels of `transform` = [xScale, xShear, xTranslate, yShear, yScale,
        yTranslate] (EE's crsTransform order; yScale < 0 for north up) in `crs`; `band_ids`
        picks and orders bands (None: all). EE's limits per request: 32,768 pixels a side and
        48 MB of uncompressed pixels.

        Safe from many threads at once: only building the request holds _EE_LOCK (ee.data's
        state is module-wide), the HTTP wait does not, so up to EE's 40 requests run at once.
        Failures raise googleapiclient's HttpError, which keeps the status for
        failures.classify (429 "Too many concurrent requests.", 400 "User memory limit
        exceeded." / "Computation timed out." / a size limit, 5xx). `num_retries`: the
        client's own retries of 429 and 5xx (0: the caller backs off itself)."""
        import ee

        t = [float(v) for v in transform]
        if len(t) != 6:
            raise ValueError(f"transform needs 6 numbers, got {len(t)}")
        body: dict[str, Any] = {
            "fileFormat": file_format,
            "grid": {
                "dimensions": {"width": int(width), "height": int(height)},
                "affineTransform": {"scaleX": t[0], "shearX": t[1], "translateX": t[2],
                                    "shearY": t[3], "scaleY": t[4], "translateY": t[5]},
                "crsCode": crs,
            },
        }
        if band_ids:
            body["bandIds"] = list(band_ids)
        if workload_tag:
            # On the request, not ee.data's process-wide tag (as start_export does).
            body["workloadTag"] = workload_tag
        with _EE_LOCK:
            body["expression"] = ee.serializer.encode(image, for_cloud_api=True)
            _widen_pool()
            # ee.data.computePixels sends the same request but under no lock of ours and
            # turns every failure into a bare EEException; building it here keeps the
            # status, and sends it where pixels_url says.
            request = ee.data._get_cloud_projects_raw().image().computePixels(
                project=f"projects/{self.project}", body=body)
            base = (ee.data._get_state().cloud_api_base_url or "").rstrip("/")
        if self.pixels_url and base and request.uri.startswith(base + "/"):
            request.uri = self.pixels_url + request.uri[len(base):]
        request.add_response_callback(self._inspect)
        return bytes(request.execute(num_retries=num_retries))

    def compute_table(self, collection: Any, *, workload_tag: str = "",
                      num_retries: int = 0) -> bytes:
        """The CSV file Export.table.toDrive writes for `collection` (fileFormat CSV, no
        selectors), computed by EE directly (table:computeFeatures: no batch slot, no Drive):
        `system:index`, the properties in alphabetical order and `.geo`, a row per feature in
        order (core.outputs.feature_csv). Pages through computeFeatures at EE's 1,000
        features a page; a failure of any page fails the whole.

        EE's Feature message carries no id, so each feature's system:index travels in a
        property of its own, set by a map on EE's side and taken off here.

        Threads and failures as compute_pixels: only building each request holds _EE_LOCK;
        googleapiclient's HttpError keeps the status for failures.classify (429 "Too many
        concurrent requests.", 400 "User memory limit exceeded." / "Computation timed out.",
        5xx); `num_retries` is the client's own retries of 429 and 5xx per page."""
        import ee

        from core.outputs.feature_csv import Row, csv_bytes

        with _EE_LOCK:
            carried = collection.map(
                lambda f: f.set(_INDEX_PROPERTY, f.get("system:index")))
            expression = ee.serializer.encode(carried, for_cloud_api=True)
            _widen_pool()
        rows: list[Row] = []
        token: str | None = None
        while True:
            body: dict[str, Any] = {"expression": expression, "pageSize": _TABLE_PAGE_SIZE}
            if token:
                body["pageToken"] = token
            if workload_tag:
                body["workloadTag"] = workload_tag  # on the request, as compute_pixels
            with _EE_LOCK:
                request = ee.data._get_cloud_projects().table().computeFeatures(
                    project=f"projects/{self.project}", body=body)
                base = (ee.data._get_state().cloud_api_base_url or "").rstrip("/")
            if self.pixels_url and base and request.uri.startswith(base + "/"):
                request.uri = self.pixels_url + request.uri[len(base):]  # high-volume
            request.add_response_callback(self._inspect)
            page = request.execute(num_retries=num_retries)
            rows += [_table_row(feature) for feature in page.get("features") or ()]
            token = page.get("nextPageToken")
            if not token:
                return csv_bytes(rows)

    def cancel(self, name: str) -> None:
        import ee

        with _EE_LOCK:
            ee.data.cancelOperation(name)

    def ping(self) -> int:
        """A cheap authenticated call (one page of operations); returns how many it held."""
        return len(next(self.operation_pages(), []))


def _widen_pool() -> None:
    """ee.data's requests.Session keeps 10 connections per host: 40 direct requests from
    threads would open the rest anew each time and urllib3 would warn 'Connection pool is
    full, discarding connection'. Mount adapters with PIXELS_POOL on it (once per session; a
    new ee.Initialize makes a new session). Call under _EE_LOCK."""
    import ee
    from requests.adapters import HTTPAdapter

    session = ee.data._get_state().requests_session
    if session is None or session in _WIDENED:
        return
    for prefix in ("http://", "https://"):
        session.mount(prefix, HTTPAdapter(pool_connections=4, pool_maxsize=PIXELS_POOL))
    _WIDENED.add(session)


# compute_table: features a page (EE's default page, the most it is known to give), and the
# property that carries each feature's system:index through computeFeatures.
_TABLE_PAGE_SIZE = 1000
_INDEX_PROPERTY = "eebatch_system_index"


def _table_row(feature: dict[str, Any]) -> Any:
    """A computeFeatures Feature as a row of the CSV, its system:index taken off its
    properties."""
    from core.outputs.feature_csv import Row

    props = dict(feature.get("properties") or {})
    index = props.pop(_INDEX_PROPERTY, None)
    if index is None:
        raise ValueError("computeFeatures answered a feature without its system:index")
    return Row(str(index), props, feature.get("geometry"))


def _image_task(image: Any, description: str, prefix: str, export: ExportSpec, region: Any,
                crs_transform: list[float] | None, dimensions: str | None,
                priority: int | None) -> Any:
    import ee

    common: dict[str, Any] = {"description": description, "region": region,
                              "crs": export.crs, "maxPixels": export.max_pixels}
    if crs_transform is not None:
        common["crsTransform"] = crs_transform
        common["dimensions"] = dimensions
    else:
        common["scale"] = export.scale
    if priority is not None:
        common["priority"] = priority
    if export.destination == "asset":
        return ee.batch.Export.image.toAsset(
            image, assetId=f"{export.asset_folder}/{prefix}", **common)
    file_options: dict[str, Any] = {"fileNamePrefix": prefix, "fileFormat": export.file_format}
    if export.file_dimensions is not None:
        dims = export.file_dimensions
        file_options["fileDimensions"] = tuple(dims) if isinstance(dims, list) else dims
    if export.destination == "gcs":
        return ee.batch.Export.image.toCloudStorage(image, bucket=export.bucket, **common,
                                                    **file_options)
    return ee.batch.Export.image.toDrive(image, folder=export.folder, **common, **file_options)


def _table_task(collection: Any, description: str, prefix: str, export: ExportSpec,
                priority: int | None) -> Any:
    import ee

    common: dict[str, Any] = {"description": description}
    if priority is not None:
        common["priority"] = priority
    fmt = export.file_format if export.file_format.upper() != "GEOTIFF" else "CSV"
    if export.destination == "asset":
        return ee.batch.Export.table.toAsset(collection, assetId=f"{export.asset_folder}/{prefix}",
                                             **common)
    if export.destination == "gcs":
        return ee.batch.Export.table.toCloudStorage(collection, bucket=export.bucket,
                                                    fileNamePrefix=prefix, fileFormat=fmt,
                                                    **common)
    return ee.batch.Export.table.toDrive(collection, folder=export.folder, fileNamePrefix=prefix,
                                         fileFormat=fmt, **common)
