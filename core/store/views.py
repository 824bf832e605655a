"""Read-only views of a session for the command line and the dashboard: the per-unit table of
`status --csv`, counts the end of a run reports, and what the assembled products are made of
(core/assembly). Mixed into Store (one connection, one owner of the schema)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from core.states import ON_DISK, SETTLED, UNFINISHED
from core.store.units import marks


class ViewOps:
    conn: sqlite3.Connection

    def unit_table_rows(self) -> tuple[list[str], list[tuple[object, ...]]]:
        """(columns, rows): one row per unit with its state, route, attempts, EECU-seconds,
        bytes and files, the last error, the tile's bounds, the period's dates and the local file
        path(s), `;`-separated."""
        cursor = self.conn.execute(
            "SELECT u.id AS unit, u.tile, u.period, u.state, u.route, u.attempts, u.depth,"
            " u.parent,"
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

    def unit_columns(self) -> set[str]:
        return {r[1] for r in self.conn.execute("PRAGMA table_info(units)")}

    def product_files(self, periods: Sequence[str] | None = None) -> list[sqlite3.Row]:
        """Every verified file on disk (of these periods), with its row id, MD5, unit, tile,
        period and, where units have one, batch: what the products are made of."""
        batch = ", u.batch" if "batch" in self.unit_columns() else ""
        only = f" AND u.period IN ({marks(periods)})" if periods is not None else ""
        return self.conn.execute(
            f"SELECT f.id, f.local_path, f.md5, f.unit, u.tile, u.period{batch}"
            " FROM files f JOIN units u ON u.id = f.unit"
            f" WHERE f.state IN ({marks(ON_DISK)}) AND f.local_path IS NOT NULL{only}"
            " ORDER BY u.period, f.local_path, f.id", (*ON_DISK, *(periods or ()))).fetchall()

    def settled_periods(self, since: float | None = None) -> list[str]:
        """Periods none of whose units a worker still has to do: all of them, or (`since` a
        time) those where a unit settled (done, split, failed, cancelled) since then."""
        unfinished = f"state IN ({marks(UNFINISHED)})"
        if since is None:
            return [r[0] for r in self.conn.execute(
                f"SELECT period FROM units GROUP BY period HAVING SUM({unfinished}) = 0"
                " ORDER BY period", UNFINISHED)]
        # The units changed since then, through the units_updated index; then, for each of
        # their periods, whether any unit of it is unfinished (stops at the first).
        # Named: SQLite otherwise takes units_state and reads every settled unit (late in a
        # 100,000-unit job, 120 ms at each look, once a second).
        recent = [r[0] for r in self.conn.execute(
            f"SELECT DISTINCT period FROM units INDEXED BY units_updated WHERE updated >= ?"
            " AND state IN"
            f" ({marks(SETTLED)}) ORDER BY period", (since, *SETTLED))]
        return [p for p in recent if not self.conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM units WHERE period = ? AND {unfinished})",
            (p, *UNFINISHED)).fetchone()[0]]
