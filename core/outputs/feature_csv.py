"""EE's CSV of a FeatureCollection, written from its features: the file Export.table.toDrive
writes (fileFormat CSV, no selectors), for a table fetched directly (computeFeatures).

The columns are `system:index`, then every property any feature has, in alphabetical
(code-point) order, then `.geo`; a row per feature in the collection's order. A cell is empty
where the feature lacks the property (or it is null), a list or dictionary is its compact JSON,
anything else its text as Python prints the JSON value (so 0.1 stays 0.1 and 12 stays 12).
`.geo` is the geometry as compact GeoJSON, and a feature without one gets EE's empty
MultiPoint. Python's csv module writes it (quotes where needed, CRLF line ends), UTF-8.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

INDEX = "system:index"
GEO = ".geo"
# What EE writes in .geo for a feature without geometry (sample() without geometries).
NULL_GEOMETRY: Mapping[str, Any] = {"type": "MultiPoint", "coordinates": []}


@dataclass(frozen=True)
class Row:
    """One feature of the table."""

    index: str  # its system:index
    properties: Mapping[str, Any]
    geometry: Mapping[str, Any] | None


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return _json(value)
    return str(value)


def columns(rows: Iterable[Row]) -> list[str]:
    """The table's columns, as EE's CSV has them."""
    names = sorted({str(k) for row in rows for k in row.properties})
    return [INDEX, *names, GEO]


def csv_bytes(rows: Iterable[Row]) -> bytes:
    """The CSV file of the rows (module doc)."""
    rows = list(rows)
    header = columns(rows)
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        cells = {**row.properties, INDEX: row.index, GEO: _json(row.geometry or NULL_GEOMETRY)}
        writer.writerow([_cell(cells.get(c)) for c in header])
    return out.getvalue().encode("utf-8")
