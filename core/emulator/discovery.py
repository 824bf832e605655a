"""The Earth Engine v1 discovery document the emulator serves.

googleapiclient builds every client method from this document, so it must declare each method
and keyword argument earthengine-api 1.7.50 uses. The copy in the wheel is
a 2020 v1alpha stub and unusable. Patterns are enforced by googleapiclient, so they are kept
permissive; `enum`s are enforced too, so none are declared on method parameters. List responses
declare `nextPageToken`, without which no `list_next()`/`listAssets_next()` is generated.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

# Path patterns: permissive but shaped like Google's, so a typo still fails loudly.
PROJECT = "^projects/[^/]+$"
ANY_UNDER_PROJECT = "^projects/[^/]+/.+$"
PROJECT_OR_ASSET = "^projects/[^/]+(/.*)?$"


def _path(name: str, pattern: str = ANY_UNDER_PROJECT) -> dict[str, Any]:
    return {"type": "string", "location": "path", "required": True, "pattern": pattern}


def _q(type_: str = "string", fmt: str | None = None, repeated: bool = False) -> dict[str, Any]:
    d: dict[str, Any] = {"type": type_, "location": "query"}
    if fmt:
        d["format"] = fmt
    if repeated:
        d["repeated"] = True
    return d


PAGE = {"pageSize": _q("integer", "int32"), "pageToken": _q()}


def _method(
    mid: str,
    http: str,
    path: str,
    params: dict[str, dict[str, Any]],
    *,
    request: str | None = None,
    response: str = "Object",
) -> dict[str, Any]:
    order = [k for k, v in params.items() if v.get("location") == "path"]
    m: dict[str, Any] = {
        "id": f"earthengine.{mid}",
        "httpMethod": http,
        "path": path,
        "flatPath": path,
        "parameters": params,
        "parameterOrder": order,
        "response": {"$ref": response},
        "scopes": ["https://www.googleapis.com/auth/earthengine"],
    }
    if request:
        m["request"] = {"$ref": request}
    return m


def _export(kind: str) -> dict[str, Any]:
    return {
        "export": _method(
            f"projects.{kind}.export",
            "POST",
            f"v1/{{+project}}/{kind}:export",
            {"project": _path("project", PROJECT)},
            request="Object",
            response="Operation",
        )
    }


def _create(res: str, collection: str) -> dict[str, Any]:
    return _method(
        f"projects.{res}.create",
        "POST",
        f"v1/{{+parent}}/{collection}",
        {"parent": _path("parent", PROJECT), "workloadTag": _q()},
        request="Object",
    )


def _get_pixels(res: str) -> dict[str, Any]:
    return _method(
        f"projects.{res}.getPixels", "GET", "v1/{+name}:getPixels", {"name": _path("name")}
    )


def build_document() -> dict[str, Any]:
    list_assets_params = {
        "parent": _path("parent", PROJECT_OR_ASSET),
        **PAGE,
        "filter": _q(),
        "view": _q(),
        "startTime": _q(),
        "endTime": _q(),
        "region": _q(),
    }
    assets = {
        "get": _method(
            "projects.assets.get",
            "GET",
            "v1/{+name}",
            {"name": _path("name")},
            response="EarthEngineAsset",
        ),
        "create": _method(
            "projects.assets.create",
            "POST",
            "v1/{+parent}/assets",
            {"parent": _path("parent", PROJECT), "assetId": _q(), "overwrite": _q("boolean")},
            request="EarthEngineAsset",
            response="EarthEngineAsset",
        ),
        "delete": _method(
            "projects.assets.delete",
            "DELETE",
            "v1/{+name}",
            {"name": _path("name")},
            response="Empty",
        ),
        "patch": _method(
            "projects.assets.patch",
            "PATCH",
            "v1/{+name}",
            {"name": _path("name"), "updateMask": _q("string", "google-fieldmask")},
            request="Object",
            response="EarthEngineAsset",
        ),
        "copy": _method(
            "projects.assets.copy",
            "POST",
            "v1/{+sourceName}:copy",
            {"sourceName": _path("sourceName")},
            request="Object",
            response="EarthEngineAsset",
        ),
        "move": _method(
            "projects.assets.move",
            "POST",
            "v1/{+sourceName}:move",
            {"sourceName": _path("sourceName")},
            request="Object",
            response="EarthEngineAsset",
        ),
        "listAssets": _method(
            "projects.assets.listAssets",
            "GET",
            "v1/{+parent}:listAssets",
            list_assets_params,
            response="ListAssetsResponse",
        ),
        "listImages": _method(
            "projects.assets.listImages",
            "GET",
            "v1/{+parent}:listImages",
            list_assets_params,
            response="ListAssetsResponse",
        ),
        "listFeatures": _method(
            "projects.assets.listFeatures",
            "GET",
            "v1/{+asset}:listFeatures",
            {"asset": _path("asset"), **PAGE, "region": _q(), "filter": _q()},
            response="ListFeaturesResponse",
        ),
        "getPixels": _method(
            "projects.assets.getPixels",
            "POST",
            "v1/{+name}:getPixels",
            {"name": _path("name")},
            request="Object",
        ),
        "getIamPolicy": _method(
            "projects.assets.getIamPolicy",
            "POST",
            "v1/{+resource}:getIamPolicy",
            {"resource": _path("resource")},
            request="Object",
        ),
        "setIamPolicy": _method(
            "projects.assets.setIamPolicy",
            "POST",
            "v1/{+resource}:setIamPolicy",
            {"resource": _path("resource")},
            request="Object",
        ),
        "testIamPermissions": _method(
            "projects.assets.testIamPermissions",
            "POST",
            "v1/{+resource}:testIamPermissions",
            {"resource": _path("resource")},
            request="Object",
        ),
    }
    project_body = {"project": _path("project", PROJECT)}
    resources: dict[str, Any] = {
        "algorithms": {
            "methods": {
                "list": _method(
                    "projects.algorithms.list",
                    "GET",
                    "v1/{+parent}/algorithms",
                    {"parent": _path("parent", PROJECT)},
                    response="ListAlgorithmsResponse",
                )
            }
        },
        "assets": {"methods": assets},
        "image": {
            "methods": {
                **_export("image"),
                "import": _method(
                    "projects.image.import",
                    "POST",
                    "v1/{+project}/image:import",
                    project_body,
                    request="Object",
                    response="Operation",
                ),
                "importExternal": _method(
                    "projects.image.importExternal",
                    "POST",
                    "v1/{+project}/image:importExternal",
                    project_body,
                    request="Object",
                ),
                "computePixels": _method(
                    "projects.image.computePixels",
                    "POST",
                    "v1/{+project}/image:computePixels",
                    project_body,
                    request="Object",
                ),
            }
        },
        "imageCollection": {
            "methods": {
                "computeImages": _method(
                    "projects.imageCollection.computeImages",
                    "POST",
                    "v1/{+project}/imageCollection:computeImages",
                    project_body,
                    request="Object",
                    response="ComputeImagesResponse",
                )
            }
        },
        "table": {
            "methods": {
                **_export("table"),
                "import": _method(
                    "projects.table.import",
                    "POST",
                    "v1/{+project}/table:import",
                    project_body,
                    request="Object",
                    response="Operation",
                ),
                "computeFeatures": _method(
                    "projects.table.computeFeatures",
                    "POST",
                    "v1/{+project}/table:computeFeatures",
                    project_body,
                    request="Object",
                    response="ComputeFeaturesResponse",
                ),
            }
        },
        "video": {"methods": _export("video")},
        "map": {"methods": _export("map")},
        "classifier": {"methods": _export("classifier")},
        "operations": {
            "methods": {
                "list": _method(
                    "projects.operations.list",
                    "GET",
                    "v1/{+name}/operations",
                    {"name": _path("name", PROJECT), **PAGE, "filter": _q()},
                    response="ListOperationsResponse",
                ),
                "get": _method(
                    "projects.operations.get",
                    "GET",
                    "v1/{+name}",
                    {"name": _path("name")},
                    response="Operation",
                ),
                "cancel": _method(
                    "projects.operations.cancel",
                    "POST",
                    "v1/{+name}:cancel",
                    {"name": _path("name")},
                    request="Object",
                    response="Empty",
                ),
                "delete": _method(
                    "projects.operations.delete",
                    "DELETE",
                    "v1/{+name}",
                    {"name": _path("name")},
                    response="Empty",
                ),
                "wait": _method(
                    "projects.operations.wait",
                    "POST",
                    "v1/{+name}:wait",
                    {"name": _path("name")},
                    request="Object",
                    response="Operation",
                ),
            }
        },
        "value": {
            "methods": {
                "compute": _method(
                    "projects.value.compute",
                    "POST",
                    "v1/{+project}/value:compute",
                    project_body,
                    request="Object",
                )
            }
        },
        "maps": {
            "methods": {"create": _create("maps", "maps")},
            "resources": {
                "tiles": {
                    "methods": {
                        "get": _method(
                            "projects.maps.tiles.get",
                            "GET",
                            "v1/{+parent}/tiles/{zoom}/{x}/{y}",
                            {
                                "parent": _path("parent"),
                                "zoom": {
                                    "type": "integer",
                                    "location": "path",
                                    "required": True,
                                    "format": "int32",
                                },
                                "x": {
                                    "type": "integer",
                                    "location": "path",
                                    "required": True,
                                    "format": "int32",
                                },
                                "y": {
                                    "type": "integer",
                                    "location": "path",
                                    "required": True,
                                    "format": "int32",
                                },
                            },
                        )
                    }
                }
            },
        },
        "thumbnails": {
            "methods": {
                "create": _create("thumbnails", "thumbnails"),
                "getPixels": _get_pixels("thumbnails"),
            }
        },
        "videoThumbnails": {
            "methods": {
                "create": _create("videoThumbnails", "videoThumbnails"),
                "getPixels": _get_pixels("videoThumbnails"),
            }
        },
        "filmstripThumbnails": {
            "methods": {
                "create": _create("filmstripThumbnails", "filmstripThumbnails"),
                "getPixels": _get_pixels("filmstripThumbnails"),
            }
        },
        "tables": {
            "methods": {
                "create": _create("tables", "tables"),
                "getFeatures": _method(
                    "projects.tables.getFeatures",
                    "GET",
                    "v1/{+name}:getFeatures",
                    {"name": _path("name")},
                ),
            }
        },
        "featureView": {"methods": {"create": _create("featureView", "featureViews")}},
    }
    projects = {
        "methods": {
            "listAssets": _method(
                "projects.listAssets",
                "GET",
                "v1/{+parent}:listAssets",
                list_assets_params,
                response="ListAssetsResponse",
            ),
            "getConfig": _method(
                "projects.getConfig",
                "GET",
                "v1/{+name}",
                {"name": _path("name")},
            ),
            "updateConfig": _method(
                "projects.updateConfig",
                "PATCH",
                "v1/{+name}",
                {"name": _path("name"), "updateMask": _q("string", "google-fieldmask")},
                request="Object",
            ),
        },
        "resources": resources,
    }

    def listing(field: str) -> dict[str, Any]:
        return {
            "id": f"List{field}",
            "type": "object",
            "properties": {
                field: {"type": "array", "items": {"$ref": "Object"}},
                "nextPageToken": {"type": "string"},
            },
        }

    schemas = {
        "Object": {"id": "Object", "type": "object", "additionalProperties": {"type": "any"}},
        "Empty": {"id": "Empty", "type": "object", "properties": {}},
        "Operation": {
            "id": "Operation",
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "metadata": {"type": "object", "additionalProperties": {"type": "any"}},
                "done": {"type": "boolean"},
                "error": {"type": "object", "additionalProperties": {"type": "any"}},
                "response": {"type": "object", "additionalProperties": {"type": "any"}},
            },
        },
        "EarthEngineAsset": {
            "id": "EarthEngineAsset",
            "type": "object",
            "properties": {
                "type": {"type": "string"},
                "name": {"type": "string"},
                "id": {"type": "string"},
                "updateTime": {"type": "string", "format": "google-datetime"},
                "sizeBytes": {"type": "string", "format": "int64"},
            },
        },
        "ListAssetsResponse": listing("assets"),
        "ListOperationsResponse": listing("operations"),
        "ListFeaturesResponse": listing("features"),
        "ComputeImagesResponse": listing("images"),
        "ComputeFeaturesResponse": listing("features"),
        "ListAlgorithmsResponse": {
            "id": "ListAlgorithmsResponse",
            "type": "object",
            "properties": {"algorithms": {"type": "array", "items": {"$ref": "Object"}}},
        },
    }
    std = {
        "$.xgafv": {"type": "string", "location": "query"},
        "access_token": {"type": "string", "location": "query"},
        "alt": {
            "type": "string",
            "location": "query",
            "default": "json",
            "enum": ["json", "media", "proto"],
        },
        "callback": {"type": "string", "location": "query"},
        "fields": {"type": "string", "location": "query"},
        "key": {"type": "string", "location": "query"},
        "oauth_token": {"type": "string", "location": "query"},
        "prettyPrint": {"type": "boolean", "location": "query", "default": "true"},
        "quotaUser": {"type": "string", "location": "query"},
        "uploadType": {"type": "string", "location": "query"},
        "upload_protocol": {"type": "string", "location": "query"},
    }
    return {
        "kind": "discovery#restDescription",
        "discoveryVersion": "v1",
        "id": "earthengine:v1",
        "name": "earthengine",
        "version": "v1",
        "revision": "20260101",
        "title": "Google Earth Engine API (eebatch emulator)",
        "description": "The subset of the Earth Engine v1 REST API served by the eebatch emulator.",
        "protocol": "rest",
        # ee overrides the resource's base URL with its `url`, so these are never used.
        "rootUrl": "https://earthengine.googleapis.com/",
        "servicePath": "",
        "baseUrl": "https://earthengine.googleapis.com/",
        "batchPath": "batch",
        "parameters": std,
        "auth": {
            "oauth2": {
                "scopes": {
                    "https://www.googleapis.com/auth/earthengine": {"description": "EE"},
                    "https://www.googleapis.com/auth/cloud-platform": {"description": "GCP"},
                }
            }
        },
        "schemas": schemas,
        "resources": {"projects": projects},
    }


@cache
def document_bytes() -> bytes:
    return json.dumps(build_document(), separators=(",", ":")).encode()
