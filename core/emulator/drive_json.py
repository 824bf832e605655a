"""The Drive v2 JSON on the wire, shared by the Drive handlers (drive.py, drive_uploads.py):
the File resource, `fields=` partial responses, and request bodies read into the model's
terms (parent ids, a Patch).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from core.emulator.drive_types import (
    KEEP,
    PERMISSION_ID,
    ROOT_ID,
    USER_EMAIL,
    USER_NAME,
    FileInfo,
    Patch,
    rfc3339,
)
from core.emulator.http import Request, Response, error_response, json_response

USER = {
    "kind": "drive#user",
    "displayName": USER_NAME,
    "emailAddress": USER_EMAIL,
    "isAuthenticatedUser": True,
    "permissionId": PERMISSION_ID,
}


class BadRequest(Exception):
    """A request the handlers refuse before the model sees it; carries the whole answer."""

    def __init__(self, response: Response) -> None:
        self.response = response


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


def render(req: Request, body: dict[str, Any]) -> Response:
    """A 200 JSON answer, cut down to the request's `fields=` selection."""
    spec = req.query.get("fields")
    if spec:
        try:
            body = apply_fields(body, parse_fields(spec))
        except InvalidFields:
            return error_response(
                400, "Invalid field selection.", "invalidParameter", location="fields"
            )
    return json_response(body)


# -- request bodies --------------------------------------------------------------------------


def body_json(req: Request) -> dict[str, Any]:
    """The request's JSON object; BadRequest (parseError) for anything else."""
    try:
        data = req.json()
    except ValueError:
        raise BadRequest(error_response(400, "Parse Error", "parseError")) from None
    if not isinstance(data, dict):
        raise BadRequest(error_response(400, "Parse Error", "parseError"))
    return data


def parent_ids(refs: Any) -> list[str]:
    """[{'id': ...}, ...] → the ids; a reference without one becomes '' (which the model
    refuses as Invalid Value, in its place in the list)."""
    if not refs:
        return []
    out: list[str] = []
    for ref in refs:
        pid = ref.get("id") if isinstance(ref, dict) else None
        out.append(str(pid) if pid else "")
    return out


def patch_from(meta: dict[str, Any], req: Request) -> Patch:
    """A File body plus the addParents, removeParents and setModifiedDate parameters."""
    labels = meta.get("labels") or {}
    return Patch(
        title=str(meta["title"]) if meta.get("title") is not None else None,
        description=meta.get("description", KEEP),
        mime_type=str(meta["mimeType"]) if meta.get("mimeType") else None,
        starred=bool(labels["starred"]) if "starred" in labels else None,
        hidden=bool(labels["hidden"]) if "hidden" in labels else None,
        trashed=bool(labels["trashed"]) if "trashed" in labels else None,
        parents=parent_ids(meta["parents"]) if "parents" in meta else None,
        add_parents=list(filter(None, req.query.get("addParents", "").split(","))),
        remove_parents=list(filter(None, req.query.get("removeParents", "").split(","))),
        modified_date=(
            str(meta["modifiedDate"])
            if meta.get("modifiedDate") and req.query.get("setModifiedDate") == "true"
            else None
        ),
    )


# -- the File resource -----------------------------------------------------------------------


def file_resource(e: FileInfo, base: str) -> dict[str, Any]:
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
            "trashed": e.trashed,
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
            "canDelete": not e.is_root,
            "canTrash": not e.is_root,
            "canRename": not e.is_root,
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
