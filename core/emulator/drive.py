"""The Google Drive v2 API as pydrive2 speaks it, over HTTP, for one emulated user.

The handlers parse a request, call the Drive model (drive_model.py) and answer with Google's
JSON; a refusal of the model (a DriveError) becomes Google's error body and status code here.
The upload endpoints are in drive_uploads.py, the File resource and `fields=` in
drive_json.py. `DriveService` also offers the model's calls tests and benchmarks make on
`Emulator.drive` (files as File resources); the Earth Engine side holds the model itself.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlencode

from core.emulator.config import EmulatorConfig
from core.emulator.drive_json import (
    USER,
    BadRequest,
    body_json,
    file_resource,
    parent_ids,
    patch_from,
    render,
)
from core.emulator.drive_model import DriveModel
from core.emulator.drive_query import InvalidQuery, compile_query
from core.emulator.drive_types import (
    PERMISSION_ID,
    ROOT_ID,
    USER_EMAIL,
    USER_NAME,
    DriveError,
    FileInfo,
    Forbidden,
    InvalidValue,
    NotDownloadable,
    NotFound,
    StorageQuotaExceeded,
)
from core.emulator.drive_uploads import DriveUploads
from core.emulator.faults import TokenBucket, paced
from core.emulator.http import (
    FileSlice,
    Handler,
    Request,
    Response,
    Router,
    error_response,
)

MAX_PAGE = 1000

# The status code Google sends with each refusal of the model (a subclass takes its nearest
# ancestor's).
_STATUS: dict[type[DriveError], int] = {
    DriveError: 400,
    InvalidValue: 400,
    NotFound: 404,
    Forbidden: 403,
    StorageQuotaExceeded: 403,
    NotDownloadable: 403,
}


def drive_error_response(err: DriveError) -> Response:
    """Google's JSON error for a refusal of the model."""
    status = next(_STATUS[c] for c in type(err).__mro__ if c in _STATUS)
    return error_response(status, err.message, err.reason, location=err.location)


@dataclass
class _OpenSlice(FileSlice):
    """A FileSlice over an fd the model opened under its lock, so a concurrent delete cannot
    make the stream fail (the unlinked inode stays readable); paced at `rate` bytes per wall
    second and through the shared `total` bucket when the Drive's bandwidth is limited."""

    fh: BinaryIO | None = None
    rate: float | None = None
    total: TokenBucket | None = None

    def chunks(self) -> Iterator[bytes]:
        if self.rate or self.total:
            return paced(self._raw(), self.rate, self.total)
        return self._raw()

    def _raw(self) -> Iterator[bytes]:
        if self.fh is None:
            yield from super().chunks()
            return
        fh, self.fh = self.fh, None
        with fh:
            fh.seek(self.start)
            left = self.length
            while left > 0:
                data = fh.read(min(64 * 1024, left))
                if not data:
                    return
                left -= len(data)
                yield data


@functools.total_ordering
class _Desc:
    """Inverts the order of one sort-key component (orderBy '... desc')."""

    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.v == other.v

    def __lt__(self, other: _Desc) -> bool:
        return self.v > other.v

    def __hash__(self) -> int:
        return hash(self.v)


_ORDER_KEYS: dict[str, Callable[[FileInfo], Any]] = {
    "createdDate": lambda e: e.created,
    "modifiedDate": lambda e: e.modified,
    "modifiedByMeDate": lambda e: e.modified,
    "lastViewedByMeDate": lambda e: e.modified,
    "recency": lambda e: e.modified,
    "sharedWithMeDate": lambda e: 0,
    "folder": lambda e: 0 if e.folder else 1,  # folders first
    "quotaBytesUsed": lambda e: e.size,
    "starred": lambda e: 0 if e.starred else 1,
    "title": lambda e: e.title,
    "title_natural": lambda e: e.title.lower(),
}


class DriveService:
    """The HTTP face of one user's Drive (`model`). Thread-safe as the model is."""

    def __init__(self, config: EmulatorConfig, model: DriveModel) -> None:
        self.config = config
        self.model = model
        self.uploads = DriveUploads(model)
        self.base_url = "http://127.0.0.1"  # replaced by the URL of the latest request
        # Download bandwidth (config.download_rate, download_total_rate) is in simulated bytes
        # per second: on the wall clock, `speed` times as many.
        rate, total = config.download_rate, config.download_total_rate
        self.download_rate = rate * config.speed if rate else None
        self.download_total = TokenBucket(total * config.speed) if total else None

    # -- the model's calls, files as File resources (tests, benchmarks, the state view) ----

    def ensure_export_folder(self, name: str) -> str:
        return self.model.ensure_export_folder(name)

    def add_file(self, parent_id: str, title: str, src: Path, mime_type: str) -> dict[str, Any]:
        """DriveModel.add_file, answering the new file's File resource."""
        return file_resource(self.model.add_file(parent_id, title, src, mime_type), self.base_url)

    def seed_fixture_files(self, export_folder: str = "eebatch") -> dict[str, str]:
        return self.model.seed_fixture_files(export_folder)

    def free_bytes(self) -> int | None:
        return self.model.free_bytes()

    def quota_used(self) -> int:
        return self.model.quota_used()

    def find_folders(self, title: str) -> list[dict[str, Any]]:
        """Every non-trashed folder titled `title`, as File resources."""
        return [file_resource(f, self.base_url) for f in self.model.find_folders(title)]

    def state(self) -> dict[str, Any]:
        state = self.model.state()
        state["quota"]["other"] = self.model.quota_other  # Gmail and Photos
        return {**state, "uploads": self.uploads.pending()}

    # -- routes ----------------------------------------------------------------------------

    def register(self, router: Router) -> None:
        files = r"/drive/v2/files"
        fid = r"(?P<file_id>[^/]+)"
        upload = self.uploads.handle
        routes: list[tuple[str, str, Handler, str]] = [
            ("GET", r"/drive/v2/about", self._about, "about.get"),
            ("GET", files, self._list, "files.list"),
            ("POST", files, self._insert, "files.insert"),
            ("DELETE", files + r"/trash", self._empty_trash, "files.emptyTrash"),
            ("GET", files + "/" + fid, self._get, "files.get"),
            ("PATCH", files + "/" + fid, self._update, "files.patch"),
            ("PUT", files + "/" + fid, self._update, "files.update"),
            ("DELETE", files + "/" + fid, self._delete, "files.delete"),
            ("POST", files + "/" + fid + r"/trash", self._trash, "files.trash"),
            ("POST", files + "/" + fid + r"/untrash", self._untrash, "files.untrash"),
            ("GET", files + "/" + fid + r"/export", self._export, "files.export"),
            ("POST", r"/upload" + files, upload, "upload.insert"),
            ("PUT", r"/upload" + files, upload, "upload.session"),
            ("PUT", r"/upload" + files + "/" + fid, upload, "upload.update"),
        ]
        for method, pattern, handler, name in routes:
            router.add(method, pattern, self._guard(handler), name=f"drive {name}")

    def _guard(self, handler: Handler) -> Handler:
        """Require a bearer token; turn BadRequest and the model's refusals into answers."""

        def wrapped(req: Request, **kwargs: str) -> Response:
            auth = req.headers.get("authorization", "")
            if not auth.startswith("Bearer ") or not auth[7:].strip():
                return error_response(401, "Login Required.", "required", location="Authorization")
            self.base_url = req.base_url
            try:
                return handler(req, **kwargs)
            except BadRequest as bad:
                return bad.response
            except DriveError as err:
                return drive_error_response(err)

        functools.update_wrapper(wrapped, handler)
        return wrapped

    # -- about -----------------------------------------------------------------------------

    def _about(self, req: Request) -> Response:
        used, trash, change = self.model.usage()
        quota = self.model.quota
        # Gmail and Photos share the quota; the model does not split them, so Gmail holds
        # all of quota_other. Free space is quotaBytesTotal - quotaBytesUsedAggregate.
        other = self.model.quota_other
        body: dict[str, Any] = {
            "kind": "drive#about",
            "etag": f'"about-{change}"',
            "selfLink": f"{req.base_url}/drive/v2/about",
            "name": USER_NAME,
            "user": USER,
            "quotaBytesUsed": str(used),
            "quotaBytesUsedAggregate": str(used + other),
            "quotaBytesUsedInTrash": str(trash),
            "quotaType": "UNLIMITED" if quota is None else "LIMITED",
            "quotaBytesByService": [
                {"serviceName": "DRIVE", "bytesUsed": str(used)},
                {"serviceName": "GMAIL", "bytesUsed": str(other)},
                {"serviceName": "PHOTOS", "bytesUsed": "0"},
            ],
            "rootFolderId": ROOT_ID,
            "largestChangeId": str(change),
            "remainingChangeIds": "0",
            "permissionId": PERMISSION_ID,
            "languageCode": "en",
            "isCurrentAppInstalled": False,
            "domainSharingPolicy": "allowed",
            "maxUploadSizes": [{"type": "application/octet-stream", "size": "5242880000000"}],
        }
        if quota is not None:
            body["quotaBytesTotal"] = str(quota)
        return render(req, body)

    # -- list ------------------------------------------------------------------------------

    def _list(self, req: Request) -> Response:
        q = req.query.get("q", "")
        try:
            pred = compile_query(q, {"root": ROOT_ID, "me": USER_EMAIL}) if q.strip() else None
        except InvalidQuery:
            return error_response(400, "Invalid Value", "invalid", location="q")
        try:
            asked = int(req.query.get("maxResults", "100"))
            if asked < 0:
                raise ValueError
        except ValueError:
            return error_response(400, "Invalid Value", "invalid", location="maxResults")
        limit = max(1, min(asked or 100, MAX_PAGE, self.config.max_page_size))
        order_by = req.query.get("orderBy", "")
        key_fn = self._order_key(order_by)
        check = hashlib.sha1(f"{q}\0{order_by}".encode()).hexdigest()[:10]
        after = None
        token = req.query.get("pageToken")
        if token:
            try:
                data = json.loads(base64.urlsafe_b64decode(token.encode()))
                if data["c"] != check:
                    raise ValueError("token from another query")
                after = self._decode_key(order_by, data["k"])
            except Exception:
                return error_response(400, "Invalid Value", "invalid", location="pageToken")
        matched, change = self.model.search(pred)
        keyed = sorted(((key_fn(e), e) for e in matched), key=lambda ke: ke[0])
        if after is not None:
            keyed = [ke for ke in keyed if ke[0] > after]
        page, more = keyed[:limit], len(keyed) > limit
        items = [file_resource(e, req.base_url) for _, e in page]
        body: dict[str, Any] = {
            "kind": "drive#fileList",
            "etag": f'"list-{change}"',
            "selfLink": f"{req.base_url}/drive/v2/files?" + urlencode({"q": q}),
            "incompleteSearch": False,
        }
        if more:
            raw = [c.v if isinstance(c, _Desc) else c for c in page[-1][0]]
            next_token = base64.urlsafe_b64encode(
                json.dumps({"c": check, "k": raw}, separators=(",", ":")).encode()
            ).decode()
            body["nextPageToken"] = next_token
            body["nextLink"] = f"{req.base_url}/drive/v2/files?" + urlencode(
                {"q": q, "pageToken": next_token, "maxResults": limit}
            )
        body["items"] = items
        return render(req, body)

    def _order_spec(self, order_by: str) -> list[tuple[str, bool]]:
        spec: list[tuple[str, bool]] = []
        for part in filter(None, (p.strip() for p in order_by.split(","))):
            words = part.split()
            desc = len(words) == 2 and words[1].lower() == "desc"
            if words[0] not in _ORDER_KEYS or (len(words) == 2 and not desc) or len(words) > 2:
                raise BadRequest(
                    error_response(400, "Invalid Value", "invalid", location="orderBy")
                )
            spec.append((words[0], desc))
        return spec

    def _order_key(self, order_by: str) -> Callable[[FileInfo], tuple[Any, ...]]:
        spec = self._order_spec(order_by)

        def key(e: FileInfo) -> tuple[Any, ...]:
            parts = [_Desc(_ORDER_KEYS[n](e)) if d else _ORDER_KEYS[n](e) for n, d in spec]
            return (*parts, e.seq)

        return key

    def _decode_key(self, order_by: str, raw: list[Any]) -> tuple[Any, ...]:
        spec = self._order_spec(order_by)
        if len(raw) != len(spec) + 1:
            raise ValueError("bad token")
        parts = [_Desc(v) if d else v for (_, d), v in zip(spec, raw, strict=False)]
        return (*parts, int(raw[-1]))

    # -- get / download / export -----------------------------------------------------------

    def _get(self, req: Request, file_id: str) -> Response:
        if req.query.get("alt") == "media":
            return self._download(req, file_id)
        return render(req, file_resource(self.model.get(file_id), req.base_url))

    def _download(self, req: Request, file_id: str) -> Response:
        """The bytes, from a handle the model opened (so a later delete cannot break the
        stream); Range is answered like Drive: 206 + Content-Range, clamped past EOF."""
        entry, fh = self.model.open_content(file_id)
        size = entry.size
        headers = {
            "Content-Type": entry.mime_type,
            "Accept-Ranges": "bytes",
            "ETag": f'"{entry.md5}"',
            "X-Goog-Hash": "md5=" + base64.b64encode(bytes.fromhex(entry.md5 or "")).decode(),
        }
        start, end, partial = 0, size - 1, False
        rng = req.headers.get("range", "").strip()
        m = re.fullmatch(r"bytes\s*=\s*(\d*)\s*-\s*(\d*)", rng.split(",")[0]) if rng else None
        if m and (m.group(1) or m.group(2)):
            first, last = m.group(1), m.group(2)
            if first:
                start = int(first)
                end = min(int(last), size - 1) if last else size - 1
            else:  # a suffix range: the last N bytes
                start, end = max(0, size - int(last)), size - 1
            if start >= size or start > end:
                fh.close()
                resp = error_response(
                    416, "Request range not satisfiable", "requestedRangeNotSatisfiable"
                )
                resp.headers["Content-Range"] = f"bytes */{size}"
                return resp
            partial = True
        length = max(0, end - start + 1)
        if partial:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return Response(
            206 if partial else 200,
            headers=headers,
            file=_OpenSlice(
                Path(fh.name), start, length, fh, self.download_rate, self.download_total
            ),
        )

    def _export(self, req: Request, file_id: str) -> Response:
        self.model.get(file_id)
        return error_response(
            403,
            "Export only supports Docs Editors files.",
            "fileNotDownloadable",
            location="fileId",
        )

    # -- metadata writes -------------------------------------------------------------------

    def _insert(self, req: Request) -> Response:
        """files.insert without media: folders (and empty files)."""
        meta = body_json(req)
        title = str(meta.get("title") or "Untitled")
        mime = str(meta.get("mimeType") or "application/octet-stream")
        parents = parent_ids(meta.get("parents"))
        entry = self.model.insert(title, mime, parents, patch_from(meta, req))
        return render(req, file_resource(entry, req.base_url))

    def _update(self, req: Request, file_id: str) -> Response:
        meta = body_json(req)
        entry = self.model.update(file_id, patch_from(meta, req))
        return render(req, file_resource(entry, req.base_url))

    def _delete(self, req: Request, file_id: str) -> Response:
        self.model.delete(file_id)
        return Response(204)

    def _trash(self, req: Request, file_id: str) -> Response:
        return render(req, file_resource(self.model.set_trashed(file_id, True), req.base_url))

    def _untrash(self, req: Request, file_id: str) -> Response:
        return render(req, file_resource(self.model.set_trashed(file_id, False), req.base_url))

    def _empty_trash(self, req: Request) -> Response:
        self.model.empty_trash()
        return Response(204)
