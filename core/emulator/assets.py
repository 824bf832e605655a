"""In-memory Earth Engine assets: folders, image collections, and the IMAGE/TABLE/CLASSIFIER
assets that toAsset exports create. Thread-safe; errors are `AssetError(status, message)` which
the HTTP layer turns into Google JSON errors (never 5xx).
"""

from __future__ import annotations

import copy
import re
import threading
from typing import Any

from core.emulator.clock import Clock, rfc3339
from core.emulator.expression import CATALOG, catalog_entry

CONTAINERS = frozenset({"FOLDER", "IMAGE_COLLECTION"})
CREATABLE = frozenset({"FOLDER", "IMAGE_COLLECTION"})
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+\Z")
_NAME = re.compile(r"^projects/([^/]+)/assets/(.+)\Z")
LEGACY = "earthengine-legacy"
PUBLIC = "earthengine-public"


class AssetError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_found(name: str) -> AssetError:
    return AssetError(404, f"Asset '{name}' does not exist or caller does not have access.")


def split_name(name: str) -> tuple[str, str]:
    """'projects/p/assets/a/b' → ('p', 'a/b'); 400 when it is not an asset name."""
    m = _NAME.match(name.rstrip("/"))
    if not m:
        raise AssetError(400, f"Invalid asset name '{name}'.")
    return m.group(1), m.group(2)


def root_of(name: str) -> str:
    """The implicit root container of an asset name. Cloud projects have one root,
    `projects/p/assets`; legacy ids have home folders `users/<u>` and `projects/<x>/assets`."""
    project, path = split_name(name)
    if project == LEGACY:
        parts = path.split("/")
        depth = 3 if parts[0] == "projects" else 2
        return f"projects/{LEGACY}/assets/" + "/".join(parts[:depth])
    return f"projects/{project}/assets"


def parent_of(name: str) -> str:
    project, path = split_name(name)
    if "/" not in path:
        return f"projects/{project}/assets"
    return f"projects/{project}/assets/{path.rsplit('/', 1)[0]}"


def is_root(name: str) -> bool:
    name = name.rstrip("/")
    if re.fullmatch(r"projects/[^/]+/assets", name):
        return True
    return name.startswith(f"projects/{LEGACY}/assets/") and root_of(name) == name


class AssetStore:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.assets: dict[str, dict[str, Any]] = {}

    # -- helpers --------------------------------------------------------------------------------

    def _json(self, asset: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(asset)
        project, path = split_name(out["name"])
        out["id"] = path if project == LEGACY else out["name"]
        return out

    def _exists_container(self, name: str) -> bool:
        if is_root(name):
            return True
        a = self.assets.get(name)
        return a is not None and a["type"] in CONTAINERS

    def _check_name(self, name: str) -> None:
        project, path = split_name(name)
        if project == PUBLIC:
            raise AssetError(403, f"Permission denied: '{name}' is in a public catalog project.")
        if not all(_SEGMENT.match(s) for s in path.split("/")):
            raise AssetError(
                400,
                f"Invalid asset id '{path}': path segments may contain only letters, digits, "
                "'_' and '-'.",
            )

    def children(self, parent: str) -> list[str]:
        prefix = parent.rstrip("/") + "/"
        return sorted(
            n for n in self.assets if n.startswith(prefix) and "/" not in n[len(prefix) :]
        )

    # -- operations -----------------------------------------------------------------------------

    def get(self, name: str) -> dict[str, Any]:
        name = name.rstrip("/")
        with self.lock:
            if name in self.assets:
                return self._json(self.assets[name])
        project, path = split_name(name)
        entry = catalog_entry(path) if project == PUBLIC else None
        if entry is not None:
            # A few catalog ids, so getInfo() on them works; the collection ids are the
            # keys of expression.CATALOG, anything deeper is one of its images.
            asset: dict[str, Any] = {"name": name, "id": path, "updateTime": rfc3339(0)}
            if path in CATALOG:
                asset["type"] = "IMAGE_COLLECTION"
            else:
                asset["type"] = "IMAGE"
                asset["bands"] = [{"id": b} for b in entry[0]]
            return asset
        raise not_found(name)

    def create(
        self,
        name: str,
        asset_type: str,
        extra: dict[str, Any] | None = None,
        *,
        overwrite: bool = False,
        allow_any_type: bool = False,
    ) -> dict[str, Any]:
        self._check_name(name)
        if not allow_any_type and asset_type not in CREATABLE:
            raise AssetError(
                400,
                f"The emulator creates only FOLDER and IMAGE_COLLECTION assets directly, "
                f"not {asset_type}; IMAGE, TABLE and CLASSIFIER assets come from exports.",
            )
        with self.lock:
            parent = parent_of(name)
            if not self._exists_container(parent):
                raise AssetError(
                    404, f"Cannot create '{name}': parent folder '{parent}' does not exist."
                )
            ptype = "FOLDER" if is_root(parent) else self.assets[parent]["type"]
            if ptype == "IMAGE_COLLECTION" and asset_type != "IMAGE":
                raise AssetError(400, f"An image collection can only contain images: '{name}'.")
            old = self.assets.get(name)
            if old is not None and (not overwrite or old["type"] in CONTAINERS):
                raise AssetError(409, f"Cannot overwrite asset '{name}'.")
            asset: dict[str, Any] = {
                "type": asset_type,
                "name": name,
                "updateTime": rfc3339(self.clock.now()),
            }
            for k, v in (extra or {}).items():
                if k not in ("name", "id", "type", "updateTime") and v is not None:
                    asset[k] = v
            self.assets[name] = asset
            return self._json(asset)

    def delete(self, name: str) -> None:
        name = name.rstrip("/")
        with self.lock:
            if name not in self.assets:
                raise not_found(name)
            if self.children(name):
                raise AssetError(400, f"Cannot delete non-empty folder or collection '{name}'.")
            del self.assets[name]

    def list(self, parent: str, page_size: int, token: str | None) -> dict[str, Any]:
        parent = parent.rstrip("/")
        with self.lock:
            if not is_root(parent):
                if parent not in self.assets:
                    raise not_found(parent)
                if self.assets[parent]["type"] not in CONTAINERS:
                    raise AssetError(400, f"Asset '{parent}' is not a folder or collection.")
            names = self.children(parent)
            if token:
                names = [n for n in names if n > token]
            page = names[:page_size]
            out: dict[str, Any] = {}
            if page:
                out["assets"] = [self._json(self.assets[n]) for n in page]
            if len(names) > page_size:
                out["nextPageToken"] = page[-1]
            return out

    def copy(self, src: str, dst: str, overwrite: bool = False) -> dict[str, Any]:
        with self.lock:
            if src not in self.assets:
                raise not_found(src)
            asset = self.assets[src]
            if asset["type"] == "FOLDER":
                raise AssetError(400, f"Cannot copy folder '{src}'; copy its assets one by one.")
            extra = {k: copy.deepcopy(v) for k, v in asset.items()}
            made = self.create(dst, asset["type"], extra, overwrite=overwrite, allow_any_type=True)
            for child in self.children(src):
                self.copy(child, dst + child[len(src) :], overwrite)
            return made

    def move(self, src: str, dst: str) -> dict[str, Any]:
        with self.lock:
            if src not in self.assets:
                raise not_found(src)
            if dst == src or dst.startswith(src + "/"):
                raise AssetError(400, f"Cannot move '{src}' into itself.")
            self._check_name(dst)
            if dst in self.assets:
                raise AssetError(409, f"Cannot overwrite asset '{dst}'.")
            if not self._exists_container(parent_of(dst)):
                raise AssetError(404, f"Parent folder '{parent_of(dst)}' does not exist.")
            moved = {n: a for n, a in self.assets.items() if n == src or n.startswith(src + "/")}
            now = rfc3339(self.clock.now())
            for n, a in moved.items():
                del self.assets[n]
                new = dst + n[len(src) :]
                a["name"] = new
                a["updateTime"] = now
                self.assets[new] = a
            return self._json(self.assets[dst])

    def patch(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """updateMask paths: `properties` (replace all), `properties."k"` (one key; absent in
        the asset = delete), or a top-level field such as `startTime`, `endTime`, `title`."""
        with self.lock:
            if name not in self.assets:
                raise not_found(name)
            asset = self.assets[name]
            new = body.get("asset") or {}
            paths = (body.get("updateMask") or {}).get("paths") or []
            if isinstance(paths, str):
                paths = paths.split(",")
            if not paths:
                paths = [k for k in new if k not in ("name", "id", "type", "updateTime")]
            for p in paths:
                m = re.fullmatch(r'properties\.(?:"(.*)"|(.+))', p)
                if m:
                    key = m.group(1) if m.group(1) is not None else m.group(2)
                    props = asset.setdefault("properties", {})
                    value = (new.get("properties") or {}).get(key)
                    if value is None:
                        props.pop(key, None)
                    else:
                        props[key] = value
                elif p in ("name", "id", "type", "updateTime", "sizeBytes"):
                    raise AssetError(400, f"Field '{p}' cannot be updated.")
                elif p in new:
                    asset[p] = copy.deepcopy(new[p])
                else:
                    asset.pop(p, None)
            asset["updateTime"] = rfc3339(self.clock.now())
            return self._json(asset)

    def count(self) -> int:
        with self.lock:
            return len(self.assets)
