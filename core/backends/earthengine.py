"""The Earth Engine adapter, on earthengine-api: start an export under our own requestId,
list operations a page at a time, cancel, and ping."""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Iterator
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
OPERATION_GET_RETRIES = 2  # the worker retries at its next poll anyway
QUOTA_STATUS_HEADER = "x-earth-engine-quota-status"
RESTRICTED_WARNING = "Your project has exceeded its noncommercial compute quota"


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

    @classmethod
    def from_json(cls, op: dict[str, Any]) -> Operation:
        meta = op.get("metadata", {})
        error = op.get("error", {}).get("message") if op.get("done") else None
        return cls(op["name"], meta.get("description", ""), meta.get("state", "UNKNOWN"),
                   float(meta.get("progress", 1.0 if op.get("done") else 0.0)),
                   meta.get("batchEecuUsageSeconds"), error, meta.get("startTime"),
                   tuple(meta.get("destinationUris", ())), meta.get("createTime"))

    def started_at(self) -> float | None:
        """startTime as a Unix time. EE sets it when the task starts running, so a task that
        ran between two polls still gets its real start."""
        return unix_time(self.start_time)

    def created_at(self) -> float | None:
        """createTime as a Unix time (the service's clock): when the export was accepted."""
        return unix_time(self.create_time)

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

    def __init__(self, project: str) -> None:
        self.project = project
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
    def for_emulator(cls, url: str, project: str = "eebatch-demo") -> EarthEngine:
        from core.connect import init_ee

        with _EE_LOCK:
            init_ee(url, project)
        return cls(project)

    @classmethod
    def for_google(cls, project: str, credentials: Any) -> EarthEngine:
        import ee

        with _EE_LOCK:
            ee.Reset()
            ee.Initialize(credentials=credentials, project=project)
        return cls(project)

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
                response = ee.data._execute_cloud_call(request)
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

    def cancel(self, name: str) -> None:
        import ee

        with _EE_LOCK:
            ee.data.cancelOperation(name)

    def ping(self) -> int:
        """A cheap authenticated call (one page of operations); returns how many it held."""
        return len(next(self.operation_pages(), []))


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
