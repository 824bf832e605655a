"""Deterministic session data for the dashboard's tests and screenshots: a real session made
from a job file, with unit states, attempts, files, events and a worker status written with
SQL as a worker would write them (fixed timestamps, no clock, no thread)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from core.grid import child_id
from core.periods import Period, unit_id
from core.session import create_session
from core.store import Store
from tests.jobs import job_text, toml_value

T0 = 1_750_000_000.0  # a fixed "now" for every timestamp

MONTHS = {"start": dt.date(2023, 6, 1), "end": dt.date(2023, 9, 1), "step": "1 month"}


def make_session(directory: Path, *, name: str = "ca", bbox: str = "[-124, 33, -115, 41]",
                 size: float = 1, months: bool = False) -> Store:
    job = directory / f"{name}.toml"
    job.write_text(job_text(name, region={"bbox": toml_value(bbox)}, grid={"size": size},
                            time=MONTHS if months else None,
                            limits={"max_tasks": 6, "drive_budget": "5 GB"},
                            emulator="http://127.0.0.1:8787"), encoding="utf-8")
    store, _ = create_session(job)
    store.conn.execute("UPDATE units SET updated = ?", (T0 - 1000,))
    # no temporary path on screen: snapshots must not depend on where the test runs
    store.conn.execute("UPDATE events SET ts = ?, message = ?",
                       (T0 - 1000, f"session created from {job.name}"))
    return store


def set_state(store: Store, unit: str, state: str, *, ts: float, error: str | None = None,
              attempt: str | None = None, progress: float = 0.0, eecu: float | None = None
              ) -> None:
    """Move a unit to a state, with its latest attempt in the matching EE state."""
    with store.tx() as conn:
        row = conn.execute("SELECT attempts FROM units WHERE id = ?", (unit,)).fetchone()
        n = row["attempts"]
        if attempt is not None:
            if attempt == "new" or n == 0:
                n += 1
                conn.execute(
                    "INSERT INTO attempts (unit, n, request_id, description, state, progress,"
                    " created, started, updated) VALUES (?, ?, ?, ?, 'PENDING', 0, ?, ?, ?)",
                    (unit, n, f"req-{unit}-{n}", f"eebatch {unit}", ts - 60, ts - 50, ts))
            ee = attempt if attempt != "new" else "PENDING"
            conn.execute("UPDATE attempts SET state = ?, progress = ?, eecu_seconds = ?,"
                         " error = ?, updated = ? WHERE unit = ? AND n = ?",
                         (ee, progress, eecu, error, ts, unit, n))
        conn.execute("UPDATE units SET state = ?, error = ?, attempts = ?, updated = ?"
                     " WHERE id = ?", (state, error, n, ts, unit))


def split(store: Store, unit: str, *, ts: float, states: tuple[str, ...]) -> None:
    """Replace a unit by its four children (NW, NE, SW, SE) in the given states, named as
    the worker names them."""
    with store.tx() as conn:
        u = conn.execute("SELECT * FROM units WHERE id = ?", (unit,)).fetchone()
        conn.execute("UPDATE units SET state = 'split', updated = ? WHERE id = ?", (ts, unit))
        w, s, e, n = u["west"], u["south"], u["east"], u["north"]
        mx, my = (w + e) / 2, (s + n) / 2
        quads = [(w, my, mx, n), (mx, my, e, n), (w, s, mx, my), (mx, s, e, my)]
        for q, (bounds, state) in enumerate(zip(quads, states, strict=True)):
            conn.execute(
                "INSERT INTO units (id, tile, row, col, depth, parent, period, start, end, west,"
                " south, east, north, est_pixels, est_bytes, state, updated) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (unit_id(child_id(u["tile"], q), Period(u["period"], None, None)),
                 child_id(u["tile"], q), u["row"], u["col"], u["depth"] + 1, unit,
                 u["period"], u["start"], u["end"], *bounds, u["est_pixels"] // 4,
                 u["est_bytes"] // 4, state, ts))


def log(store: Store, message: str, *, ts: float, level: str = "info",
        unit: str | None = None) -> None:
    store.conn.execute("INSERT INTO events (ts, level, unit, message) VALUES (?, ?, ?, ?)",
                       (ts, level, unit, message))


def worker_status(store: Store, *, ts: float, total: int | None = 15 * 10**9,
                  used: int = 2_100_000_000) -> None:
    store.set_worker_status({
        "drive_used": used, "drive_total": total, "drive_trash": 0,
        "waiting_bytes": 900_000_000, "files_waiting": 3, "download_rate": 12_500_000,
        "units_per_hour": 42.5, "eta_seconds": 5 * 3600 + 12 * 60, "updated": ts})


def populate(store: Store) -> None:
    """A session part-way through: done, running, queued, failed, backoff, cancelled, split."""
    units = [r["id"] for r in store.units()]
    ts = T0 - 900
    for i, unit in enumerate(units[:30]):
        ts += 1
        set_state(store, unit, "done", ts=ts, attempt="SUCCEEDED", progress=1.0,
                  eecu=120.0 + i)
        store.conn.execute(
            "INSERT INTO files (unit, attempt, drive_id, title, size, md5, local_path, state,"
            " updated) VALUES (?, 1, ?, ?, 123456789, 'abc', ?, 'deleted', ?)",
            (unit, f"drive-{unit}", f"{unit}.tif", f"/data/out/{unit}.tif", ts))
    for unit in units[30:34]:
        ts += 1
        set_state(store, unit, "running", ts=ts, attempt="RUNNING", progress=0.4, eecu=30.0)
    for unit in units[34:37]:
        ts += 1
        set_state(store, unit, "queued", ts=ts, attempt="PENDING")
    set_state(store, units[37], "failed", ts=ts + 1, attempt="FAILED",
              error="Image.load: Image asset 'LANDSAT/X' not found.")
    set_state(store, units[38], "backoff", ts=ts + 2, attempt="FAILED",
              error="Internal error (HTTP 500); retrying")
    set_state(store, units[39], "cancelled", ts=ts + 3, attempt="CANCELLED")
    set_state(store, units[40], "exported", ts=ts + 4, attempt="SUCCEEDED", progress=1.0,
              eecu=99.0)
    set_state(store, units[41], "downloading", ts=ts + 5, attempt="SUCCEEDED", progress=1.0,
              eecu=88.0)
    set_state(store, units[42], "failed", ts=ts + 6, attempt="FAILED",
              error="User memory limit exceeded.")
    split(store, units[42], ts=ts + 7, states=("done", "running", "pending", "failed"))
    log(store, "worker started (pid 4242)", ts=T0 - 800)
    log(store, "submitted 6 tasks", ts=T0 - 700)
    log(store, "Internal error (HTTP 500); retry in 60 s", ts=T0 - 300, level="warning",
        unit=units[38])
    log(store, "Image.load: Image asset 'LANDSAT/X' not found.", ts=T0 - 200, level="error",
        unit=units[37])
    log(store, "split into 4 after: User memory limit exceeded.", ts=T0 - 100, level="warning",
        unit=units[42])
    worker_status(store, ts=T0)


def commands(store: Store) -> list[tuple[str, str | None, object]]:
    return [(r["verb"], r["unit"], json.loads(r["arg"]))
            for r in store.conn.execute("SELECT verb, unit, arg FROM commands ORDER BY id")]
