"""The few raw calls `eebatch doctor --probe` makes that the worker's adapters do not: a
constant image over a few pixels, Drive's about fields as Google sends them,
files.get and a files.list that keeps every field. On the same clients (and locks, and
retries) as core/backends/earthengine.py and drive.py."""

from __future__ import annotations

import math
from typing import Any

from core.backends.drive import Drive, _q
from core.backends.earthengine import _EE_LOCK
from core.backends.failures import http_status

# Drive v2 about fields the probe reports, in this order.
QUOTA_FIELDS = ("quotaBytesTotal", "quotaBytesUsed", "quotaBytesUsedAggregate",
                "quotaBytesUsedInTrash", "quotaType")
METRES_PER_DEGREE = 111_319.49  # EE's scale in EPSG:4326 is metres at the equator


def tiny_image() -> Any:
    """ee.Image.constant(1) as bytes: the cheapest image EE can export."""
    import ee

    with _EE_LOCK:
        return ee.Image.constant(1).toByte().rename("probe")


def tiny_region(lon: float, lat: float, scale: float) -> Any:
    """A planar lon/lat rectangle two pixels of `scale` metres a side, centred on (lon, lat)."""
    import ee

    half_lat = scale / METRES_PER_DEGREE
    half_lon = half_lat / max(math.cos(math.radians(lat)), 0.01)
    with _EE_LOCK:
        return ee.Geometry.Rectangle([lon - half_lon, lat - half_lat, lon + half_lon,
                                      lat + half_lat], "EPSG:4326", False)


def about(drive: Drive) -> dict[str, Any]:
    """Drive's about.get as Google sends it (the adapter's Quota keeps only three fields)."""
    return dict(drive._call(drive._drive.GetAbout))


def get_file(drive: Drive, file_id: str) -> dict[str, Any] | None:
    """files.get by id (not through Drive's search index); None when there is no such file."""
    def _get() -> dict[str, Any] | None:
        item = drive._drive.CreateFile({"id": file_id})
        try:
            item.FetchMetadata()
        except Exception as exc:
            if http_status(exc) == 404:
                return None
            raise
        return dict(item)

    result: dict[str, Any] | None = drive._call(_get)
    return result


def children(drive: Drive, folder_id: str, *, trashed: bool = False) -> list[dict[str, Any]]:
    """files.list of what the folder holds (folders too; trashed ones too with `trashed`), as
    Google sends each item."""
    q = f"{_q(folder_id)} in parents" + ("" if trashed else " and trashed = false")
    return [dict(f) for f in drive._call(lambda: drive._drive.ListFile({"q": q}).GetList())]


def delete_folder(drive: Drive, folder_id: str) -> None:
    """Delete a folder for good. Drive deletes what a folder holds with it: the caller deletes
    only a folder it has just seen empty."""
    drive.delete(folder_id)
