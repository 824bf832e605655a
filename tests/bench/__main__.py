"""Every benchmark of issues 6 and 15 in one command.

    python -m tests.bench [--quick] [--runs N]
                          [--only queue,downloads,scale,idle,realistic,routes]
                          [--markdown docs/benchmarks-results.md]

Each part runs in its own process (`python -m tests.bench.bench_NAME`), one after the other,
so none measures another's threads or memory. Prints one JSON document: the machine, each
part's full results per run, and a summary of every goal; the summary is also printed as a
Markdown table (one column per run) on stderr, and written to FILE with `--markdown FILE`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.bench.common import machine

PARTS = ("queue", "downloads", "scale", "idle", "realistic", "routes")


def run_part(name: str, quick: bool) -> dict[str, Any]:
    args = [sys.executable, "-m", f"tests.bench.bench_{name}"] + (["--quick"] if quick else [])
    start = time.time()
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}", "stderr": done.stderr[-3000:]}
    result = json.loads(done.stdout)
    result["bench_wall_s"] = round(time.time() - start, 1)
    return result


def _get(d: dict[str, Any], path: str) -> Any:
    for key in path.split("/"):
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


# (part, label, value path, goal text, met path or None, format); paths use "/" (keys such
# as "GET ee operations.get" hold dots)
ROWS: list[tuple[str, str, str, str, str | None, str]] = [
    ("queue", "1. eebatch makespan over the lower bound", "eebatch/over_lower_bound_pct",
     "≤ 5 %", "goal_within_5pct_of_lower_bound", "+{:.2f} %"),
    ("queue", "1. classic loop makespan over the lower bound", "classic/over_lower_bound_pct",
     "(baseline)", None, "+{:.2f} %"),
    ("queue", "1. makespan, classic ÷ eebatch", "makespan_classic_vs_eebatch", "(ratio)", None,
     "{:.3f}"),
    ("queue", "1. eebatch EE slot use (busy slot time ÷ slots × EE span)",
     "eebatch/slot_utilisation_pct", "(info)", None, "{:.1f} %"),
    ("queue", "1. eebatch: last task ended → last file done (sim. s)",
     "eebatch/tail_after_last_task_s", "(info)", None, "{:.0f} s"),
    ("queue", "2. operations.list pages per poll (eebatch)", "eebatch/operations_pages_per_poll",
     "1", "goal_one_page_per_poll", "{:.2f}"),
    ("queue", "2. per-task status requests (operations.get), eebatch",
     "eebatch/requests/GET ee operations.get", "0", "goal_no_per_task_polling", "{}"),
    ("queue", "2. requests per unit, eebatch", "eebatch/requests_total_per_unit", "(info)", None,
     "{:.2f}"),
    ("queue", "2. requests per unit, classic loop", "classic/requests_total_per_unit", "(info)",
     None, "{:.2f}"),
    ("queue", "2. pages per poll, 10 live, 2,000 finished ops of earlier jobs in the project",
     "operations_pages_vs_history/history_2000/pages", "1",
     "goal_one_page_per_poll_with_history", "{}"),
    ("queue", "2. same, reading every page (ee.data.listOperations, before)",
     "operations_pages_vs_history/history_2000/pages_reading_every_page", "(baseline)", None,
     "{}"),
    ("downloads", "3. eebatch (download_workers 10), whole run, worker start included",
     "eebatch/link_use_pct", "≥ 90 % of 80 MB/s", "goal_90pct_of_link", "{:.1f} %"),
    ("downloads", "3. eebatch (download_workers 10), download phase",
     "eebatch/download_phase_link_use_pct", "≥ 90 %", "goal_90pct_of_link_download_phase",
     "{:.1f} %"),
    ("downloads", "3. eebatch (download_workers 8, the exact fit), whole run",
     "eebatch_workers_8/link_use_pct", "(info)", None, "{:.1f} %"),
    ("downloads", "3. eebatch (download_workers 8), download phase",
     "eebatch_workers_8/download_phase_link_use_pct", "(info)", None, "{:.1f} %"),
    ("downloads", "3. worker peak memory while downloading, download_workers 10",
     "eebatch/worker_peak_mb", "(info)", None, "{:.0f} MB"),
    ("downloads", "3. same, download_workers 8", "eebatch_workers_8/worker_peak_mb", "(info)",
     None, "{:.0f} MB"),
    ("downloads", "3. serial GetContentFile loop", "classic_serial/link_use_pct", "(baseline)",
     None, "{:.1f} %"),
    ("downloads", "3. files with size and MD5 checked", "eebatch/files_verified_md5_and_size",
     "all", "goal_every_md5_checked", "{}"),
    ("scale", "4. plan and store 100,000 units", "plan_and_store/units_100k/plan_and_store_s",
     "< 3 s", "goals_met/plan_and_store_s", "{:.2f} s"),
    ("scale", "4. reopen the session", "reopen/reopen_s", "< 1 s", "goals_met/reopen_s",
     "{:.3f} s"),
    ("scale", "4. dashboard first paint", "tui/tui_first_paint_s", "< 1 s",
     "goals_met/tui_first_paint_s", "{:.2f} s"),
    ("scale", "4. map repaint, every unit changed", "tui/map_repaint_ms", "< 50 ms",
     "goals_met/map_repaint_ms", "{:.0f} ms"),
    ("scale", "4. worker peak memory (VmHWM), units flowing", "worker/worker_peak_mb",
     "< 300 MB", "worker/goal_under_300mb", "{:.0f} MB"),
    ("scale", "4. same, the project listing 100,000 finished ops (20,000 if --quick)",
     "worker_history/worker_peak_mb", "< 300 MB", "worker_history/goal_under_300mb",
     "{:.0f} MB"),
    ("scale", "4. operations.list pages per worker poll then", "worker_history/pages_per_poll",
     "1", "worker_history/goal_one_page_per_poll", "{}"),
    ("scale", "4. same, reading every page (before)",
     "worker_history/pages_reading_every_page", "(baseline)", None, "{}"),
    ("idle", "5. worker CPU, 10 tasks running, 20-unit session",
     "small_session/worker_cpu_pct_of_core", "< 2 % of a core",
     "small_session/goal_under_2pct", "{:.2f} %"),
    ("idle", "5. same, 100,000-unit session", "session_100k/worker_cpu_pct_of_core", "< 2 %",
     "session_100k/goal_under_2pct", "{:.2f} %"),
    ("idle", "5. same, 100,000 units, all but 10 done", "session_100k_late/worker_cpu_pct_of_core",
     "< 2 %", "session_100k_late/goal_under_2pct", "{:.2f} %"),
    ("realistic", "6. realistic job: the bound (least EE work that finished it ÷ 4 slots)",
     "job_lower_bound_hours", "(info)", None, "{:.1f} h"),
    ("realistic", "6. eebatch: every unit done and verified", "eebatch/makespan_hours",
     "(info)", None, "{:.1f} h"),
    ("realistic", "6. eebatch over the bound", "eebatch_over_job_bound_pct", "≤ 5 %",
     "goal_within_5pct_of_bound", "+{:.2f} %"),
    ("realistic", "6. eebatch over its own bound (its own succeeded work ÷ 4)",
     "eebatch/over_lower_bound_pct", "(info)", None, "+{:.2f} %"),
    ("realistic", "6. eebatch: units split (memory failures or foreseen)",
     "eebatch/units_split", "(info)", None, "{}"),
    ("realistic", "6. eebatch: EE hours of failed runs", "eebatch/ee_hours_wasted", "(info)",
     None, "{:.1f} h"),
    ("realistic", "6. eebatch: Drive peak, % of quota", "eebatch/drive_peak_pct_of_quota",
     "(info)", None, "{:.0f} %"),
    ("realistic", "6. eebatch: passes by hand", "eebatch/passes_by_hand", "0", None, "{}"),
    ("realistic", "6. eebatch: duplicate exports", "eebatch/duplicate_exports", "0", None, "{}"),
    ("realistic", "6. eebatch: requests per unit", "eebatch/requests_total_per_unit", "(info)",
     None, "{:.2f}"),
    ("realistic", "6. course loop: hours, passes by hand included", "course/makespan_hours",
     "(baseline)", None, "{:.1f} h"),
    ("realistic", "6. course loop: done after its first pass",
     "course/fraction_done_first_pass", "(baseline)", None, "{:.1%}"),
    ("realistic", "6. course loop: passes by hand", "course/passes_by_hand", "(baseline)",
     None, "{}"),
    ("realistic", "6. course loop: units lost per pass", "course/units_lost_per_pass",
     "(baseline)", None, "{}"),
    ("realistic", "6. course loop: EE hours of failed runs", "course/ee_hours_wasted",
     "(baseline)", None, "{:.1f} h"),
    ("realistic", "6. course loop: Drive peak, % of quota", "course/drive_peak_pct_of_quota",
     "(baseline)", None, "{:.0f} %"),
    ("realistic", "6. course loop: requests per unit", "course/requests_total_per_unit",
     "(baseline)", None, "{:.2f}"),
    ("realistic", "6. submit all, then download: hours, passes by hand included",
     "submit_all/makespan_hours", "(baseline)", None, "{:.1f} h"),
    ("realistic", "6. submit all: done after its first pass",
     "submit_all/fraction_done_first_pass", "(baseline)", None, "{:.1%}"),
    ("realistic", "6. submit all: passes by hand", "submit_all/passes_by_hand", "(baseline)",
     None, "{}"),
    ("realistic", "6. submit all: units lost per pass", "submit_all/units_lost_per_pass",
     "(baseline)", None, "{}"),
    ("realistic", "6. submit all: exports failed because Drive was full",
     "submit_all/exports_failed_drive_full", "(baseline)", None, "{}"),
    ("realistic", "6. submit all: EE hours of failed runs", "submit_all/ee_hours_wasted",
     "(baseline)", None, "{:.1f} h"),
    ("realistic", "6. submit all: Drive peak, % of quota",
     "submit_all/drive_peak_pct_of_quota", "(baseline)", None, "{:.0f} %"),
    ("realistic", "6. submit all: requests per unit", "submit_all/requests_total_per_unit",
     "(baseline)", None, "{:.2f}"),
    ("realistic", "6. eebatch, route auto: every unit done and verified",
     "eebatch_auto/makespan_hours", "(info)", None, "{:.1f} h"),
    ("realistic", "6. eebatch, route auto ÷ the job's bound", "eebatch_auto/vs_job_bound",
     "(info)", None, "{:.3f}"),
    ("realistic", "6. eebatch, route auto: units done direct", "eebatch_auto/units_done_direct",
     "(info)", None, "{}"),
    ("realistic", "6. eebatch, route auto: units moved to batch (EE could not compute them "
     "directly)", "eebatch_auto/units_moved_to_batch", "(info)", None, "{}"),
    ("realistic", "6. eebatch, route auto: EECU-hours of direct requests",
     "eebatch_auto/direct_eecu_hours", "(info)", None, "{:.1f}"),
    ("realistic", "6. eebatch, route auto: Drive peak, % of quota",
     "eebatch_auto/drive_peak_pct_of_quota", "(info)", None, "{:.0f} %"),
    ("realistic", "6. eebatch, route auto: units lost", "eebatch_auto/units_lost_per_pass",
     "0", None, "{}"),
    ("routes", "7. small units (2,000 of 1 Mpx; 200 if --quick), 2 slots: the batch lower "
     "bound", "batch_lower_bound_hours", "(info)", None, "{:.2f} h"),
    ("routes", "7. route batch: every unit done and verified", "batch/done_hours", "(info)",
     None, "{:.2f} h"),
    ("routes", "7. route batch ÷ the batch lower bound", "batch/vs_batch_bound", "(≥ 1)",
     None, "{:.3f}"),
    ("routes", "7. route auto (direct_requests 40): every unit done and verified",
     "auto/done_s", "(info)", None, "{:.0f} s"),
    ("routes", "7. route auto ÷ the batch lower bound", "auto/vs_batch_bound", "< 1",
     "goal_auto_below_batch_bound", "{:.4f}"),
    ("routes", "7. route auto ÷ the direct model's own bound (40 in flight)",
     "auto/over_direct_bound", "(info)", None, "{:.2f}"),
    ("routes", "7. units lost or failed, batch / auto", "units_lost_or_failed", "0 / 0",
     "goal_no_unit_lost", "{}"),
    ("routes", "7. requests per unit, batch", "batch/requests_total_per_unit", "(info)", None,
     "{:.2f}"),
    ("routes", "7. requests per unit, auto", "auto/requests_total_per_unit", "(info)", None,
     "{:.2f}"),
    ("routes", "7. EE batch tasks, batch / auto", "batch_tasks_used", "(info)", None, "{}"),
    ("routes", "7. direct requests (429s), auto", "direct_requests_and_429", "(info)", None,
     "{}"),
    ("routes", "7. files equal byte for byte, batch vs auto", "same_pixels/byte_for_byte_equal",
     "all", "goal_same_pixels", "{}"),
]


def _derive(results: dict[str, Any]) -> None:
    for side in ("eebatch", "classic"):
        part = _get(results, f"queue/{side}")
        if isinstance(part, dict) and part.get("requests"):
            part["requests_total_per_unit"] = sum(part["requests"].values()) / part["units"]
    queue = results.get("queue")
    if isinstance(queue, dict) and isinstance(queue.get("eebatch"), dict):
        queue["eebatch"].setdefault("requests", {}).setdefault("GET ee operations.get", 0)


def summary(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for part, label, path, goal, met, fmt in ROWS:
        if part not in results:
            continue
        value = _get(results[part], path)
        ok = _get(results[part], met) if met else None
        text = "skipped" if value is None else fmt.format(value)
        rows.append({"item": label, "goal": goal, "value": text, "met": ok})
    return rows


def markdown(runs: list[list[dict[str, Any]]], info: dict[str, Any]) -> str:
    head = ["| measure | goal | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " |",
            "|---|---|" + "---|" * len(runs)]
    lines = []
    for i, row in enumerate(runs[0]):
        cells = []
        for run in runs:
            r = run[i]
            mark = "" if r["met"] is None else (" ✅" if r["met"] else " ❌")
            cells.append(f"{r['value']}{mark}")
        lines.append(f"| {row['item']} | {row['goal']} | " + " | ".join(cells) + " |")
    machine_line = (f"Machine: {info['nproc']} cores ({info['cpu']}), {info['ram_gb']} GB RAM, "
                    f"Python {info['python']}; load average at the start "
                    f"{', '.join(str(x) for x in info['loadavg_at_start'])}; {info['date']}.")
    return "\n".join([machine_line, "", *head, *lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench")
    parser.add_argument("--quick", action="store_true",
                        help="smaller jobs and shorter windows (a few minutes in all)")
    parser.add_argument("--runs", type=int, default=1, help="run everything N times")
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts: {', '.join(PARTS)}")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="also write the summary table to this file")
    args = parser.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    info = machine()
    out: dict[str, Any] = {"machine": info, "quick": args.quick, "runs": []}
    tables = []
    for n in range(args.runs):
        results: dict[str, Any] = {}
        for part in parts:
            print(f"run {n + 1}: {part} …", file=sys.stderr, flush=True)
            results[part] = run_part(part, args.quick)
        _derive(results)
        rows = summary(results)
        tables.append(rows)
        out["runs"].append({"results": results, "summary": rows})
    print(json.dumps(out, indent=2, ensure_ascii=False))
    table = markdown(tables, info)
    print(table, file=sys.stderr)  # the summary for whoever watches; stdout stays JSON
    if args.markdown:
        args.markdown.write_text(table, encoding="utf-8")


if __name__ == "__main__":
    main()
