"""A table recipe's product: every unit's CSV merged into one table per job (CSV and Parquet),
with the unit, tile and period (and batch) each row came from."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from core.assembly.products import assemble_session
from core.emulator.app import Emulator
from core.engine.runner import run_session
from core.session import load_session_spec
from core.store import Store
from tests.assembly.conftest import eebatch, make_job, make_session

HERE = Path(__file__).parent
MONTHS = {"start": "2023-06-01", "end": "2023-08-01", "step": "1 month"}


def table_session(tmp_path: Path, url: str) -> Store:
    shutil.copy(HERE / "table_recipes.py", tmp_path)
    return make_session(make_job(tmp_path, url, region={"bbox": [0.2, 40.0, 1.8, 40.5]},
                                 time=MONTHS, recipe={"name": "python", "kind": "table",
                                                      "function": "table_recipes:features"}))


def test_every_units_rows_in_one_table_with_unit_tile_and_period(tmp_path: Path,
                                                                   emulator: Emulator) -> None:
    store = table_session(tmp_path, emulator.url)
    assert run_session(store.path).ok
    out = tmp_path / "out"
    files = store.product_files()
    assert len(files) == 4  # 2 tiles x 2 months
    merged = pd.read_csv(out / "table.csv", dtype=str, keep_default_na=False)
    assert list(merged.columns[:3]) == ["unit", "tile", "period"]
    assert "batch" not in merged.columns  # a job without batches
    expected = []
    for f in files:  # one row per input row, in the files' order, each with its origin
        rows = pd.read_csv(f["local_path"], dtype=str, keep_default_na=False)
        assert len(rows) == 3
        expected.append(rows.assign(unit=f["unit"], tile=f["tile"], period=f["period"]))
    want = pd.concat(expected, ignore_index=True)[list(merged.columns)]
    pd.testing.assert_frame_equal(merged, want)
    assert set(merged["period"]) == {"20230601", "20230701"}
    parquet = pd.read_parquet(out / "table.parquet")
    assert list(parquet.columns) == list(merged.columns) and len(parquet) == len(merged)
    assert parquet["k"].tolist() == [0, 1, 2] * 4 and parquet["share"].iloc[1] == 0.25
    (line,) = [e["message"] for e in store.events(limit=1000)
               if e["message"].startswith("assembled table")]
    assert f"12 rows from 4 files → {out / 'table.csv'} and table.parquet" in line
    assert not list(out.rglob("mosaic*"))  # a table job has no mosaic

    # Merged again: the same bytes.
    before = {n: (out / n).read_bytes() for n in ("table.csv", "table.parquet")}
    result = eebatch("assemble", store.id)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"assembled {line.removeprefix('assembled ')}"]
    assert {n: (out / n).read_bytes() for n in before} == before

    # Stopped after the CSV but before the Parquet file (written last): the next start finds
    # the job finished and merges again, the same bytes.
    (out / "table.parquet").unlink()
    assert run_session(store.path).ok
    assert {n: (out / n).read_bytes() for n in before} == before


def test_a_units_batch_is_a_column_when_units_have_one(tmp_path: Path,
                                                       emulator: Emulator) -> None:
    store = table_session(tmp_path, emulator.url)
    if "batch" not in store.unit_columns():
        pytest.skip("this store has no batch column yet")
    assert run_session(store.path).ok
    with store.tx():  # as a job cut into batches numbers them, from 0 in each period
        store.conn.execute("UPDATE units SET batch = CAST(substr(tile, -1) AS INTEGER) % 2")
    (outcome,) = assemble_session(store, load_session_spec(store))
    assert outcome.made
    merged = pd.read_csv(tmp_path / "out" / "table.csv")
    assert list(merged.columns[:4]) == ["unit", "tile", "period", "batch"]
    for row in merged.itertuples():
        assert row.batch == store.unit(row.unit)["batch"]
