"""`eebatch serve SESSION`: the dashboard in a browser, through textual-serve on 127.0.0.1.

textual-serve starts one app process per browser tab, so each tab runs `eebatch open SESSION
--attach` (it reads the store and posts commands, and never starts a worker) and the session's
one worker runs here, or is the headless worker already running it. A token in the URL keeps
the other accounts of a shared host out: 127.0.0.1 is open to every local user.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.store import Store
from tui.launch import WorkerStarter, has_work

DEFAULT_PORT = 8000
HOST = "127.0.0.1"  # never another interface: no authentication beyond the token
SUPERVISE_SECONDS = 1.0


class CannotServe(Exception):
    """One line for stderr: the port is taken, or textual-serve is missing."""


def viewer_command(path: Path) -> str:
    """The shell command textual-serve runs for each browser tab."""
    return shlex.join([sys.executable, "-m", "tui", "open", str(path), "--attach"])


def listen(port: int) -> socket.socket:
    """The listening socket on 127.0.0.1, taken before any worker starts (port 0: any free)."""
    try:
        return socket.create_server((HOST, port))
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)  # not its long wrapped text
        raise CannotServe(f"cannot listen on {HOST}:{port} ({why}); "
                          "--port N picks another (0: any free)") from None


class Supervisor:
    """The session's one worker: started here when the session has work and no process runs
    it; started again when a viewer sends a command (a retry of a finished session, say) and
    none runs. A worker that another process runs is left alone, before and after."""

    def __init__(self, path: Path, say: Callable[[str], None] = print) -> None:
        self.path = path
        self.say = say
        self.starter = WorkerStarter(path)
        self.worker: Any | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="eebatch-serve-supervisor",
                                        daemon=True)
        self._told_error = False
        self._commands_seen = 0  # pending commands up to here already had a worker started

    def start(self) -> str:
        """Start the worker if needed and the watch; one line on who runs the session."""
        if Store.worker_lock_held(self.path):
            line = f"worker   {self._who()}, headless: it goes on after Ctrl+C"
        elif has_work(self.path):
            self._start_worker()
            line = ("worker   here, started by serve: Ctrl+C stops it after its current step"
                    if self.worker is not None else f"worker   {self._who()}")
        else:
            line = ("worker   none: every unit is settled (a retry from the browser starts one "
                    "here)")
        self._thread.start()
        return line

    def _who(self) -> str:
        store = Store(self.path)
        try:
            return store.who_runs()
        finally:
            store.close()

    def _start_worker(self) -> None:
        self.worker = self.starter()
        self._told_error = False

    def _watch(self) -> None:
        store = Store(self.path)  # this thread's own connection
        try:
            while not self._stop.wait(SUPERVISE_SECONDS):
                self._check(store)
        finally:
            store.close()

    def _check(self, store: Store) -> None:
        worker = self.worker
        if worker is not None and not worker.is_alive() and not self._told_error:
            self._told_error = True
            if worker.error is not None:
                self.say(f"the worker stopped: {worker.error}")
        if worker is not None and worker.is_alive():
            return
        pending = [row["id"] for row in store.pending_commands()]
        newest = max(pending, default=0)
        # Only a command not seen before starts one: a worker that fails at start (its
        # backend down) is not started again in a loop.
        if newest > self._commands_seen and not Store.worker_lock_held(self.path):
            self._commands_seen = newest
            self.say("a command from the browser and no worker: starting one here")
            self._start_worker()

    def stop(self) -> None:
        """Stop the watch, and the worker if this process started it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        worker = self.worker
        if worker is not None and worker.is_alive():
            self.say("stopping the worker serve started (it finishes its current step)…")
            worker.stop()
            worker.join(60)
            self.say("the worker stopped" if not worker.is_alive()
                     else "the worker did not stop within 60 s; it ends with this process")
        elif Store.worker_lock_held(self.path):
            self.say(f"the headless worker goes on ({self._who()})")
        self.starter.close()


def _server_class() -> type:
    """textual-serve's Server with a token on the page and its websocket, URLs taken from the
    request (so `ssh -L 9000:127.0.0.1:8000` works too), and viewers closed at shutdown."""
    try:
        import aiohttp_jinja2
        import jinja2
        from aiohttp import web
        from textual_serve.server import Server
    except ImportError:
        raise CannotServe("eebatch serve needs textual-serve: pip install "
                          "'textual-serve>=1.1.3,<1.2'") from None

    class TokenServer(Server):  # type: ignore[misc]
        def __init__(self, command: str, title: str, token: str,
                     say: Callable[[str], None]) -> None:
            super().__init__(command, host=HOST, title=title)
            self.token = token
            self.say = say
            self.viewers: set[asyncio.Task[Any]] = set()

        def initialize_logging(self) -> None:
            import logging

            # Its warnings (a viewer that failed to start), no line per HTTP request; the
            # worker's events go to the session's log file, as with `run --headless`.
            for name in ("textual-serve", "aiohttp"):
                logging.getLogger(name).setLevel(logging.WARNING)

        async def _make_app(self) -> web.Application:
            app = web.Application()
            aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(self.templates_path))
            app.add_routes([
                web.get("/", self.page, name="index"),
                web.get("/ws/{token}", self.viewer, name="websocket"),
                web.get("/download/{key}", self.handle_download, name="download"),
                web.static("/static", self.statics_path, name="static"),
            ])
            app.on_shutdown.append(self.close_viewers)
            return app

        def _check(self, token: str | None) -> None:
            if token is None or not secrets.compare_digest(token, self.token):
                raise web.HTTPForbidden(text="eebatch serve: open the URL it printed (with "
                                             "its ?token=…)\n")

        @aiohttp_jinja2.template("app_index.html")
        async def page(self, request: web.Request) -> dict[str, Any]:
            self._check(request.query.get("token"))
            scheme = "wss" if request.secure else "ws"
            font = request.query.get("fontsize", "16")
            return {
                "font_size": int(font) if font.isdigit() else 16,
                "app_websocket_url": f"{scheme}://{request.host}/ws/{self.token}",
                "config": {"static": {"url": "/static/"}},
                "application": {"name": self.title},
            }

        async def viewer(self, request: web.Request) -> web.StreamResponse:
            self._check(request.match_info.get("token"))
            task = asyncio.current_task()
            assert task is not None
            self.viewers.add(task)
            self.say(f"a browser connected ({len(self.viewers)} watching)")
            try:
                return await self.handle_websocket(request)  # type: ignore[no-any-return]
            finally:
                self.viewers.discard(task)
                self.say(f"a browser left ({len(self.viewers)} watching)")

        async def close_viewers(self, app: web.Application) -> None:
            """Each viewer's app is told to quit (textual-serve does it when its websocket
            handler ends), so no app process outlives serve."""
            tasks = list(self.viewers)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        def run(self, sock: socket.socket) -> None:
            self.initialize_logging()
            loop = asyncio.new_event_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.request_exit)
            web.run_app(self._make_app(), sock=sock, handle_signals=False, loop=loop,
                        print=None, shutdown_timeout=5.0)

    return TokenServer


def serve_session(path: Path, port: int = DEFAULT_PORT) -> int:
    """Serve the session's dashboard until Ctrl+C (or SIGTERM); 0 when stopped so."""
    server_class = _server_class()
    sock = listen(port)
    port = sock.getsockname()[1]
    store = Store(path)
    session_id = store.id
    store.close()
    token = secrets.token_urlsafe(16)

    def say(line: str) -> None:
        print(f"eebatch serve: {line}", flush=True)

    supervisor = Supervisor(path, say)
    server = server_class(viewer_command(path), f"eebatch · {session_id}", token, say)
    try:
        worker_line = supervisor.start()
        url = f"http://{HOST}:{port}/?token={token}"
        print(f"eebatch serve: session {session_id} in a browser\n"
              f"  open     {url}\n"
              f"  from your machine:  ssh -N -L {port}:{HOST}:{port} {socket.gethostname()}"
              f"   then open the same URL there\n"
              f"  {worker_line}\n"
              "  each browser tab gets its own view; Ctrl+C stops serving", flush=True)
        server.run(sock)
    finally:
        sock.close()
        supervisor.stop()
    say("stopped")
    return 0
