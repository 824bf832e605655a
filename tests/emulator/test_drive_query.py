"""The Drive v2 `q` grammar and the fields= mask, on plain dicts."""

from __future__ import annotations

from typing import Any

import pytest

from core.emulator.drive_json import InvalidFields, apply_fields, parse_fields
from core.emulator.drive_query import InvalidQuery, compile_query, parse_date

ROOT = "ROOTID"
FILES: dict[str, dict[str, Any]] = {
    "a": {
        "title": "a.tif",
        "mimeType": "image/tiff",
        "parents": ["F1"],
        "owners": ["me@example.com"],
        "trashed": False,
        "starred": True,
        "hidden": False,
        "createdDate": parse_date("2026-01-01T00:00:00Z"),
        "modifiedDate": parse_date("2026-01-02T00:00:00Z"),
        "fullText": "a.tif",
    },
    "b": {
        "title": "Valentine's Day \\ b.csv",
        "mimeType": "text/csv",
        "parents": [ROOT],
        "owners": ["me@example.com"],
        "trashed": True,
        "starred": False,
        "hidden": False,
        "createdDate": parse_date("2026-02-01T00:00:00Z"),
        "modifiedDate": parse_date("2026-02-02T12:00:00.500Z"),
        "fullText": "Valentine's Day \\ b.csv",
    },
    "f": {
        "title": "exports",
        "mimeType": "application/vnd.google-apps.folder",
        "parents": [ROOT, "F1"],
        "owners": ["me@example.com"],
        "trashed": False,
        "starred": False,
        "hidden": True,
        "createdDate": parse_date("2026-03-01T00:00:00Z"),
        "modifiedDate": parse_date("2026-03-01T00:00:00Z"),
        "fullText": "exports",
    },
}


def run(q: str) -> list[str]:
    pred = compile_query(q, {"root": ROOT, "me": "me@example.com"})
    return sorted(k for k, item in FILES.items() if pred(item))


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("'F1' in parents", ["a", "f"]),
        ("'root' in parents and trashed=false", ["f"]),
        ("trashed = true", ["b"]),
        ("trashed != true", ["a", "f"]),
        ("title = 'exports' and mimeType = 'application/vnd.google-apps.folder'", ["f"]),
        ("title != 'exports'", ["a", "b"]),
        ("title contains 'TIF'", ["a"]),
        ("fullText contains 'valentine'", ["b"]),
        ("mimeType contains 'google-apps'", ["f"]),
        ("title = 'Valentine\\'s Day \\\\ b.csv'", ["b"]),
        ("starred = true or hidden = true", ["a", "f"]),
        ("not trashed = true and not 'F1' in parents", []),
        ("not (title = 'a.tif' or title = 'exports')", ["b"]),
        ("(trashed = false) AND ('F1' IN parents) Or title='exports'", ["a", "f"]),
        ("'me' in owners and 'me@example.com' in writers", []),
        ("'me' in owners", ["a", "b", "f"]),
        ("modifiedDate > '2026-02-02T12:00:00'", ["b", "f"]),
        ("modifiedDate > '2026-02-02T12:00:00.500Z'", ["f"]),
        ("createdDate <= '2026-02-01T00:00:00Z'", ["a", "b"]),
        ("createdDate >= '2026-02-01T01:00:00+02:00'", ["b", "f"]),
        ("modifiedDate = '2026-03-01T00:00:00Z'", ["f"]),
        ("sharedWithMe", []),
        ("not sharedWithMe", ["a", "b", "f"]),
        ("title='a.tif'or title='exports'", ["a", "f"]),
    ],
)
def test_query_selects(q: str, expected: list[str]) -> None:
    assert run(q) == expected


@pytest.mark.parametrize(
    "q",
    [
        "title = 'unterminated",
        'title = "double quotes"',
        "name = 'v3 field'",
        "modifiedTime > '2026-01-01'",
        "title = 'a' and",
        "title = 'a' or or title = 'b'",
        "(title = 'a'",
        "title = 'a')",
        "'x' in nowhere",
        "'x' parents",
        "trashed = maybe",
        "trashed contains 'x'",
        "title < 'b'",
        "modifiedDate > 'yesterday'",
        "title = 'bad \\n escape'",
        "title = exports",
        "@",
    ],
)
def test_invalid_queries_raise(q: str) -> None:
    with pytest.raises(InvalidQuery):
        compile_query(q)


def test_empty_query_matches_everything() -> None:
    assert run("  ") == ["a", "b", "f"]


def test_field_masks() -> None:
    obj = {
        "id": "1",
        "title": "t",
        "labels": {"trashed": False, "starred": True},
        "parents": [{"id": "p", "isRoot": True, "kind": "k"}],
    }
    assert apply_fields(obj, parse_fields("id,labels/trashed")) == {
        "id": "1",
        "labels": {"trashed": False},
    }
    assert apply_fields(obj, parse_fields("parents(id,isRoot), title")) == {
        "title": "t",
        "parents": [{"id": "p", "isRoot": True}],
    }
    assert apply_fields(obj, parse_fields("*")) == obj
    assert apply_fields(obj, parse_fields("labels,labels/starred")) == {"labels": obj["labels"]}
    listing = {"items": [obj, obj], "nextPageToken": "x", "kind": "drive#fileList"}
    assert apply_fields(listing, parse_fields("items(id),nextPageToken")) == {
        "items": [{"id": "1"}, {"id": "1"}],
        "nextPageToken": "x",
    }
    for bad in ["", "a(", "a)", "a,,b", "a/", "(a)", "a b", "a(b"]:
        with pytest.raises(InvalidFields):
            parse_fields(bad)
