"""Fault injection for the emulator: make the real clients see what Google sometimes does.

`POST /_emulator/faults` takes one fault object (or a list of them), `GET` lists them with
how often each fired, `DELETE` removes them all (and the throttle). A fault matches requests
by `method`, `path_regex` (searched in the path), `route` (the route's name, e.g. "drive
files.list", "ee operations.get") and `query_contains` (a substring of the query); it fires
`count` times (-1: forever) after letting `skip` matching requests through. Kinds:

* status   – answer `status` (400..599) with a Google JSON error. Without `reason`/`message`,
             Google's own: 503 backendError "The service is currently unavailable."; 500
             backendError "Internal error encountered." (Google also says "Backend Error":
             pass it as `message`); 429 rateLimitExceeded "Too Many Requests" (pass reason
             userRateLimitExceeded for the per-user limit); 403 with reason
             downloadQuotaExceeded "The download quota for this file has been exceeded.", with
             storageQuotaExceeded "The user's Drive storage quota has been exceeded."
* reset    – drop the connection without an answer
* truncate – send the full Content-Length but only `fraction` of the body, then close
* corrupt  – flip `flips` bytes spread over the body (same length, so only a checksum notices)
* slow     – sleep `delay` seconds before answering
* throttle – send matching bodies at `bytes_per_second`

`POST /_emulator/throttle` sets global limits on every streamed body: `per_connection` and a
`total` shared by all connections.

`POST /_emulator/outage` with `{"route": "ee" | "drive" | "all" | <path regex>, "seconds": N,
"status": 503}` makes every request of that family fail for N wall-clock seconds from now,
with Google's text for the status (503 "The service is currently unavailable."). Families go
by the route names ee.py and drive.py register ("ee ..." and "drive ..."), and for a path no
route matches by its prefix (/v1…, /$discovery: ee; /drive/, /upload/drive/: drive); any
other `route` is a regex searched in the path. Several outages may overlap; `DELETE
/_emulator/outage` ends them all, `GET` (and /_emulator/faults, /_emulator/state) shows those
still on with the seconds left.

Admin routes (/_emulator/*) are never faulted nor out.
"""

from __future__ import annotations

import itertools
import math
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from core.emulator.http import (
    Request,
    ResetConnection,
    Response,
    Router,
    error_response,
    json_response,
)

KINDS = ("status", "reset", "truncate", "corrupt", "slow", "throttle")
FAMILIES = ("ee", "drive", "all")
_STREAM_KINDS = ("truncate", "corrupt", "throttle")
_PIECE = 16 * 1024  # pacing granularity for throttled bodies
_ADMIN = "/_emulator/"

# Google's texts and reasons, as the real services send them (notes/field.md section 8).
UNAVAILABLE = "The service is currently unavailable."
INTERNAL = "Internal error encountered."
TOO_MANY_REQUESTS = "Too Many Requests"
DOWNLOAD_QUOTA = "The download quota for this file has been exceeded."
STORAGE_QUOTA = "The user's Drive storage quota has been exceeded."
_REASON_BY_STATUS = {429: "rateLimitExceeded", 500: "backendError", 503: "backendError"}
_MESSAGE_BY_REASON = {
    "downloadQuotaExceeded": DOWNLOAD_QUOTA,
    "storageQuotaExceeded": STORAGE_QUOTA,
}
_MESSAGE_BY_STATUS = {429: TOO_MANY_REQUESTS, 500: INTERNAL, 503: UNAVAILABLE}
# Paths of no route, told apart by prefix (the routes themselves go by their names).
_EE_PATH = re.compile(r"^/(v1[a-z0-9]*/|\$discovery/)")
_DRIVE_PATH = re.compile(r"^/(upload/)?drive/")


class FaultSpecError(ValueError):
    pass


@dataclass
class Fault:
    id: int
    kind: str
    method: str | None = None
    path_regex: str | None = None
    route: str | None = None
    query_contains: str | None = None
    count: int = 1  # remaining firings; -1 = forever
    skip: int = 0  # matching requests still to let through
    status: int = 503
    reason: str | None = None
    message: str | None = None
    fraction: float = 0.5
    flips: int = 1
    delay: float = 1.0
    bytes_per_second: float = 0.0
    fired: int = 0
    _regex: re.Pattern[str] | None = field(default=None, repr=False)

    @classmethod
    def from_spec(cls, fault_id: int, spec: dict[str, Any]) -> Fault:
        if not isinstance(spec, dict):
            raise FaultSpecError("a fault is a JSON object")
        kind = spec.get("kind")
        if kind not in KINDS:
            raise FaultSpecError(f"kind must be one of {', '.join(KINDS)}")
        known = {f for f in cls.__dataclass_fields__ if not f.startswith("_")} - {"id", "fired"}
        unknown = set(spec) - known
        if unknown:
            raise FaultSpecError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        try:
            fault = cls(id=fault_id, **spec)
            fault.count = int(fault.count)
            fault.skip = int(fault.skip)
            fault.status = int(fault.status)
            fault.fraction = float(fault.fraction)
            fault.flips = int(fault.flips)
            fault.delay = float(fault.delay)
            fault.bytes_per_second = float(fault.bytes_per_second)
            fault._regex = re.compile(fault.path_regex) if fault.path_regex else None
        except (TypeError, ValueError, re.error) as exc:
            raise FaultSpecError(str(exc)) from exc
        if fault.method:
            fault.method = fault.method.upper()
        if fault.count == 0 or fault.count < -1 or fault.skip < 0:
            raise FaultSpecError("count must be >= 1 or -1, skip >= 0")
        if kind == "status" and not 400 <= fault.status <= 599:
            raise FaultSpecError("status must be 400..599")
        if kind == "status":
            fault.reason = fault.reason or _REASON_BY_STATUS.get(fault.status)
            fault.message = fault.message or _default_message(fault.status, fault.reason)
        if kind == "truncate" and not 0 <= fault.fraction < 1:
            raise FaultSpecError("fraction must be in [0, 1)")
        if kind == "corrupt" and fault.flips < 1:
            raise FaultSpecError("flips must be >= 1")
        if kind == "slow" and fault.delay < 0:
            raise FaultSpecError("delay must be >= 0")
        if kind == "throttle" and fault.bytes_per_second <= 0:
            raise FaultSpecError("bytes_per_second must be > 0")
        return fault

    @property
    def active(self) -> bool:
        return self.count != 0

    def matches(self, req: Request, route: str) -> bool:
        if self.method and self.method != req.method:
            return False
        if self._regex and not self._regex.search(req.path):
            return False
        if self.route and self.route != route:
            return False
        if self.query_contains:
            raw = "&".join(f"{k}={v}" for k, v in req.query.items())
            if self.query_contains not in raw:
                return False
        return True

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if not k.startswith("_") and v is not None}
        out["active"] = self.active
        return out


@dataclass
class Outage:
    """Every request of one route family fails with `status` until `until` (monotonic)."""

    route: str  # "ee", "drive", "all" or a path regex
    status: int
    until: float
    _regex: re.Pattern[str] | None = field(default=None, repr=False)

    @classmethod
    def from_spec(cls, spec: Any, now: float) -> Outage:
        if not isinstance(spec, dict):
            raise FaultSpecError("an outage is a JSON object")
        unknown = set(spec) - {"route", "seconds", "status"}
        if unknown:
            raise FaultSpecError(f"unknown outage fields: {', '.join(sorted(unknown))}")
        route = spec.get("route", "all")
        if not isinstance(route, str) or not route:
            raise FaultSpecError("route must be ee, drive, all or a path regex")
        try:
            seconds = float(spec["seconds"])
            status = int(spec.get("status", 503))
            regex = None if route in FAMILIES else re.compile(route)
        except KeyError:
            raise FaultSpecError("seconds is required") from None
        except (TypeError, ValueError, re.error) as exc:
            raise FaultSpecError(str(exc)) from exc
        if not 0 < seconds < math.inf:
            raise FaultSpecError("seconds must be > 0 and finite")
        if not 400 <= status <= 599:
            raise FaultSpecError("status must be 400..599")
        return cls(route, status, now + seconds, regex)

    def covers(self, req: Request, route: str) -> bool:
        if self._regex is not None:
            return self._regex.search(req.path) is not None
        return self.route == "all" or family(req.path, route) == self.route

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "route": self.route,
            "status": self.status,
            "seconds_left": round(max(0.0, self.until - now), 3),
        }


def family(path: str, route: str) -> str | None:
    """The family of a request, "ee" or "drive" (else None): by the name of the route it
    matched (ee.py and drive.py name theirs "ee ..." and "drive ..."), or by the path's
    prefix when none matched."""
    head = route.split(" ", 1)[0]
    if head in ("ee", "drive"):
        return head
    if _EE_PATH.match(path):
        return "ee"
    if _DRIVE_PATH.match(path):
        return "drive"
    return None


class TokenBucket:
    """A bandwidth limit shared by threads: `take(n)` reserves n bytes and sleeps until the
    reservation is covered, so concurrent senders split the rate between them."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(_PIECE, rate / 20)
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)


class FaultInjector:
    """Hooks for HttpServer (`before`, `stream`) plus the /_emulator/faults admin API."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._per_connection: float | None = None
        self._total: TokenBucket | None = None
        # Stream-time faults chosen in before(), keyed by request identity.
        self._planned: dict[int, tuple[Request, list[Fault]]] = {}
        self._outages: list[Outage] = []

    # -- Python API ------------------------------------------------------------------------

    def add(self, spec: dict[str, Any]) -> Fault:
        """Add one fault from its JSON spec; raises FaultSpecError."""
        with self._lock:
            fault = Fault.from_spec(next(self._ids), dict(spec))
            self._faults.append(fault)
            return fault

    def start_outage(self, spec: dict[str, Any]) -> Outage:
        """Begin an outage from its JSON spec (route, seconds, status); raises FaultSpecError."""
        outage = Outage.from_spec(spec, time.monotonic())
        with self._lock:
            self._outages.append(outage)
        return outage

    def end_outages(self) -> None:
        with self._lock:
            self._outages.clear()

    def outages(self) -> list[dict[str, Any]]:
        """The outages still on, with the seconds each has left."""
        now = time.monotonic()
        with self._lock:
            self._outages = [o for o in self._outages if o.until > now]
            return [o.to_json(now) for o in self._outages]

    def clear(self) -> None:
        """Remove every fault and the global throttle."""
        with self._lock:
            self._faults.clear()
            self._per_connection = None
            self._total = None

    def set_throttle(self, per_connection: float | None, total: float | None) -> None:
        for value in (per_connection, total):
            if value is not None and value <= 0:
                raise FaultSpecError("bandwidth limits must be > 0 or null")
        with self._lock:
            self._per_connection = per_connection
            self._total = TokenBucket(total) if total else None

    def state(self) -> dict[str, Any]:
        outages = self.outages()
        with self._lock:
            return {
                "faults": [f.to_json() for f in self._faults],
                "throttle": {
                    "per_connection": self._per_connection,
                    "total": self._total.rate if self._total else None,
                },
                "outages": outages,
            }

    # -- admin routes ----------------------------------------------------------------------

    def register(self, router: Router) -> None:
        router.add("POST", r"/_emulator/faults", self._post_fault, name="admin faults.add")
        router.add("GET", r"/_emulator/faults", self._list, name="admin faults.list")
        router.add("DELETE", r"/_emulator/faults", self._clear, name="admin faults.clear")
        router.add("POST", r"/_emulator/throttle", self._throttle, name="admin throttle")
        router.add("POST", r"/_emulator/outage", self._post_outage, name="admin outage.start")
        router.add("GET", r"/_emulator/outage", self._get_outages, name="admin outage.list")
        router.add("DELETE", r"/_emulator/outage", self._end_outages, name="admin outage.end")

    def _post_fault(self, req: Request) -> Response:
        """Body: one fault object or a list of them; answers with what was added."""
        try:
            spec = req.json()
            specs = spec if isinstance(spec, list) else [spec]
            added = [self.add(s) for s in specs]
        except (ValueError, FaultSpecError) as exc:
            return error_response(400, f"Bad fault: {exc}", "invalid")
        body = [f.to_json() for f in added]
        return json_response(body if isinstance(spec, list) else body[0])

    def _list(self, req: Request) -> Response:
        return json_response(self.state())

    def _clear(self, req: Request) -> Response:
        self.clear()
        return json_response(self.state())

    def _post_outage(self, req: Request) -> Response:
        try:
            self.start_outage(req.json())
        except (ValueError, FaultSpecError) as exc:
            return error_response(400, f"Bad outage: {exc}", "invalid")
        return json_response({"outages": self.outages()})

    def _get_outages(self, req: Request) -> Response:
        return json_response({"outages": self.outages()})

    def _end_outages(self, req: Request) -> Response:
        self.end_outages()
        return json_response({"outages": self.outages()})

    def _throttle(self, req: Request) -> Response:
        try:
            spec = req.json()
            if not isinstance(spec, dict):
                raise FaultSpecError("expected a JSON object")
            self.set_throttle(
                _rate(spec.get("per_connection")),
                _rate(spec.get("total")),
            )
        except (ValueError, TypeError, FaultSpecError) as exc:
            return error_response(400, f"Bad throttle: {exc}", "invalid")
        return json_response(self.state()["throttle"])

    # -- server hooks ----------------------------------------------------------------------

    def before(self, req: Request, route: str) -> Response | None:
        """Pick the faults for this request; answer, stall or drop it now if one says so."""
        if req.path.startswith(_ADMIN):
            return None
        now = time.monotonic()
        chosen: list[Fault] = []
        with self._lock:
            down = [o for o in self._outages if o.until > now and o.covers(req, route)]
            if down:
                return _status_response(down[0].status, None, None)
            for fault in self._faults:
                if not fault.active or not fault.matches(req, route):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                if fault.count > 0:
                    fault.count -= 1
                fault.fired += 1
                chosen.append(fault)
        for fault in chosen:
            if fault.kind == "slow":
                time.sleep(fault.delay)
        for fault in chosen:
            if fault.kind == "reset":
                raise ResetConnection()
            if fault.kind == "status":
                return _status_response(fault.status, fault.reason, fault.message)
        streamed = [f for f in chosen if f.kind in _STREAM_KINDS]
        if streamed:
            with self._lock:
                self._planned[id(req)] = (req, streamed)
        return None

    def stream(self, req: Request, route: str, resp: Response) -> Iterator[bytes]:
        """The response body, with the planned truncation, corruption and pacing applied."""
        with self._lock:
            planned = self._planned.pop(id(req), None)
            per_connection = self._per_connection
            total = self._total
        faults = planned[1] if planned and planned[0] is req else []
        if req.path.startswith(_ADMIN):
            per_connection, total = None, None
        chunks: Iterator[bytes] = resp.file.chunks() if resp.file else iter([resp.body])
        length = resp.length
        for fault in faults:
            if fault.kind == "corrupt":
                chunks = _corrupt(chunks, length, fault.flips)
        rates = [f.bytes_per_second for f in faults if f.kind == "throttle"]
        if per_connection:
            rates.append(per_connection)
        if rates or total:
            chunks = _paced(chunks, min(rates) if rates else None, total)
        cut = min((int(length * f.fraction) for f in faults if f.kind == "truncate"), default=None)
        if cut is not None:
            chunks = _truncated(chunks, cut)
        yield from chunks


def _rate(value: Any) -> float | None:
    if value is None:
        return None
    return float(value)


def _default_message(status: int, reason: str | None = None) -> str:
    """Google's text for an error of this status (and reason)."""
    if reason in _MESSAGE_BY_REASON:
        return _MESSAGE_BY_REASON[reason]
    if status in _MESSAGE_BY_STATUS:
        return _MESSAGE_BY_STATUS[status]
    if status > 500:
        return "Backend Error"
    return "Injected fault."


def _status_response(status: int, reason: str | None, message: str | None) -> Response:
    """Google's JSON error; the reason and text default to Google's for the status."""
    reason = reason or _REASON_BY_STATUS.get(status)
    return error_response(status, message or _default_message(status, reason), reason)


def _corrupt(chunks: Iterator[bytes], length: int, flips: int) -> Iterator[bytes]:
    """Invert `flips` bytes spread evenly over the body."""
    if length <= 0:
        yield from chunks
        return
    targets = sorted({min(length - 1, (2 * i + 1) * length // (2 * flips)) for i in range(flips)})
    offset = 0
    for chunk in chunks:
        end = offset + len(chunk)
        hit = [t - offset for t in targets if offset <= t < end]
        if hit:
            buf = bytearray(chunk)
            for i in hit:
                buf[i] ^= 0xFF
            chunk = bytes(buf)
        offset = end
        yield chunk


def _paced(
    chunks: Iterator[bytes], rate: float | None, total: TokenBucket | None
) -> Iterator[bytes]:
    """Send in small pieces, never ahead of `rate` for this response nor of the shared bucket."""
    start = time.monotonic()
    sent = 0
    piece_size = max(1024, min(_PIECE, int(rate / 20))) if rate else _PIECE
    for chunk in chunks:
        for i in range(0, len(chunk), piece_size):
            piece = chunk[i : i + piece_size]
            if total is not None:
                total.take(len(piece))
            if rate:
                ahead = sent / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
            sent += len(piece)
            yield piece


paced = _paced  # the Drive's download bandwidth (drive.py) is paced the same way


def _truncated(chunks: Iterator[bytes], cut: int) -> Iterator[bytes]:
    """Yield the first `cut` bytes, then drop the connection (the client saw a full length)."""
    left = cut
    for chunk in chunks:
        if left <= 0:
            break
        yield chunk[:left]
        left -= len(chunk)
    raise ResetConnection()
