"""The Google Drive v2 API as pydrive2 speaks it, for one emulated user.

Metadata lives in memory behind one lock; file bytes live on disk, one blob per file id, and
are streamed in both directions. The Earth Engine side calls `ensure_export_folder`,
`free_bytes` and `add_file` to drop finished exports into this Drive.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import os
import random
import re
import shutil
import string
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlencode

from core.emulator.config import EmulatorConfig
from core.emulator.drive_query import InvalidQuery, compile_query, parse_date
from core.emulator.http import (
    FileSlice,
    Handler,
    Request,
    Response,
    Router,
    error_response,
    json_response,
)

FOLDER_MIME = "application/vnd.google-apps.folder"
ROOT_ID = "0AEmuRootFolderIdUk9PVA"
USER_NAME = "Emulator User"
USER_EMAIL = "emulator@example.com"
PERMISSION_ID = "00000000000000000000"
USER = {
    "kind": "drive#user",
    "displayName": USER_NAME,
    "emailAddress": USER_EMAIL,
    "isAuthenticatedUser": True,
    "permissionId": PERMISSION_ID,
}
MAX_PAGE = 1000
_ID_CHARS = string.ascii_letters + string.digits + "-_"
# Ids never repeat, not even across emulator restarts (a restarted emulator handing out the
# ids of files a session already downloaded made it take new files for old ones), as Google's.
_IDS = random.SystemRandom()
_HASH_CHUNK = 1 << 20


def rfc3339(ts: float) -> str:
    """Epoch seconds → '2026-11-21T03:35:40.639Z' (Drive always sends milliseconds)."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def md5_file(path: Path) -> tuple[str, int]:
    """(lowercase hex md5, size), read in 1 MiB pieces."""
    digest = hashlib.md5()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(_HASH_CHUNK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


# -- fields= partial responses -------------------------------------------------------------

FieldTree = dict[str, "FieldTree | None"]


class InvalidFields(ValueError):
    pass


def parse_fields(spec: str) -> FieldTree:
    """Google's field-mask syntax: 'a,b/c,d(e,f),*' → {'a': None, 'b': {'c': None}, ...}."""
    tokens = re.findall(r"[A-Za-z0-9_*]+|[(),/]|\s+|.", spec)
    tokens = [t for t in tokens if not t.isspace()]
    pos = 0

    def merge(tree: FieldTree, key: str, sub: FieldTree | None) -> None:
        if key in tree:
            old = tree[key]
            if old is None or sub is None:
                tree[key] = None
            else:
                for k, v in sub.items():
                    merge(old, k, v)
        else:
            tree[key] = sub

    def parse_list(closing: str | None) -> FieldTree:
        nonlocal pos
        tree: FieldTree = {}
        while True:
            path: list[str] = []
            while True:
                if pos >= len(tokens) or not re.fullmatch(r"[A-Za-z0-9_*]+", tokens[pos]):
                    raise InvalidFields(spec)
                path.append(tokens[pos])
                pos += 1
                if pos < len(tokens) and tokens[pos] == "/":
                    pos += 1
                    continue
                break
            sub: FieldTree | None = None
            if pos < len(tokens) and tokens[pos] == "(":
                pos += 1
                sub = parse_list(")")
            for name in reversed(path[1:]):
                sub = {name: sub}
            merge(tree, path[0], sub)
            if pos < len(tokens) and tokens[pos] == ",":
                pos += 1
                continue
            if closing is None:
                if pos != len(tokens):
                    raise InvalidFields(spec)
                return tree
            if pos < len(tokens) and tokens[pos] == closing:
                pos += 1
                return tree
            raise InvalidFields(spec)

    if not tokens:
        raise InvalidFields(spec)
    return parse_list(None)


def apply_fields(obj: Any, tree: FieldTree | None) -> Any:
    """Keep only the selected fields; a selection under a list applies to each element."""
    if tree is None:
        return obj
    if isinstance(obj, list):
        return [apply_fields(x, tree) for x in obj]
    if not isinstance(obj, dict):
        return obj
    out = {}
    for key, value in obj.items():
        if key in tree:
            out[key] = apply_fields(value, tree[key])
        elif "*" in tree:
            out[key] = apply_fields(value, tree["*"])
    return out


# -- storage -------------------------------------------------------------------------------


@dataclass
class _Entry:
    id: str
    title: str
    mime_type: str
    parents: list[str]
    created: float
    modified: float
    seq: int  # creation order: the default list order and part of every page-token key
    size: int = 0
    md5: str | None = None
    explicitly_trashed: bool = False
    starred: bool = False
    hidden: bool = False
    description: str | None = None
    version: int = 1
    original_filename: str | None = None

    @property
    def folder(self) -> bool:
        return self.mime_type == FOLDER_MIME

    @property
    def has_content(self) -> bool:
        return not self.mime_type.startswith("application/vnd.google-apps.")


@dataclass
class _Upload:
    """A resumable upload session: bytes accumulate in `path` until `received == total`."""

    id: str
    path: Path
    meta: dict[str, Any]
    mime_type: str
    target: str | None  # the file id for a content update, None for an insert
    total: int | None
    received: int = 0
    done_id: str | None = None  # set once finished, so a late status query gets the File
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _OpenSlice(FileSlice):
    """A FileSlice over an fd opened under the metadata lock, so a concurrent delete cannot
    make the stream fail (the unlinked inode stays readable)."""

    fh: BinaryIO | None = None

    def chunks(self) -> Iterator[bytes]:
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


_ORDER_KEYS: dict[str, Callable[[_Entry], Any]] = {
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


class _BadRequest(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _not_found(file_id: str) -> _BadRequest:
    return _BadRequest(
        error_response(404, f"File not found: {file_id}.", "notFound", location="fileId")
    )


class DriveService:
    """One user's Drive. Thread-safe: every metadata access holds `_lock`; blob I/O does not."""

    def __init__(
        self,
        config: EmulatorConfig,
        root_dir: Path,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.root_dir = Path(root_dir)
        self._blobs = self.root_dir / "blobs"
        self._partials = self.root_dir / "uploads"
        # Metadata is in memory only, so blobs left by an earlier run are unreachable.
        for d in (self._blobs, self._partials):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True, exist_ok=True)
        self._now = now
        self._lock = threading.RLock()
        self._rng = random.Random(f"drive-{config.seed}")
        self._seq = 0
        self._last_stamp = 0.0
        self._used = 0
        self._change_id = 1000
        self._files: dict[str, _Entry] = {}
        self._children: dict[str, set[str]] = {}
        self._uploads: dict[str, _Upload] = {}
        self.base_url = "http://127.0.0.1"  # replaced by the URL of the latest request
        stamp = self._stamp()
        self._files[ROOT_ID] = _Entry(ROOT_ID, "My Drive", FOLDER_MIME, [], stamp, stamp, 0)
        self._children[ROOT_ID] = set()

    # -- public API for the Earth Engine side ----------------------------------------------

    def ensure_export_folder(self, name: str) -> str:
        """EE's `folder=` rule: a non-trashed folder titled exactly `name` at any depth (the
        most recently modified if several), else a new one at the root. 'a/b' is one title;
        an empty name means the root itself."""
        if not name:  # no folder given: EE writes to the Drive root
            return ROOT_ID
        with self._lock:
            memo: dict[str, bool] = {}
            found = [
                e
                for e in self._files.values()
                if e.folder and e.id != ROOT_ID and e.title == name and not self._trashed(e, memo)
            ]
            if found:
                return max(found, key=lambda e: (e.modified, e.seq)).id
            return self._create(name, FOLDER_MIME, [ROOT_ID]).id

    def add_file(self, parent_id: str, title: str, src: Path, mime_type: str) -> dict[str, Any]:
        """Move `src` into storage as a new file in `parent_id` and return its File resource.
        Quota is not checked (EE checks `free_bytes()` first). Raises KeyError for an unknown
        parent, so call `ensure_export_folder` right before."""
        with self._lock:
            parent = self._files.get(parent_id)
            if parent is None or not parent.folder:
                raise KeyError(f"no Drive folder {parent_id!r}")
            file_id = self._new_id()
        blob = self._blob(file_id)
        shutil.move(os.fspath(src), blob)
        md5, size = md5_file(blob)
        with self._lock:
            if parent_id not in self._files:
                blob.unlink(missing_ok=True)
                raise KeyError(f"no Drive folder {parent_id!r}")
            entry = self._create(title, mime_type, [parent_id], size=size, md5=md5, file_id=file_id)
            return self._resource(entry, self.base_url, {})

    def seed_fixture_files(self, export_folder: str = "eebatch") -> dict[str, str]:
        """Test data worth having: the export folder at the root plus a nested
        duplicate of it, a zero-byte file and a title with a quote and a backslash. Never
        called on start; returns the ids by role."""
        with self._lock:
            top = self._create(export_folder, FOLDER_MIME, [ROOT_ID])
            archive = self._create("archive", FOLDER_MIME, [ROOT_ID])
            nested = self._create(export_folder, FOLDER_MIME, [archive.id])
            ids = {"export_folder": top.id, "archive": archive.id, "nested_duplicate": nested.id}
            for role, title, data in (
                ("empty_file", "empty.tif", b""),
                ("quoted_file", "Valentine's Day \\ x.tif", b"II*\x00"),
            ):
                file_id = self._new_id()
                self._blob(file_id).write_bytes(data)
                entry = self._create(
                    title,
                    "image/tiff",
                    [top.id],
                    size=len(data),
                    md5=hashlib.md5(data).hexdigest(),
                    file_id=file_id,
                )
                ids[role] = entry.id
            return ids

    def free_bytes(self) -> int | None:
        """Quota left, or None for an unlimited Drive."""
        if self.config.drive_quota is None:
            return None
        with self._lock:
            return max(0, self.config.drive_quota - self._used)

    def quota_used(self) -> int:
        with self._lock:
            return self._used

    def find_folders(self, title: str) -> list[dict[str, Any]]:
        """Every non-trashed folder titled `title` (tests and the state view)."""
        with self._lock:
            memo: dict[str, bool] = {}
            return [
                self._resource(e, self.base_url, memo)
                for e in self._files.values()
                if e.folder and e.id != ROOT_ID and e.title == title and not self._trashed(e, memo)
            ]

    def state(self) -> dict[str, Any]:
        with self._lock:
            memo: dict[str, bool] = {}
            files = [
                {
                    "id": e.id,
                    "title": e.title,
                    "mimeType": e.mime_type,
                    "parents": list(e.parents),
                    "fileSize": e.size,
                    "md5Checksum": e.md5,
                    "trashed": self._trashed(e, memo),
                    "explicitlyTrashed": e.explicitly_trashed,
                    "createdDate": rfc3339(e.created),
                    "modifiedDate": rfc3339(e.modified),
                }
                for e in sorted(self._files.values(), key=lambda e: e.seq)
                if e.id != ROOT_ID
            ]
            return {
                "rootFolderId": ROOT_ID,
                "files": files,
                "quota": {
                    "total": self.config.drive_quota,
                    "used": self._used,
                    "trash": self._trash_bytes(),
                },
                "uploads": sum(1 for u in self._uploads.values() if u.done_id is None),
            }

    # -- routes ----------------------------------------------------------------------------

    def register(self, router: Router) -> None:
        files = r"/drive/v2/files"
        fid = r"(?P<file_id>[^/]+)"
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
            ("POST", r"/upload" + files, self._upload, "upload.insert"),
            ("PUT", r"/upload" + files, self._upload, "upload.session"),
            ("PUT", r"/upload" + files + "/" + fid, self._upload, "upload.update"),
        ]
        for method, pattern, handler, name in routes:
            router.add(method, pattern, self._guard(handler), name=f"drive {name}")

    def _guard(self, handler: Handler) -> Handler:
        """Require a bearer token and turn _BadRequest into its error response."""

        def wrapped(req: Request, **kwargs: str) -> Response:
            auth = req.headers.get("authorization", "")
            if not auth.startswith("Bearer ") or not auth[7:].strip():
                return error_response(401, "Login Required.", "required", location="Authorization")
            self.base_url = req.base_url
            try:
                return handler(req, **kwargs)
            except _BadRequest as bad:
                return bad.response

        functools.update_wrapper(wrapped, handler)
        return wrapped

    # -- about -----------------------------------------------------------------------------

    def _about(self, req: Request) -> Response:
        with self._lock:
            used, trash, change = self._used, self._trash_bytes(), self._change_id
        quota = self.config.drive_quota
        body: dict[str, Any] = {
            "kind": "drive#about",
            "etag": f'"about-{change}"',
            "selfLink": f"{req.base_url}/drive/v2/about",
            "name": USER_NAME,
            "user": USER,
            "quotaBytesUsed": str(used),
            "quotaBytesUsedAggregate": str(used),
            "quotaBytesUsedInTrash": str(trash),
            "quotaType": "UNLIMITED" if quota is None else "LIMITED",
            "quotaBytesByService": [{"serviceName": "DRIVE", "bytesUsed": str(used)}],
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
        return self._json(req, body)

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
        with self._lock:
            memo: dict[str, bool] = {}
            matched = [
                e
                for e in self._files.values()
                if e.id != ROOT_ID and (pred is None or pred(self._query_view(e, memo)))
            ]
            keyed = sorted(((key_fn(e), e) for e in matched), key=lambda ke: ke[0])
            if after is not None:
                keyed = [ke for ke in keyed if ke[0] > after]
            page, more = keyed[:limit], len(keyed) > limit
            items = [self._resource(e, req.base_url, memo) for _, e in page]
            change = self._change_id
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
        return self._json(req, body)

    def _order_spec(self, order_by: str) -> list[tuple[str, bool]]:
        spec: list[tuple[str, bool]] = []
        for part in filter(None, (p.strip() for p in order_by.split(","))):
            words = part.split()
            desc = len(words) == 2 and words[1].lower() == "desc"
            if words[0] not in _ORDER_KEYS or (len(words) == 2 and not desc) or len(words) > 2:
                raise _BadRequest(
                    error_response(400, "Invalid Value", "invalid", location="orderBy")
                )
            spec.append((words[0], desc))
        return spec

    def _order_key(self, order_by: str) -> Callable[[_Entry], tuple[Any, ...]]:
        spec = self._order_spec(order_by)

        def key(e: _Entry) -> tuple[Any, ...]:
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
        with self._lock:
            entry = self._lookup(file_id)
            if req.query.get("alt") == "media":
                return self._download(req, entry)
            body = self._resource(entry, req.base_url, {})
        return self._json(req, body)

    def _download(self, req: Request, entry: _Entry) -> Response:
        """Called under the lock; opens the blob now so a later delete cannot break the
        stream, and answers Range like Drive: 206 + Content-Range, clamped past EOF."""
        if entry.folder or not entry.has_content:
            return error_response(
                403,
                "Only files with binary content can be downloaded. Use Export with Docs "
                "Editors files.",
                "fileNotDownloadable",
                location="alt",
            )
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
                resp = error_response(
                    416, "Request range not satisfiable", "requestedRangeNotSatisfiable"
                )
                resp.headers["Content-Range"] = f"bytes */{size}"
                return resp
            partial = True
        length = max(0, end - start + 1)
        if partial:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        fh = open(self._blob(entry.id), "rb")  # noqa: SIM115 - closed by the stream
        return Response(
            206 if partial else 200,
            headers=headers,
            file=_OpenSlice(self._blob(entry.id), start, length, fh),
        )

    def _export(self, req: Request, file_id: str) -> Response:
        with self._lock:
            self._lookup(file_id)
        return error_response(
            403,
            "Export only supports Docs Editors files.",
            "fileNotDownloadable",
            location="fileId",
        )

    # -- metadata writes -------------------------------------------------------------------

    def _insert(self, req: Request) -> Response:
        """files.insert without media: folders (and empty files)."""
        meta = self._body_json(req)
        with self._lock:
            parents = self._parents_from(meta.get("parents"))
            mime = str(meta.get("mimeType") or "application/octet-stream")
            entry = self._create(
                str(meta.get("title") or "Untitled"),
                mime,
                parents,
                size=0,
                md5=None if mime == FOLDER_MIME else hashlib.md5(b"").hexdigest(),
            )
            if entry.has_content:
                self._blob(entry.id).touch()
            self._apply_meta(entry, meta, req, modified=False)
            body = self._resource(entry, req.base_url, {})
        return self._json(req, body)

    def _update(self, req: Request, file_id: str) -> Response:
        meta = self._body_json(req)
        with self._lock:
            entry = self._lookup(file_id)
            if entry.id == ROOT_ID:
                raise _BadRequest(error_response(403, "The root folder cannot be modified."))
            self._apply_meta(entry, meta, req, modified=True)
            body = self._resource(entry, req.base_url, {})
        return self._json(req, body)

    def _apply_meta(self, e: _Entry, meta: dict[str, Any], req: Request, *, modified: bool) -> None:
        """Apply a File body (patch semantics) plus addParents/removeParents; under the lock."""
        if "title" in meta and meta["title"] is not None:
            e.title = str(meta["title"])
        if "description" in meta:
            e.description = meta["description"]
        if meta.get("mimeType") and not e.folder:
            e.mime_type = str(meta["mimeType"])
        labels = meta.get("labels") or {}
        for key in ("starred", "hidden"):
            if key in labels:
                setattr(e, key, bool(labels[key]))
        if "trashed" in labels:
            e.explicitly_trashed = bool(labels["trashed"])
        parents = list(e.parents)
        if "parents" in meta and modified:
            parents = self._parents_from(meta["parents"])
        for pid in filter(None, req.query.get("addParents", "").split(",")):
            pid = self._parents_from([{"id": pid}])[0]
            if pid not in parents:
                parents.append(pid)
        for pid in filter(None, req.query.get("removeParents", "").split(",")):
            pid = ROOT_ID if pid == "root" else pid
            if pid in parents:
                parents.remove(pid)
        if parents != e.parents:
            for pid in parents:
                if pid == e.id or self._is_descendant(pid, e.id):
                    raise _BadRequest(error_response(400, "A folder cannot contain itself."))
            self._set_parents(e, parents)
        if modified:
            e.version += 1
            e.modified = self._stamp()
        if meta.get("modifiedDate") and req.query.get("setModifiedDate") == "true":
            try:
                e.modified = parse_date(str(meta["modifiedDate"]))
            except InvalidQuery:
                raise _BadRequest(
                    error_response(400, "Invalid Value", "invalid", location="modifiedDate")
                ) from None
        self._change_id += 1

    def _delete(self, req: Request, file_id: str) -> Response:
        with self._lock:
            entry = self._lookup(file_id)
            if entry.id == ROOT_ID:
                return error_response(
                    403, "The root folder cannot be deleted.", "insufficientFilePermissions"
                )
            self._remove_tree(entry.id)
        return Response(204)

    def _trash(self, req: Request, file_id: str) -> Response:
        return self._set_trashed(req, file_id, True)

    def _untrash(self, req: Request, file_id: str) -> Response:
        return self._set_trashed(req, file_id, False)

    def _set_trashed(self, req: Request, file_id: str, trashed: bool) -> Response:
        with self._lock:
            entry = self._lookup(file_id)
            if entry.id == ROOT_ID:
                return error_response(
                    403, "The root folder cannot be trashed.", "insufficientFilePermissions"
                )
            entry.explicitly_trashed = trashed
            entry.version += 1
            self._change_id += 1
            body = self._resource(entry, req.base_url, {})
        return self._json(req, body)

    def _empty_trash(self, req: Request) -> Response:
        with self._lock:
            explicit = [e.id for e in self._files.values() if e.explicitly_trashed]
            for file_id in explicit:
                if file_id in self._files:
                    self._remove_tree(file_id)
        return Response(204)

    # -- uploads ---------------------------------------------------------------------------

    def _upload(self, req: Request, file_id: str | None = None) -> Response:
        upload_id = req.query.get("upload_id")
        if upload_id:
            return self._upload_chunk(req, upload_id)
        kind = req.query.get("uploadType", "media")
        if req.method == "PUT" and file_id is None:
            return error_response(400, "Missing upload_id.", "badRequest", location="upload_id")
        if kind == "resumable":
            return self._upload_start(req, file_id)
        if kind == "multipart":
            meta, mime, data = self._split_multipart(req)
        elif kind == "media":
            meta, mime, data = {}, req.headers.get("content-type", ""), req.body
        else:
            return error_response(400, "Invalid Value", "invalid", location="uploadType")
        mime = str(meta.get("mimeType") or mime or "application/octet-stream")
        with self._lock:
            target = self._lookup(file_id) if file_id else None
            parents = [] if target else self._parents_from(meta.get("parents"))
        self._check_quota(len(data), target.id if target else None)
        if not target:
            meta["parents"] = [{"id": p} for p in parents]
        upload = _Upload(
            self._new_upload_id(), self._partial_path(), meta, mime, file_id, len(data)
        )
        upload.path.write_bytes(data)
        upload.received = len(data)
        return self._json(req, self._finish(req, upload))

    def _upload_start(self, req: Request, file_id: str | None) -> Response:
        meta = self._body_json(req)
        total_header = req.headers.get("x-upload-content-length")
        try:
            total = int(total_header) if total_header else None
        except ValueError:
            return error_response(400, "Invalid X-Upload-Content-Length.", "badRequest")
        with self._lock:
            target = self._lookup(file_id) if file_id else None
            parents = None if target else self._parents_from(meta.get("parents"))
        if total is not None:
            self._check_quota(total, file_id)
        mime = str(
            meta.get("mimeType")
            or req.headers.get("x-upload-content-type")
            or (target.mime_type if target else "application/octet-stream")
        )
        if parents is not None:
            meta["parents"] = [{"id": p} for p in parents]
        upload = _Upload(self._new_upload_id(), self._partial_path(), meta, mime, file_id, total)
        upload.path.touch()
        with self._lock:
            self._uploads[upload.id] = upload
        path = "/upload/drive/v2/files" + (f"/{file_id}" if file_id else "")
        query = {k: v for k, v in req.query.items() if k != "upload_id"}
        query["upload_id"] = upload.id
        location = f"{req.base_url}{path}?{urlencode(query)}"
        return Response(200, b"", {"Location": location, "X-GUploader-UploadID": upload.id})

    def _upload_chunk(self, req: Request, upload_id: str) -> Response:
        with self._lock:
            upload = self._uploads.get(upload_id)
        if upload is None:
            return error_response(
                404, "Upload session not found.", "notFound", location="upload_id"
            )
        with upload.lock:
            if upload.done_id is not None:
                with self._lock:
                    entry = self._files.get(upload.done_id)
                    if entry is None:
                        return error_response(404, "Upload session not found.", "notFound")
                    return self._json(req, self._resource(entry, req.base_url, {}))
            crange = req.headers.get("content-range", "").strip()
            data = req.body
            if not crange:  # googleapiclient sends an empty file without Content-Range
                start, total = 0, len(data)
            elif m := re.fullmatch(r"bytes \*/(\d+|\*)", crange):
                if data:
                    return error_response(400, "Invalid Content-Range.", "badRequest")
                if m.group(1) != "*":
                    upload.total = int(m.group(1))
                return self._upload_progress(req, upload)
            elif m := re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", crange):
                start, end = int(m.group(1)), int(m.group(2))
                total = None if m.group(3) == "*" else int(m.group(3))
                if end < start or end - start + 1 != len(data):
                    return error_response(
                        400, "Content-Range does not match the body.", "badRequest"
                    )
            else:
                return error_response(400, "Invalid Content-Range.", "badRequest")
            if start > upload.received:
                return error_response(400, "Upload chunks must be contiguous.", "badRequest")
            if total is not None:
                if start + len(data) > total or (upload.total not in (None, total)):
                    return error_response(400, "Content-Range total mismatch.", "badRequest")
                upload.total = total
            try:
                self._check_quota(start + len(data), upload.target)
            except _BadRequest:
                self._drop_upload(upload)
                raise
            with open(upload.path, "r+b") as fh:
                fh.seek(start)
                fh.write(data)
            upload.received = max(upload.received, start + len(data))
            return self._upload_progress(req, upload)

    def _upload_progress(self, req: Request, upload: _Upload) -> Response:
        if upload.total is not None and upload.received >= upload.total:
            return self._json(req, self._finish(req, upload))
        headers = {"X-GUploader-UploadID": upload.id}
        if upload.received:
            headers["Range"] = f"bytes=0-{upload.received - 1}"
        return Response(308, b"", headers)

    def _finish(self, req: Request, upload: _Upload) -> dict[str, Any]:
        """Turn a complete upload into a file (or new content of `upload.target`)."""
        with open(upload.path, "r+b") as fh:
            fh.truncate(upload.received)
        md5, size = md5_file(upload.path)
        try:
            self._check_quota(size, upload.target)
        except _BadRequest:
            self._drop_upload(upload)
            raise
        with self._lock:
            if upload.target is not None:
                entry = self._lookup(upload.target)
                os.replace(upload.path, self._blob(entry.id))
                self._used += size - entry.size
                entry.size, entry.md5 = size, md5
                entry.mime_type = upload.mime_type if not entry.folder else entry.mime_type
                self._apply_meta(entry, upload.meta, req, modified=True)
            else:
                parents = self._parents_from(upload.meta.get("parents"))
                file_id = self._new_id()
                os.replace(upload.path, self._blob(file_id))
                title = str(upload.meta.get("title") or "Untitled")
                entry = self._create(
                    title, upload.mime_type, parents, size=size, md5=md5, file_id=file_id
                )
                meta = {k: v for k, v in upload.meta.items() if k != "parents"}
                self._apply_meta(entry, meta, req, modified=False)
            entry.original_filename = entry.title
            upload.done_id = entry.id
            return self._resource(entry, req.base_url, {})

    def _drop_upload(self, upload: _Upload) -> None:
        with self._lock:
            self._uploads.pop(upload.id, None)
        upload.path.unlink(missing_ok=True)

    def _check_quota(self, new_bytes: int, replacing: str | None) -> None:
        quota = self.config.drive_quota
        if quota is None:
            return
        with self._lock:
            freed = self._files[replacing].size if replacing in self._files else 0
            if self._used - freed + new_bytes > quota:
                raise _BadRequest(
                    error_response(
                        403,
                        "The user's Drive storage quota has been exceeded.",
                        "storageQuotaExceeded",
                    )
                )

    def _split_multipart(self, req: Request) -> tuple[dict[str, Any], str, bytes]:
        """multipart/related: part 1 the JSON metadata, part 2 the media."""
        ctype = req.headers.get("content-type", "")
        m = re.search(r'boundary="?([^";]+)"?', ctype)
        if not ctype.startswith("multipart/related") or not m:
            raise _BadRequest(error_response(400, "Expected multipart/related.", "badRequest"))
        delim = b"--" + m.group(1).encode()
        pieces = req.body.split(delim)
        parts: list[tuple[dict[str, str], bytes]] = []
        for piece in pieces[1:]:
            if piece.startswith(b"--"):
                break
            piece = piece.lstrip(b"\r\n")
            # googleapiclient's generator ends lines with \n; others use \r\n.
            seps = [
                (piece.find(sep), sep, eol)
                for sep, eol in ((b"\r\n\r\n", b"\r\n"), (b"\n\n", b"\n"))
            ]
            seps = [s for s in seps if s[0] >= 0]
            if not seps:
                raise _BadRequest(error_response(400, "Malformed multipart body.", "badRequest"))
            at, sep, eol = min(seps)
            head, body = piece[:at], piece[at + len(sep) :]
            if body.endswith(eol):
                body = body[: -len(eol)]
            headers = {}
            for line in head.decode("latin-1").splitlines():
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            parts.append((headers, body))
        if len(parts) != 2:
            raise _BadRequest(error_response(400, "Expected two parts.", "badRequest"))
        try:
            meta = json.loads(parts[0][1] or b"{}")
        except ValueError:
            raise _BadRequest(error_response(400, "Parse Error", "parseError")) from None
        return meta, parts[1][0].get("content-type", ""), parts[1][1]

    # -- helpers (callers hold the lock unless noted) ----------------------------------------

    def _json(self, req: Request, body: dict[str, Any]) -> Response:
        spec = req.query.get("fields")
        if spec:
            try:
                body = apply_fields(body, parse_fields(spec))
            except InvalidFields:
                return error_response(
                    400, "Invalid field selection.", "invalidParameter", location="fields"
                )
        return json_response(body)

    def _body_json(self, req: Request) -> dict[str, Any]:
        try:
            data = req.json()
        except ValueError:
            raise _BadRequest(error_response(400, "Parse Error", "parseError")) from None
        if not isinstance(data, dict):
            raise _BadRequest(error_response(400, "Parse Error", "parseError"))
        return data

    def _lookup(self, file_id: str) -> _Entry:
        entry = self._files.get(ROOT_ID if file_id == "root" else file_id)
        if entry is None:
            raise _not_found(file_id)
        return entry

    def _parents_from(self, refs: Any) -> list[str]:
        """[{'id': ...}, ...] → checked folder ids; none means the root."""
        if not refs:
            return [ROOT_ID]
        out: list[str] = []
        for ref in refs:
            pid = ref.get("id") if isinstance(ref, dict) else None
            if not pid:
                raise _BadRequest(
                    error_response(400, "Invalid Value", "invalid", location="parents.id")
                )
            pid = ROOT_ID if pid == "root" else pid
            parent = self._files.get(pid)
            if parent is None or not parent.folder:
                raise _not_found(pid)
            if pid not in out:
                out.append(pid)
        return out

    def _stamp(self) -> float:
        """Now, in whole milliseconds, strictly after every earlier stamp, so 'most recently
        modified' never ties."""
        with self._lock:
            t = max(round(self._now(), 3), round(self._last_stamp + 0.001, 3))
            self._last_stamp = t
            return t

    def _new_id(self) -> str:
        with self._lock:
            while True:
                file_id = "1" + "".join(_IDS.choice(_ID_CHARS) for _ in range(32))
                if file_id not in self._files:
                    return file_id

    def _new_upload_id(self) -> str:
        return base64.urlsafe_b64encode(os.urandom(18)).decode()

    def _partial_path(self) -> Path:
        return self._partials / base64.urlsafe_b64encode(os.urandom(12)).decode()

    def _blob(self, file_id: str) -> Path:
        return self._blobs / file_id

    def _create(
        self,
        title: str,
        mime_type: str,
        parents: list[str],
        *,
        size: int = 0,
        md5: str | None = None,
        file_id: str | None = None,
    ) -> _Entry:
        stamp = self._stamp()
        self._seq += 1
        entry = _Entry(
            file_id or self._new_id(),
            title,
            mime_type,
            [],
            stamp,
            stamp,
            self._seq,
            size=size,
            md5=md5,
        )
        self._files[entry.id] = entry
        if entry.folder:
            self._children.setdefault(entry.id, set())
        self._set_parents(entry, parents)
        self._used += size
        self._change_id += 1
        return entry

    def _set_parents(self, entry: _Entry, parents: list[str]) -> None:
        for pid in entry.parents:
            self._children.get(pid, set()).discard(entry.id)
        entry.parents = list(parents)
        stamp = self._stamp()
        for pid in parents:
            self._children.setdefault(pid, set()).add(entry.id)
            # A folder's modifiedDate follows its newest child, which EE's folder rule uses.
            if pid != ROOT_ID and pid in self._files:
                self._files[pid].modified = stamp

    def _is_descendant(self, candidate: str, ancestor: str) -> bool:
        seen: set[str] = set()
        todo = [candidate]
        while todo:
            cur = todo.pop()
            if cur == ancestor:
                return True
            if cur in seen or cur not in self._files:
                continue
            seen.add(cur)
            todo.extend(self._files[cur].parents)
        return False

    def _remove_tree(self, file_id: str) -> None:
        """Delete a file, or a folder and every descendant that has no other parent left."""
        todo = [file_id]
        while todo:
            cur = todo.pop()
            entry = self._files.pop(cur, None)
            if entry is None:
                continue
            for pid in entry.parents:
                self._children.get(pid, set()).discard(cur)
            for child_id in self._children.pop(cur, set()):
                child = self._files.get(child_id)
                if child is None:
                    continue
                child.parents = [p for p in child.parents if p != cur]
                if not child.parents:
                    todo.append(child_id)
            self._used -= entry.size
            with contextlib.suppress(FileNotFoundError):
                self._blob(cur).unlink()
        self._change_id += 1

    def _trashed(self, e: _Entry, memo: dict[str, bool]) -> bool:
        """Explicitly trashed, or inside a trashed folder."""
        if e.id in memo:
            return memo[e.id]
        memo[e.id] = e.explicitly_trashed  # guards against parent cycles
        result = e.explicitly_trashed or any(
            self._trashed(self._files[p], memo) for p in e.parents if p in self._files
        )
        memo[e.id] = result
        return result

    def _trash_bytes(self) -> int:
        memo: dict[str, bool] = {}
        return sum(e.size for e in self._files.values() if self._trashed(e, memo))

    def _query_view(self, e: _Entry, memo: dict[str, bool]) -> dict[str, Any]:
        return {
            "title": e.title,
            "mimeType": e.mime_type,
            "fullText": f"{e.title} {e.description or ''}",
            "parents": e.parents,
            "owners": (USER_EMAIL,),
            "writers": (USER_EMAIL,),
            "readers": (USER_EMAIL,),
            "trashed": self._trashed(e, memo),
            "starred": e.starred,
            "hidden": e.hidden,
            "createdDate": e.created,
            "modifiedDate": e.modified,
            "modifiedByMeDate": e.modified,
            "lastViewedByMeDate": e.modified,
            "sharedWithMe": False,
        }

    def _resource(self, e: _Entry, base: str, memo: dict[str, bool]) -> dict[str, Any]:
        """The v2 File resource: int64 as strings, dates RFC 3339 with ms."""
        link = f"{base}/drive/v2/files/{e.id}"
        etag = hashlib.md5(f"{e.id}:{e.version}:{e.modified}".encode()).hexdigest()[:16]
        r: dict[str, Any] = {
            "kind": "drive#file",
            "id": e.id,
            "etag": f'"{etag}"',
            "selfLink": link,
            "alternateLink": f"{base}/file/d/{e.id}/view",
            "title": e.title,
            "mimeType": e.mime_type,
        }
        if e.description is not None:
            r["description"] = e.description
        r.update(
            labels={
                "starred": e.starred,
                "hidden": e.hidden,
                "trashed": self._trashed(e, memo),
                "restricted": False,
                "viewed": True,
                "modified": e.version > 1,
            },
            createdDate=rfc3339(e.created),
            modifiedDate=rfc3339(e.modified),
            modifiedByMeDate=rfc3339(e.modified),
            lastViewedByMeDate=rfc3339(e.modified),
            markedViewedByMeDate="1970-01-01T00:00:00.000Z",
            version=str(e.version),
            parents=[
                {
                    "kind": "drive#parentReference",
                    "id": pid,
                    "selfLink": f"{link}/parents/{pid}",
                    "parentLink": f"{base}/drive/v2/files/{pid}",
                    "isRoot": pid == ROOT_ID,
                }
                for pid in e.parents
            ],
            userPermission={
                "kind": "drive#permission",
                "id": "me",
                "role": "owner",
                "type": "user",
            },
            quotaBytesUsed=str(e.size),
            ownerNames=[USER_NAME],
            owners=[USER],
            lastModifyingUserName=USER_NAME,
            lastModifyingUser=USER,
            editable=True,
            copyable=not e.folder,
            writersCanShare=True,
            shared=False,
            explicitlyTrashed=e.explicitly_trashed,
            appDataContents=False,
            spaces=["drive"],
            capabilities={
                "canDownload": e.has_content and not e.folder,
                "canEdit": True,
                "canCopy": not e.folder,
                "canDelete": e.id != ROOT_ID,
                "canTrash": e.id != ROOT_ID,
                "canRename": e.id != ROOT_ID,
                "canListChildren": e.folder,
                "canAddChildren": e.folder,
            },
        )
        if e.has_content and not e.folder:
            dot = e.title.rfind(".")
            first_dot = e.title.find(".")
            r.update(
                downloadUrl=f"{link}?alt=media&source=downloadUrl",
                webContentLink=f"{base}/uc?id={e.id}&export=download",
                originalFilename=e.original_filename or e.title,
                fileExtension=e.title[dot + 1 :] if dot > 0 else "",
                fullFileExtension=e.title[first_dot + 1 :] if first_dot > 0 else "",
                md5Checksum=e.md5,
                fileSize=str(e.size),
                headRevisionId=f"0B{etag}",
            )
        return r
