"""Scale of planning: a 100,000-unit job planned and stored.

    python -m tests.bench.bench_plan

Prints JSON. The baseline in the same run is a 1,000-unit plan, so the ratio says how planning
scales (100x the units should cost about 100x, not more); the absolute seconds are what the
issue's goal is stated in (plan < 2 s, plan + store < 3 s on the 2-core reference machine).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path

from tests.jobs import job_text


def _timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    os.environ.setdefault("EEBATCH_HOME", tempfile.mkdtemp(prefix="eebatch-bench-"))
    from core.plan import make_plan
    from core.spec import parse_spec
    from core.store import Store

    results = {}
    # 0.1° tiles x 10 monthly periods: 1°x1° gives 1,000 units, 10°x10° gives 100,000.
    for label, east, north in (("baseline_1k", -119.0, 31.0), ("units_100k", -110.0, 40.0)):
        job = job_text("bench", region={"bbox": [-120, 30, east, north]}, grid={"size": 0.1},
                       time={"start": dt.date(2020, 1, 1), "end": dt.date(2020, 11, 1),
                             "step": "1 month"}, emulator="http://127.0.0.1:8787")
        path = Path(tempfile.mkdtemp()) / "bench.toml"
        path.write_text(job)
        spec, t_spec = _timed(lambda job=job, path=path: parse_spec(job, path))
        plan, t_plan = _timed(lambda spec=spec: make_plan(spec))
        rows, t_rows = _timed(lambda plan=plan: list(plan.unit_rows()))
        store, t_store = _timed(
            lambda path=path, job=job, rows=rows: Store.create("bench", path, job, rows, {}))
        _, t_reopen = _timed(lambda store=store: Store(store.path).counts())
        results[label] = {"units": plan.units, "validate_s": round(t_spec, 3),
                          "plan_s": round(t_spec + t_plan + t_rows, 3),
                          "store_s": round(t_store, 3), "reopen_s": round(t_reopen, 3)}
        store.close()
    big, small = results["units_100k"], results["baseline_1k"]
    results["ratio_plan_100k_vs_1k"] = round(big["plan_s"] / max(small["plan_s"], 1e-6), 1)
    results["goal_plan_under_2s"] = big["plan_s"] < 2.0
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
