"""The batch model: EE's task queue as users meet it.

A queue per project ordered by priority (higher first) then submission; at most `slots` tasks
RUNNING per project; a task runs `task_overhead_seconds + pixels * bands / pixel_rate` simulated
seconds, with a seeded ±jitter. Oversized tasks fail the way EE's do: over memory within
`memory_fail_seconds` of the start, "Computation timed out." at `max_run_seconds` at the latest.
At most `max_pending_tasks` PENDING per project: one more submit raises QueueFull. Time is simulated
(clock.py), and the model is event-driven: `advance()` replays every start/finish in time order
up to now, so timestamps and slot use are exact however coarse the ticks are.

The model knows nothing of HTTP or outputs: a task carries an opaque `payload`, and the
`finisher` callback (called without the lock held) writes outputs and may return an error
message that fails the task instead.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.emulator.clock import Clock, rfc3339
from core.emulator.config import EmulatorConfig

PENDING, RUNNING, CANCELLING = "PENDING", "RUNNING", "CANCELLING"
SUCCEEDED, FAILED, CANCELLED = "SUCCEEDED", "FAILED", "CANCELLED"
DONE_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED})

MEMORY_MSG = "User memory limit exceeded."
TIMEOUT_MSG = "Computation timed out."
INTERNAL_MSG = "Internal error."
CANCELLED_MSG = "Cancelled."
# EE's text when a project's queue is full, as users' scripts quote it (the number is the cap).
QUEUE_FULL_MSG = (
    "Too many tasks already in the queue ({limit}). Please wait for some of them to complete."
)

CANCEL_SECONDS = 2.0  # simulated seconds a RUNNING task spends CANCELLING
EECU_PER_SECOND = 1.0  # batchEecuUsageSeconds accrued per simulated running second

# google.rpc.Code numbers used in Operation.error
CODE_CANCELLED, CODE_UNKNOWN, CODE_INVALID, CODE_DEADLINE = 1, 2, 3, 4
CODE_RESOURCE_EXHAUSTED, CODE_INTERNAL = 8, 13

_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_IDS = random.SystemRandom()


class QueueFull(Exception):
    """A submit to a project that already has `max_pending_tasks` PENDING tasks."""

    def __init__(self, limit: int) -> None:
        super().__init__(QUEUE_FULL_MSG.format(limit=limit))
        self.message = str(self)


@dataclass
class Task:
    id: str
    project: str
    type: str  # EXPORT_IMAGE | EXPORT_FEATURES | EXPORT_VIDEO | EXPORT_TILES | EXPORT_CLASSIFIER
    description: str
    priority: int
    request_id: str | None
    seq: int
    create_time: float
    pixels: int  # what the run time and the failure thresholds are computed from
    bands: int
    payload: Any = None
    destination_uris: list[str] = field(default_factory=list)
    fail_on_start: str | None = None  # e.g. "Export too large: ..." decided at submission
    workload_tag: str = ""  # ee.data.setWorkloadTag's label, as sent in the export body
    state: str = PENDING
    update_time: float = 0.0
    start_time: float | None = None
    end_time: float | None = None
    duration: float = 0.0  # planned simulated run time
    fail_after: float | None = None  # seconds into the run at which it fails
    fail_message: str | None = None
    fail_code: int = CODE_UNKNOWN
    cancel_at: float | None = None
    finishing: bool = False  # outputs being written (lock released)
    error: dict[str, Any] | None = None
    eecu: float = 0.0

    @property
    def name(self) -> str:
        return f"projects/{self.project}/operations/{self.id}"

    @property
    def done(self) -> bool:
        return self.state in DONE_STATES


class BatchModel:
    def __init__(
        self,
        config: EmulatorConfig,
        clock: Clock,
        finisher: Callable[[Task], str | None] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.finisher = finisher
        self.lock = threading.RLock()
        self._advance_lock = threading.Lock()  # one advancer at a time (it drops `lock`)
        self.tasks: dict[str, Task] = {}  # id -> task
        self._active: dict[str, Task] = {}  # not done: the only tasks an event can concern
        self._next_at: float | None = None  # cached time of the next event (None: recompute)
        self.by_request: dict[tuple[str, str], str] = {}
        self.slots: dict[str, int] = {}  # per-project override (projects.updateConfig)
        self._seq = 0
        self._cursor = clock.now()  # simulated time up to which events were processed
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- submission and commands (call with or without the lock) ------------------------------

    def slots_for(self, project: str) -> int:
        return self.slots.get(project, self.config.slots)

    def set_slots(self, project: str, n: int) -> None:
        with self.lock:
            self.slots[project] = n
            self._next_at = None

    def find_by_request(self, project: str, request_id: str | None) -> Task | None:
        if not request_id:
            return None
        with self.lock:
            tid = self.by_request.get((project, request_id))
            return self.tasks.get(tid) if tid else None

    def submit(
        self,
        project: str,
        type_: str,
        description: str,
        *,
        priority: int = 100,
        request_id: str | None = None,
        pixels: int = 0,
        bands: int = 1,
        payload: Any = None,
        destination_uris: list[str] | None = None,
        fail_on_start: str | None = None,
        workload_tag: str = "",
    ) -> tuple[Task, bool]:
        """Queue a task; returns (task, created). A repeated requestId returns the first task,
        even when the queue is full; otherwise a full queue raises QueueFull."""
        with self.lock:
            if request_id and (project, request_id) in self.by_request:
                return self.tasks[self.by_request[(project, request_id)]], False
            limit = self.config.max_pending_tasks
            pending = sum(
                1 for t in self._active.values() if t.project == project and t.state == PENDING
            )
            if pending >= limit:
                raise QueueFull(limit)
            self._seq += 1
            now = max(self.clock.now(), self._cursor)
            task = Task(
                id=self._new_id(),
                project=project,
                type=type_,
                description=description,
                priority=priority,
                request_id=request_id,
                seq=self._seq,
                create_time=now,
                update_time=now,
                pixels=pixels,
                bands=bands,
                payload=payload,
                destination_uris=destination_uris or [],
                fail_on_start=fail_on_start,
                workload_tag=workload_tag,
            )
            self.tasks[task.id] = task
            self._active[task.id] = task
            self._next_at = None
            if request_id:
                self.by_request[(project, request_id)] = task.id
            return task, True

    def cancel(self, task: Task) -> None:
        """PENDING → CANCELLED at once; RUNNING → CANCELLING → CANCELLED shortly after."""
        with self.lock:
            now = max(self.clock.now(), self._cursor)
            self._next_at = None
            if task.state == PENDING:
                self._end(task, CANCELLED, now, CODE_CANCELLED, CANCELLED_MSG)
            elif task.state == RUNNING and not task.finishing:
                task.state = CANCELLING
                task.update_time = now
                task.cancel_at = now + CANCEL_SECONDS

    def delete(self, task: Task) -> None:
        with self.lock:
            self.tasks.pop(task.id, None)
            self._active.pop(task.id, None)
            self._next_at = None
            if task.request_id:
                self.by_request.pop((task.project, task.request_id), None)

    def _new_id(self) -> str:
        while True:  # never repeated, not even by a restarted emulator: as EE's
            tid = "".join(_IDS.choice(_ID_CHARS) for _ in range(24))
            if tid not in self.tasks:
                return tid

    # -- the simulation -----------------------------------------------------------------------

    def _plan_run(self, task: Task) -> None:
        """Run time and failure schedule, fixed when the task starts (seeded per task)."""
        cfg = self.config
        rng = random.Random(f"{cfg.seed}:{task.project}:{task.seq}")
        work = task.pixels * max(task.bands, 1) / cfg.pixel_rate
        jitter = 1.0 + rng.uniform(-cfg.jitter, cfg.jitter) if cfg.jitter else 1.0
        task.duration = max((cfg.task_overhead_seconds + work) * jitter, 0.001)
        if cfg.straggler_rate and random.Random(f"{cfg.seed}:{task.project}:{task.seq}:slow"
                                                ).random() < cfg.straggler_rate:
            task.duration *= cfg.straggler_slowdown  # its own draw: other draws stay the same
        internal = rng.random() < cfg.internal_error_rate
        if task.fail_on_start:
            task.fail_after = min(2.0, task.duration * 0.1)
            task.fail_message, task.fail_code = task.fail_on_start, CODE_INVALID
        elif task.pixels > cfg.memory_limit_pixels:
            # EE gives up on memory early in the computation: minutes, however big the export.
            task.fail_after = min(task.duration * 0.25, cfg.memory_fail_seconds)
            task.fail_message, task.fail_code = MEMORY_MSG, CODE_RESOURCE_EXHAUSTED
        elif task.pixels > cfg.timeout_pixels:
            task.fail_after = min(task.duration * 0.6, cfg.max_run_seconds)
            task.fail_message, task.fail_code = TIMEOUT_MSG, CODE_DEADLINE
        elif task.duration > cfg.max_run_seconds:
            # Too slow to finish within EE's run-time limit: it times out at the limit.
            task.fail_after = cfg.max_run_seconds
            task.fail_message, task.fail_code = TIMEOUT_MSG, CODE_DEADLINE
        elif internal:
            task.fail_after = task.duration * rng.uniform(0.1, 0.9)
            task.fail_message, task.fail_code = INTERNAL_MSG, CODE_INTERNAL

    def _next_event(self) -> tuple[float, str, Task] | None:
        best: tuple[float, int, str, Task] | None = None

        def consider(t: float, order: int, kind: str, task: Task) -> None:
            nonlocal best
            if best is None or (t, order, task.seq) < (best[0], best[1], best[3].seq):
                best = (t, order, kind, task)

        running: dict[str, int] = {}
        pending: dict[str, list[Task]] = {}
        for task in self._active.values():
            if task.state in (RUNNING, CANCELLING):
                running[task.project] = running.get(task.project, 0) + 1
                if task.finishing:
                    continue
                if task.state == CANCELLING and task.cancel_at is not None:
                    consider(task.cancel_at, 0, "cancelled", task)
                assert task.start_time is not None
                if task.fail_after is not None:
                    consider(task.start_time + task.fail_after, 0, "fail", task)
                else:
                    consider(task.start_time + task.duration, 0, "finish", task)
            elif task.state == PENDING:
                pending.setdefault(task.project, []).append(task)
        for project, queue in pending.items():
            if running.get(project, 0) >= self.slots_for(project):
                continue
            # The slot is free now (events are processed in order): the best task already
            # submitted at the cursor starts; otherwise the next one to be submitted.
            ready = [t for t in queue if t.create_time <= self._cursor]
            if ready:
                task = min(ready, key=lambda t: (-t.priority, t.seq))
                consider(self._cursor, 1, "start", task)
            else:
                task = min(queue, key=lambda t: (t.create_time, -t.priority, t.seq))
                consider(task.create_time, 1, "start", task)
        if best is None:
            return None
        return best[0], best[2], best[3]

    def advance(self) -> None:
        """Process every event up to the clock's now (call from one thread, or tests)."""
        with self._advance_lock:
            while True:
                with self.lock:
                    now = self.clock.now()
                    # Nothing changed and nothing is due: skip the scan (the ticker runs often).
                    if self._next_at is not None and self._next_at > now:
                        self._cursor = max(self._cursor, now)
                        return
                    ev = self._next_event()
                    if ev is None or ev[0] > now:
                        self._next_at = ev[0] if ev else math.inf
                        self._cursor = max(self._cursor, now)
                        return
                    self._next_at = None
                    t, kind, task = ev
                    self._cursor = max(self._cursor, t)
                    if kind == "start":
                        task.state = RUNNING
                        task.start_time = task.update_time = t
                        self._plan_run(task)
                        continue
                    if kind == "cancelled":
                        self._end(task, CANCELLED, t, CODE_CANCELLED, CANCELLED_MSG)
                        continue
                    if kind == "fail":
                        assert task.fail_message is not None
                        self._end(task, FAILED, t, task.fail_code, task.fail_message)
                        continue
                    task.finishing = True  # "finish": write outputs without the lock
                error = None
                if self.finisher is not None:
                    try:
                        error = self.finisher(task)
                    except Exception as exc:  # an emulator bug must not kill the ticker
                        error = f"Internal error. ({exc})"
                with self.lock:
                    task.finishing = False
                    if error:
                        self._end(task, FAILED, t, CODE_INVALID, error)
                    else:
                        self._end(task, SUCCEEDED, t)

    def _end(
        self, task: Task, state: str, t: float, code: int = 0, message: str | None = None
    ) -> None:
        task.state = state
        task.end_time = task.update_time = t
        self._active.pop(task.id, None)
        self._next_at = None
        if task.start_time is not None:
            task.eecu = max(t - task.start_time, 0.0) * EECU_PER_SECOND
        task.error = {"code": code, "message": message} if message else None

    # -- the ticker ---------------------------------------------------------------------------

    def start(self, tick: float = 0.02) -> None:
        if self._thread:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(tick):
                self.advance()

        self._thread = threading.Thread(target=loop, name="emulator-batch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
            self._thread = None

    # -- views --------------------------------------------------------------------------------

    def progress(self, task: Task, now: float) -> float:
        if task.state == SUCCEEDED:
            return 1.0
        if task.start_time is None or task.duration <= 0:
            return 0.0
        end = task.end_time if task.end_time is not None else now
        return round(min(max((end - task.start_time) / task.duration, 0.0), 0.99), 4)

    def operation(self, task: Task) -> dict[str, Any]:
        """The google.longrunning.Operation JSON."""
        with self.lock:
            now = max(self.clock.now(), self._cursor)
            meta: dict[str, Any] = {
                "@type": "type.googleapis.com/google.earthengine.v1.OperationMetadata",
                "state": task.state,
                "description": task.description,
                "type": task.type,
                "priority": task.priority,
                "createTime": rfc3339(task.create_time),
                "updateTime": rfc3339(task.update_time),
            }
            if task.state == RUNNING and task.start_time is not None:
                # EE refreshes updateTime with each progress report while a task runs.
                meta["updateTime"] = rfc3339(
                    max(task.update_time, min(now, task.start_time + task.duration))
                )
            if task.start_time is not None:
                meta["startTime"] = rfc3339(task.start_time)
                meta["attempt"] = 1
                frac = self.progress(task, now)
                meta["progress"] = frac
                meta["stages"] = _stages(frac, task.state == SUCCEEDED)
                running_s = (task.end_time or now) - task.start_time
                eecu = task.eecu if task.done else max(running_s, 0.0) * EECU_PER_SECOND
                meta["batchEecuUsageSeconds"] = round(eecu, 3)
            if task.end_time is not None:
                meta["endTime"] = rfc3339(task.end_time)
            if task.destination_uris:
                meta["destinationUris"] = list(task.destination_uris)
            op: dict[str, Any] = {"name": task.name, "metadata": meta, "done": task.done}
            if task.done:
                if task.error:
                    op["error"] = dict(task.error)
                else:
                    op["response"] = {"@type": "type.googleapis.com/google.protobuf.Empty"}
            return op

    def list_tasks(self, project: str) -> list[Task]:
        """Newest first, as the real operations.list appears to (undocumented); oldest first
        with `operations_oldest_first`."""
        with self.lock:
            mine = [t for t in self.tasks.values() if t.project == project]
        if self.config.operations_oldest_first:
            return sorted(mine, key=lambda t: t.seq)
        return sorted(mine, key=lambda t: -t.seq)

    def counts(self) -> dict[str, int]:
        with self.lock:
            out: dict[str, int] = {}
            for t in self.tasks.values():
                out[t.state] = out.get(t.state, 0) + 1
            return out


def _stages(frac: float, done: bool) -> list[dict[str, Any]]:
    """Two stages like EE's exports: computing local files, then writing to the destination."""
    compute_done = 1 if done or frac >= 0.9 else 0
    return [
        {
            "displayName": "Create Local Files",
            "completeWorkUnits": compute_done,
            "totalWorkUnits": "1",
            "description": "Computation and writing of temporary files.",
        },
        {
            "displayName": "Write Files to Destination",
            "completeWorkUnits": 1 if done else 0,
            "totalWorkUnits": "1",
            "description": "Uploading of files to the export destination.",
        },
    ]
