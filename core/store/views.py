"""Read-only views of a session for the command line and the dashboard: the per-unit table of
`status --csv`, and counts the end of a run reports. Mixed into Store (one connection, one
owner of the schema)."""

from __future__ import annotations

import sqlite3

from core.states import ON_DISK
from core.store.units import marks


class ViewOps:
    conn: sqlite3.Connection

    def unit_table_rows(self) -> tuple[list[str], list[tuple[object, ...]]]:
        """(columns, rows): one row per unit with its state, attempts, EECU-seconds, bytes and
        files, the last error, the tile's bounds, the period's dates and the local file
        path(s), `;`-separated."""
        cursor = self.conn.execute(
            "SELECT u.id AS unit, u.tile, u.period, u.state, u.attempts, u.depth, u.parent,"
            " (SELECT SUM(eecu_seconds) FROM attempts a WHERE a.unit = u.id) AS eecu_seconds,"
            " (SELECT COUNT(*) FROM files f WHERE f.unit = u.id) AS files,"
            " (SELECT SUM(size) FROM files f WHERE f.unit = u.id) AS bytes,"
            " u.est_bytes, u.error, u.west, u.south, u.east, u.north, u.start, u.end,"
            " (SELECT GROUP_CONCAT(local_path, ';') FROM files f WHERE f.unit = u.id"
            f"  AND f.state IN ({marks(ON_DISK)})) AS local_paths"
            " FROM units u ORDER BY u.rowid", ON_DISK)
        columns = [d[0] for d in cursor.description]
        return columns, [tuple(r) for r in cursor.fetchall()]

    def count_retried_units(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM units WHERE attempts > 1"
                                     ).fetchone()[0])
