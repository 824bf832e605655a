"""The Drive v2 upload endpoints (uploadType media, multipart and resumable) over HTTP.

A resumable session gathers its bytes in a staging file of the model's until `received ==
total`, then the model takes the file in (`create_file` / `replace_content`). The quota is
checked when the size is first known and again with each chunk, so a Drive that is full
refuses early with storageQuotaExceeded (and forgets the session).
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from core.emulator.drive_json import (
    BadRequest,
    body_json,
    file_resource,
    parent_ids,
    patch_from,
    render,
)
from core.emulator.drive_model import DriveModel
from core.emulator.drive_types import FileInfo, NotFound, StorageQuotaExceeded
from core.emulator.http import Request, Response, error_response


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


def _new_upload_id() -> str:
    return base64.urlsafe_b64encode(os.urandom(18)).decode()


class DriveUploads:
    """The upload handlers; drive.py routes to `handle` and maps the model's refusals."""

    def __init__(self, model: DriveModel) -> None:
        self.model = model
        self._lock = threading.Lock()
        self._sessions: dict[str, _Upload] = {}

    def pending(self) -> int:
        """Sessions not finished yet (for the state view)."""
        with self._lock:
            return sum(1 for u in self._sessions.values() if u.done_id is None)

    def handle(self, req: Request, file_id: str | None = None) -> Response:
        upload_id = req.query.get("upload_id")
        if upload_id:
            return self._upload_chunk(req, upload_id)
        kind = req.query.get("uploadType", "media")
        if req.method == "PUT" and file_id is None:
            return error_response(400, "Missing upload_id.", "badRequest", location="upload_id")
        if kind == "resumable":
            return self._upload_start(req, file_id)
        if kind == "multipart":
            meta, mime, data = _split_multipart(req)
        elif kind == "media":
            meta, mime, data = {}, req.headers.get("content-type", ""), req.body
        else:
            return error_response(400, "Invalid Value", "invalid", location="uploadType")
        mime = str(meta.get("mimeType") or mime or "application/octet-stream")
        target = self.model.get(file_id) if file_id else None
        parents = [] if target else self.model.resolve_parents(parent_ids(meta.get("parents")))
        self.model.check_room(len(data), target.id if target else None)
        if not target:
            meta["parents"] = [{"id": p} for p in parents]
        upload = _Upload(
            _new_upload_id(), self.model.staging_path(), meta, mime, file_id, len(data)
        )
        upload.path.write_bytes(data)
        upload.received = len(data)
        return self._answer(req, self._finish(req, upload))

    def _upload_start(self, req: Request, file_id: str | None) -> Response:
        meta = body_json(req)
        total_header = req.headers.get("x-upload-content-length")
        try:
            total = int(total_header) if total_header else None
        except ValueError:
            return error_response(400, "Invalid X-Upload-Content-Length.", "badRequest")
        target = self.model.get(file_id) if file_id else None
        parents = None if target else self.model.resolve_parents(parent_ids(meta.get("parents")))
        if total is not None:
            self.model.check_room(total, file_id)
        mime = str(
            meta.get("mimeType")
            or req.headers.get("x-upload-content-type")
            or (target.mime_type if target else "application/octet-stream")
        )
        if parents is not None:
            meta["parents"] = [{"id": p} for p in parents]
        upload = _Upload(_new_upload_id(), self.model.staging_path(), meta, mime, file_id, total)
        upload.path.touch()
        with self._lock:
            self._sessions[upload.id] = upload
        path = "/upload/drive/v2/files" + (f"/{file_id}" if file_id else "")
        query = {k: v for k, v in req.query.items() if k != "upload_id"}
        query["upload_id"] = upload.id
        location = f"{req.base_url}{path}?{urlencode(query)}"
        return Response(200, b"", {"Location": location, "X-GUploader-UploadID": upload.id})

    def _upload_chunk(self, req: Request, upload_id: str) -> Response:
        with self._lock:
            upload = self._sessions.get(upload_id)
        if upload is None:
            return error_response(
                404, "Upload session not found.", "notFound", location="upload_id"
            )
        with upload.lock:
            if upload.done_id is not None:
                try:
                    return self._answer(req, self.model.get(upload.done_id))
                except NotFound:
                    return error_response(404, "Upload session not found.", "notFound")
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
                self.model.check_room(start + len(data), upload.target)
            except StorageQuotaExceeded:
                self._drop_upload(upload)
                raise
            with open(upload.path, "r+b") as fh:
                fh.seek(start)
                fh.write(data)
            upload.received = max(upload.received, start + len(data))
            return self._upload_progress(req, upload)

    def _upload_progress(self, req: Request, upload: _Upload) -> Response:
        if upload.total is not None and upload.received >= upload.total:
            return self._answer(req, self._finish(req, upload))
        headers = {"X-GUploader-UploadID": upload.id}
        if upload.received:
            headers["Range"] = f"bytes=0-{upload.received - 1}"
        return Response(308, b"", headers)

    def _finish(self, req: Request, upload: _Upload) -> FileInfo:
        """Turn a complete upload into a file (or new content of `upload.target`)."""
        with open(upload.path, "r+b") as fh:
            fh.truncate(upload.received)
        patch = patch_from(upload.meta, req)
        try:
            if upload.target is not None:
                info = self.model.replace_content(
                    upload.target, upload.path, upload.mime_type, patch
                )
            else:
                title = str(upload.meta.get("title") or "Untitled")
                parents = parent_ids(upload.meta.get("parents"))
                info = self.model.create_file(upload.path, title, upload.mime_type, parents, patch)
        except StorageQuotaExceeded:
            self._drop_upload(upload)
            raise
        upload.done_id = info.id
        return info

    def _drop_upload(self, upload: _Upload) -> None:
        with self._lock:
            self._sessions.pop(upload.id, None)
        upload.path.unlink(missing_ok=True)

    def _answer(self, req: Request, info: FileInfo) -> Response:
        return render(req, file_resource(info, req.base_url))


def _split_multipart(req: Request) -> tuple[dict[str, Any], str, bytes]:
    """multipart/related: part 1 the JSON metadata, part 2 the media."""
    ctype = req.headers.get("content-type", "")
    m = re.search(r'boundary="?([^";]+)"?', ctype)
    if not ctype.startswith("multipart/related") or not m:
        raise BadRequest(error_response(400, "Expected multipart/related.", "badRequest"))
    delim = b"--" + m.group(1).encode()
    pieces = req.body.split(delim)
    parts: list[tuple[dict[str, str], bytes]] = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        piece = piece.lstrip(b"\r\n")
        # googleapiclient's generator ends lines with \n; others use \r\n.
        seps = [
            (piece.find(sep), sep, eol) for sep, eol in ((b"\r\n\r\n", b"\r\n"), (b"\n\n", b"\n"))
        ]
        seps = [s for s in seps if s[0] >= 0]
        if not seps:
            raise BadRequest(error_response(400, "Malformed multipart body.", "badRequest"))
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
        raise BadRequest(error_response(400, "Expected two parts.", "badRequest"))
    try:
        meta = json.loads(parts[0][1] or b"{}")
    except ValueError:
        raise BadRequest(error_response(400, "Parse Error", "parseError")) from None
    return meta, parts[1][0].get("content-type", ""), parts[1][1]
