"""Start a worker on a session: connect the backends the job names, take the session's worker
lock, run. Used by `eebatch run`, the demo and the dashboard's in-process worker."""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.parse
from pathlib import Path

from core import paths
from core.backends.drive import Drive
from core.backends.earthengine import EarthEngine
from core.backends.failures import Kind, classify
from core.engine.worker import Backends, Summary, Worker
from core.session import load_session_spec
from core.spec import JobSpec
from core.store import EVENT_TIME, LOG_FORMAT, Store, event_line

CONNECT_FIRST_WAIT, CONNECT_MAX_WAIT = 5.0, 60.0  # seconds between tries while EE is down


class BackendError(Exception):
    """The job's backend cannot be reached or is not set up; the message says what to do."""


def open_backends(spec: JobSpec, emulator_url: str | None = None) -> Backends:
    backend = spec.backend
    if backend.kind == "emulator":
        url = emulator_url or backend.url
        if not url:
            raise BackendError("backend.kind = \"emulator\" needs backend.url (start one with "
                               "`eebatch emulator --port 8787`)")
        _check_answers(url)
        ee = EarthEngine.for_emulator(url, backend.project or "eebatch-demo")
        drive = Drive.for_emulator(url) if spec.export.destination == "drive" else None
        return Backends(ee, drive)
    from core.credentials import google_backends

    return google_backends(spec)


def _check_answers(url: str) -> None:
    """Say at once that nothing listens at the emulator's URL: the clients would retry for
    half a minute before saying less."""
    parts = urllib.parse.urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80),
                                 timeout=5).close()
    except OSError as exc:
        raise BackendError(f"the emulator at {url} does not answer ({exc.strerror or exc}); "
                           "start it with `eebatch emulator --port PORT`") from None


def _connect(store: Store, spec: JobSpec, emulator_url: str | None,
             stop: threading.Event) -> Backends | None:
    """The job's backends. While the service is down (503s, a refused connection to Google:
    an outage), wait and say so, as the worker does mid-run: a start or a resume during an
    outage waits for EE rather than ending in a traceback. None if stopped meanwhile."""
    since: float | None = None
    delay = CONNECT_FIRST_WAIT
    while True:
        with store.tx():  # the headless line and the dashboard say what is going on
            store.set_worker_status({"waiting": "connecting to Earth Engine", "down": (
                {"ee": since} if since else None), "down_why": None, "updated": time.time()})
            store.heartbeat()
        try:
            backends = open_backends(spec, emulator_url)
        except BackendError:
            raise  # not set up, or nothing listens where the job says: the user must act
        except Exception as exc:
            failure = classify(exc)
            if failure.kind is not Kind.OUTAGE:
                raise
            first = since is None
            since = since or time.time()
            why = (f"Earth Engine unreachable since "
                   f"{time.strftime('%H:%M:%S', time.localtime(since))} ({failure.message}); "
                   "the worker starts once it answers")
            with store.tx():
                store.set_worker_status({"down": {"ee": since}, "down_why": why,
                                         "updated": time.time()})
                store.heartbeat()
                if first:
                    store.log(why, "warning")
            if stop.wait(delay):
                return None
            delay = min(delay * 2, CONNECT_MAX_WAIT)
            continue
        if since is not None:
            with store.tx():
                store.log("Earth Engine answers again: the worker starts")
        return backends


def log_path(session_id: str) -> Path:
    return paths.log_dir() / f"{session_id}.log"


def _file_log(store: Store) -> logging.Handler:
    """The session's log file: every event of its store (the dashboard's Log pane), as the
    store commits it (logger eebatch.events). Only this session's: several sessions may run
    in one process. The worker's own logging of an event (eebatch.worker) carries no session
    and is left out, so no event is written twice. A new file starts with the events from
    before the first worker (the session's creation)."""
    session_id = store.id
    path = log_path(session_id)
    if not path.exists():
        with path.open("w", encoding="utf-8") as f:
            f.writelines(event_line(row) + "\n" for row in store.events(limit=10_000))
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt=EVENT_TIME))
    handler.addFilter(lambda record: getattr(record, "session", None) == session_id)
    return handler


def run_session(session_path: Path, *, emulator_url: str | None = None,
                stop: threading.Event | None = None, stay_alive: bool = False) -> Summary:
    """Run the session's worker in this thread until every unit is finished (or `stop`)."""
    store = Store(session_path)
    handler: logging.Handler | None = None
    try:
        store.acquire_worker()  # raises SessionBusy with who holds it
        handler = _file_log(store)
        logger = logging.getLogger("eebatch")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        spec = load_session_spec(store)
        backends = _connect(store, spec, emulator_url, stop or threading.Event())
        if backends is None:  # stopped while waiting for EE to answer
            return Summary(store.counts(), store.failed_units())
        return Worker(store, spec, backends, stay_alive=stay_alive).run(stop)
    finally:
        if handler is not None:
            logging.getLogger("eebatch").removeHandler(handler)
            handler.close()
        store.close()


class RunningWorker:
    """A worker in a thread of this process (the dashboard's)."""

    def __init__(self, session_path: Path, emulator_url: str | None) -> None:
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.summary: Summary | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(session_path, emulator_url),
                                        name="eebatch-worker", daemon=True)

    def _run(self, session_path: Path, emulator_url: str | None) -> None:
        try:
            self.summary = run_session(session_path, emulator_url=emulator_url, stop=self._stop,
                                       stay_alive=True)
        except BaseException as exc:
            self.error = exc

    def start(self) -> RunningWorker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()


def start_worker(session_path: Path, emulator_url: str | None = None) -> RunningWorker:
    """Start a worker thread. Raises SessionBusy when another process already runs the
    session (then a UI simply attaches to the store)."""
    probe = Store(session_path)
    try:
        if probe.worker_alive():
            from core.store import SessionBusy

            raise SessionBusy(f"session {probe.id} is already run by another process")
    finally:
        probe.close()
    return RunningWorker(session_path, emulator_url).start()
