"""The emulator's HTTP layer: a threaded HTTP/1.1 server on 127.0.0.1, a regex router, and
Google-style JSON responses. The EE and Drive modules register routes on one Router; nothing
here knows either API.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

CHUNK = 64 * 1024


@dataclass
class Request:
    method: str
    path: str  # without the query string, '//' collapsed
    query: dict[str, str]  # first value of each parameter
    headers: dict[str, str]  # lower-cased names
    body: bytes
    base_url: str  # http://127.0.0.1:PORT, for absolute links (Location, selfLink)

    def json(self) -> Any:
        if not self.body:
            return {}
        return json.loads(self.body)


@dataclass
class FileSlice:
    """A byte range of a file on disk, streamed to the client in CHUNK pieces (never all in RAM)."""

    path: Path
    start: int
    length: int

    def chunks(self) -> Iterator[bytes]:
        with open(self.path, "rb") as fh:
            fh.seek(self.start)
            left = self.length
            while left > 0:
                data = fh.read(min(CHUNK, left))
                if not data:
                    return
                left -= len(data)
                yield data


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    file: FileSlice | None = None  # when set, streamed instead of `body`

    @property
    def length(self) -> int:
        return self.file.length if self.file else len(self.body)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(obj, separators=(",", ":")).encode()
    content_type = {"Content-Type": "application/json; charset=UTF-8"}
    return Response(status, body, {**content_type, **(headers or {})})


def error_response(
    status: int, message: str, reason: str | None = None, *, location: str | None = None
) -> Response:
    """A Google JSON error body; both clients turn `error.message` into their exception text."""
    status_name = {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        409: "ALREADY_EXISTS",
        416: "OUT_OF_RANGE",
        429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL",
        503: "UNAVAILABLE",
    }.get(status, HTTPStatus(status).phrase.upper().replace(" ", "_"))
    default_reason = {
        400: "invalid",
        401: "required",
        403: "forbidden",
        404: "notFound",
        429: "rateLimitExceeded",
        500: "backendError",
        503: "backendError",
    }.get(status, "error")
    item = {"domain": "global", "reason": reason or default_reason, "message": message}
    if location:
        item.update(locationType="parameter", location=location)
    return json_response(
        {"error": {"code": status, "message": message, "status": status_name, "errors": [item]}},
        status,
    )


Handler = Callable[..., Response]


class Router:
    """Routes (method, path) to a handler by regex full match; named groups become kwargs."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], str, Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler, *, name: str | None = None) -> None:
        """`name` labels the route in the request counters (default: the pattern)."""
        self._routes.append((method.upper(), re.compile(pattern), name or pattern, handler))

    def match(self, method: str, path: str) -> tuple[str, Handler, dict[str, str]] | None:
        for route_method, regex, name, handler in self._routes:
            if route_method != method:
                continue
            m = regex.fullmatch(path)
            if m:
                return name, handler, m.groupdict()
        return None


class ResetConnection(Exception):
    """Raised by a hook to drop the connection without an answer (a 'connection reset')."""


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: a burst of 40 new connections (the direct
    # route's requests in flight) saw connections refused and retried for about a second.
    request_queue_size = 128


class HttpServer:
    """ThreadingHTTPServer bound to 127.0.0.1 only. `hooks` lets the fault injector see each
    request before its handler and each response before it is written."""

    def __init__(self, router: Router, port: int = 0) -> None:
        self.router = router
        self.counters: Counter[str] = Counter()
        self.counters_lock = threading.Lock()
        # before(req, route_name) -> Response | None (raise ResetConnection to drop the socket)
        self.before: Callable[[Request, str], Response | None] | None = None
        # stream(req, route_name, response) -> iterator of chunks (throttle / truncate / corrupt)
        self.stream: Callable[[Request, str, Response], Iterator[bytes]] | None = None
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet by default
                pass

            def do_CONNECT(self) -> None:
                # earthengine-api's hidden catalog fetch comes here through HTTPS_PROXY: refuse.
                refusal = error_response(403, "The emulator does not proxy.")
                server._write(self, refusal, None, "")

            def _dispatch(self) -> None:
                server._dispatch(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self._thread is not None:
            # Started already (`with emulator_with() as emu` starts a started emulator): a
            # second serve loop on one socket outlived stop() and spun on the closed socket.
            return
        # A short poll interval: stop() waits for the serve loop to notice (0.5 s by default).
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="emulator-http", daemon=True
        )
        self._thread.start()

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- internals -------------------------------------------------------------------------

    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        path = re.sub(r"/{2,}", "/", split.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in h.headers.items()}
        length = int(headers.get("content-length") or 0)
        body = h.rfile.read(length) if length else b""
        method = h.command
        # googleapiclient turns a GET with a >2048-character URI into a form POST.
        override = headers.get("x-http-method-override")
        if method == "POST" and override:
            method = override.upper()
            if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                query.update(dict(parse_qsl(body.decode(), keep_blank_values=True)))
                body = b""
        req = Request(method, path, query, headers, body, self.url)
        found = self.router.match(method, path)
        route = found[0] if found else "unmatched"
        with self.counters_lock:
            self.counters[f"{method} {route}"] += 1
        try:
            response = self.before(req, route) if self.before else None
            if response is None:
                if found is None:
                    response = error_response(404, f"Not found: {method} {path}")
                else:
                    try:
                        response = found[1](req, **found[2])
                    except Exception as exc:  # a bug is a 400, never a retried 5xx
                        response = error_response(400, f"Emulator could not handle request: {exc}")
            self._write(h, response, req, route)
        except ResetConnection:
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(2)

    def _write(
        self, h: BaseHTTPRequestHandler, resp: Response, req: Request | None, route: str
    ) -> None:
        h.send_response(resp.status)
        headers = {"Content-Length": str(resp.length), **resp.headers}
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if h.command == "HEAD":
            return
        chunks: Iterator[bytes]
        if self.stream and req is not None:
            chunks = self.stream(req, route, resp)
        elif resp.file:
            chunks = resp.file.chunks()
        else:
            chunks = iter([resp.body])
        try:
            for chunk in chunks:
                h.wfile.write(chunk)
            h.wfile.flush()
        except ResetConnection:
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(2)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True
