"""A scriptable local webhook receiver for tests and demos (loopback only, bounded everywhere).

Deliberately independent of the project's signing and delivery code: signatures are verified
here with hmac/hashlib directly, so a bug there cannot hide itself by being reused here.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import random
import select
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "DEFAULT_SIGNATURE_HEADER",
    "HOST",
    "Received",
    "ReceiverServer",
    "ScriptItem",
    "verify_signature",
    "verify_splunk_authorization",
]

HOST = "127.0.0.1"
DEFAULT_SIGNATURE_HEADER = "X-OneProtect-Signature"
SIGNATURE_PREFIX = "sha256="
MAX_SLEEP_SECONDS = 30.0  # cap for slow_seconds and "slow:<s>"
ENDLESS_MAX_SECONDS = 30.0  # an "endless" body stops after this long at most
HANG_MAX_SECONDS = 60.0  # a "hang" gives up after this long at most
STOP_JOIN_SECONDS = 5.0
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_CHUNKS = 100_000  # bound on chunked-request parsing
ENDLESS_CHUNK = b"x" * 16384
ACTIONS = ("reset", "endless", "hang", "drip")
DRIP_MAX_SECONDS = 60.0  # a "drip" answer gives up after this long at most
DRIP_INTERVAL = 0.5  # seconds between the bytes of a "drip" status line

# A scripted response: a status, (status, headers), (status, headers, body),
# or one of "slow:<seconds>", "reset", "endless", "hang", "drip" (the status line one byte at
# a time, never finished within any sensible timeout).
ScriptItem = int | str | tuple


def verify_signature(body: bytes, header_value: str | None, secrets: Iterable[str]) -> bool:
    """True if any `sha256=<hex>` in the comma-separated header matches HMAC(secret, body)."""
    if not header_value:
        return False
    keys = [s for s in secrets if s]
    if not keys:
        return False
    expected = [
        hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest().encode("ascii")
        for key in keys
    ]
    ok = False
    for part in header_value.split(","):
        part = part.strip()
        if not part.startswith(SIGNATURE_PREFIX):
            continue
        given = part[len(SIGNATURE_PREFIX) :].strip().lower().encode("utf-8", "replace")
        for digest in expected:
            # No early exit: every listed signature is compared against every secret.
            ok = hmac.compare_digest(given, digest) or ok
    return ok


def verify_splunk_authorization(value: str | None, secrets: Iterable[str]) -> bool | None:
    """Check `Authorization: Splunk <secret>` against the secrets; None when there is none."""
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "splunk" or not token.strip():
        return False
    token_bytes = token.strip().encode("utf-8")
    ok = False
    for secret in secrets:
        if secret:
            ok = hmac.compare_digest(token_bytes, secret.encode("utf-8")) or ok
    return ok


@dataclass
class Received:
    """One request as the receiver saw it, and how it answered."""

    time: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    signature_ok: bool
    event_ids: list[str]
    event_types: list[str]
    delivery_id: str | None
    status: int | None  # None when it did not answer (reset, hang)
    action: str = "status"  # status | random | slow | reset | endless | hang | error
    auth_ok: bool | None = None  # `Authorization: Splunk <secret>` check; None if absent
    connection_id: int = 0

    def header(self, name: str, default: str | None = None) -> str | None:
        """Case-insensitive header lookup."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return default

    @property
    def answered_2xx(self) -> bool:
        """Whether the receiver answered with a 2xx status."""
        return self.status is not None and 200 <= self.status < 300


@dataclass
class _Plan:
    """What to do with one request."""

    action: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    sleep: float = 0.0


def _parse_body(body: bytes) -> Any:
    """JSON document, or a list for newline-separated JSON (Splunk HEC), or None."""
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        pass
    items = []
    try:
        for line in body.splitlines():
            if line.strip():
                items.append(json.loads(line))
    except ValueError:
        return None
    return items


def _events_of(parsed: Any) -> tuple[list[str], list[str]]:
    """Event ids and event types of a OneProtect batch or of HEC objects."""
    ids: list[str] = []
    types: list[str] = []
    if isinstance(parsed, dict) and isinstance(parsed.get("events"), list):
        for item in parsed["events"]:
            if isinstance(item, dict):
                if item.get("event_id") is not None:
                    ids.append(str(item["event_id"]))
                if item.get("event_type") is not None:
                    types.append(str(item["event_type"]))
        return ids, types
    objects = parsed if isinstance(parsed, list) else [parsed]
    for obj in objects:
        if not isinstance(obj, dict):
            continue
        inner = obj.get("event") if isinstance(obj.get("event"), dict) else {}
        fields = obj.get("fields") if isinstance(obj.get("fields"), dict) else {}
        event_id = inner.get("event_id") or fields.get("event_id") or obj.get("event_id")
        if event_id is not None:
            ids.append(str(event_id))
        sourcetype = obj.get("sourcetype")
        event_type = inner.get("event_type") or fields.get("event_type")
        if not event_type and isinstance(sourcetype, str) and ":" in sourcetype:
            event_type = sourcetype.split(":", 1)[1]
        if event_type:
            types.append(str(event_type))
    return ids, types


def _normalise_item(item: ScriptItem) -> ScriptItem:
    """Validate one scripted response, raising ValueError for anything unknown."""
    if isinstance(item, bool):
        raise ValueError(f"Unknown scripted response: {item!r}")
    if isinstance(item, int):
        if not 100 <= item <= 599:
            raise ValueError(f"Not an HTTP status: {item!r}")
        return item
    if isinstance(item, str):
        if item in ACTIONS:
            return item
        if item.startswith("slow:"):
            seconds = float(item[5:])
            if not 0 <= seconds <= MAX_SLEEP_SECONDS:
                raise ValueError(f"slow: seconds must be within 0..{MAX_SLEEP_SECONDS}")
            return item
        raise ValueError(f"Unknown scripted action: {item!r}")
    if isinstance(item, tuple) and 1 <= len(item) <= 3:
        _normalise_item(item[0])
        if len(item) >= 2 and not isinstance(item[1], Mapping):
            raise ValueError(f"Scripted headers must be a mapping: {item!r}")
        if len(item) == 3 and not isinstance(item[2], bytes | str):
            raise ValueError(f"Scripted body must be bytes or str: {item!r}")
        return item
    raise ValueError(f"Unknown scripted response: {item!r}")


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with daemon handler threads and a back-reference to its receiver."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, receiver: ReceiverServer, port: int) -> None:
        self.receiver = receiver
        super().__init__((HOST, port), _Handler)

    def server_bind(self) -> None:
        """Bind without the reverse DNS lookup HTTPServer does."""
        super(ThreadingHTTPServer, self).server_bind()  # TCPServer.server_bind
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Keep handler errors (mostly clients going away) quiet but inspectable."""
        self.receiver._note_error(sys.exc_info()[1])


class _Handler(BaseHTTPRequestHandler):
    """Records each request and answers as the receiver's script says."""

    protocol_version = "HTTP/1.1"
    server_version = "OneProtectTestReceiver/1.0"
    server: _Server

    def version_string(self) -> str:
        """The Server header value."""
        return self.server_version

    def setup(self) -> None:
        """Register the connection so that stop() can close it."""
        self.timeout = self.server.receiver.idle_timeout
        with contextlib.suppress(OSError):  # no Nagle delay between headers and body
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()
        self.connection_id = self.server.receiver._connection_opened(self.connection)

    def finish(self) -> None:
        """Unregister the connection."""
        try:
            super().finish()
        finally:
            self.server.receiver._connection_closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr logging."""

    def do_POST(self) -> None:
        """Handle a POST (the webhook)."""
        self._handle()

    do_PUT = do_PATCH = do_GET = do_DELETE = do_POST

    # Reading -------------------------------------------------------------------------------
    def _read_body(self) -> bytes | None:
        """Exactly Content-Length bytes, or a de-chunked body; None when unreadable."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
        except ValueError:
            return None
        if length < 0 or length > MAX_BODY_BYTES:
            return None
        body = self.rfile.read(length)
        return body if len(body) == length else None

    def _read_chunked(self) -> bytes | None:
        """De-chunk a Transfer-Encoding: chunked body (bounded)."""
        parts: list[bytes] = []
        total = 0
        for _ in range(MAX_CHUNKS):
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                return None
            if size == 0:
                for _ in range(100):  # trailers, up to the blank line
                    if self.rfile.readline(8192) in (b"\r\n", b"\n", b""):
                        break
                return b"".join(parts)
            total += size
            if total > MAX_BODY_BYTES:
                return None
            parts.append(self.rfile.read(size))
            self.rfile.readline(16)
        return None

    # Answering -----------------------------------------------------------------------------
    def _handle(self) -> None:
        receiver = self.server.receiver
        body = self._read_body()
        if body is None:
            self.close_connection = True
            received = self._record(b"", _Plan("error", 400), check=False)
            self._answer(400, {"Connection": "close"}, b'{"error": "bad body"}')
            receiver.on_received(received)
            return
        plan = receiver._next_plan()
        received = self._record(body, plan)
        try:
            self._execute(plan)
        finally:
            receiver.on_received(received)

    def _record(self, body: bytes, plan: _Plan, check: bool = True) -> Received:
        receiver = self.server.receiver
        headers: dict[str, str] = {}
        for key, value in self.headers.items():
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        parsed = _parse_body(body)
        ids, types = _events_of(parsed)
        received = Received(
            time=time.time(),
            method=self.command,
            path=self.path,
            headers=headers,
            body=body,
            json=parsed,
            signature_ok=check and receiver.check_signature(headers, body),
            event_ids=ids,
            event_types=types,
            delivery_id=self.headers.get("X-OneProtect-Delivery"),
            status=plan.status,
            action=plan.action,
            auth_ok=receiver.check_authorization(self.headers.get("Authorization")),
            connection_id=self.connection_id,
        )
        receiver._append(received)
        return received

    def _execute(self, plan: _Plan) -> None:
        receiver = self.server.receiver
        if plan.action == "reset":
            self._reset()
        elif plan.action == "hang":
            receiver._wait_or_disconnect(self.connection, HANG_MAX_SECONDS)
            self.close_connection = True
        elif plan.action == "endless":
            self._endless()
        elif plan.action == "drip":
            self._drip()
        else:
            if plan.sleep > 0:
                receiver._wait_or_disconnect(self.connection, plan.sleep)
            assert plan.status is not None
            self._answer(plan.status, plan.headers, plan.body)

    def _answer(self, status: int, headers: Mapping[str, str], body: bytes | None) -> None:
        if body is None:
            body = b'{"ok": true}' if 200 <= status < 300 else b'{"error": "scripted"}'
        try:
            self.send_response(status)
            names = {k.lower() for k in headers}
            if "content-type" not in names:
                self.send_header("Content-Type", "application/json")
            for key, value in headers.items():
                if key.lower() != "content-length":
                    self.send_header(key, str(value))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _reset(self) -> None:
        """Close the socket without answering, with SO_LINGER 0 so the peer sees a reset."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.rfile.close()
        with contextlib.suppress(OSError):
            self.connection.close()

    def _drip(self) -> None:
        """Send a status line a byte every DRIP_INTERVAL, until disconnect, stop or the cap."""
        receiver = self.server.receiver
        self.close_connection = True
        deadline = time.monotonic() + DRIP_MAX_SECONDS
        try:
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
                if time.monotonic() > deadline or receiver._stopping.is_set():
                    break
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                receiver._stopping.wait(DRIP_INTERVAL)
        except OSError:
            pass

    def _endless(self) -> None:
        """Answer 200 and stream a body that never ends (until disconnect, stop or the cap)."""
        receiver = self.server.receiver
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b'{"data": "')
            deadline = time.monotonic() + ENDLESS_MAX_SECONDS
            while time.monotonic() < deadline and not receiver._stopping.is_set():
                self.wfile.write(ENDLESS_CHUNK)
                receiver._stopping.wait(0.002)
        except OSError:
            pass


class ReceiverServer:
    """A threaded HTTP/1.1 webhook receiver on 127.0.0.1 that records and scripts responses."""

    def __init__(
        self,
        *,
        port: int = 0,
        path: str = "/hook",
        secrets: Iterable[str] = (),
        signature_header: str = DEFAULT_SIGNATURE_HEADER,
        default_status: int = 200,
        fail_rate: float = 0.0,
        fail_statuses: Iterable[int] = (500, 503, 429),
        retry_after: int = 1,
        slow_seconds: float = 0.0,
        seed: int | None = None,
        idle_timeout: float = 30.0,
    ) -> None:
        self.requested_port = port
        self.path = path if path.startswith("/") else f"/{path}"
        self.secrets: list[str] = list(secrets)
        self.signature_header = signature_header
        self.default_status = default_status
        self.fail_rate = fail_rate
        self.fail_statuses: list[int] = list(fail_statuses)
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds
        self.idle_timeout = idle_timeout
        self.errors: deque[BaseException] = deque(maxlen=100)
        self._rng = random.Random(seed)  # chaos, not security
        self._lock = threading.Lock()
        self._records: list[Received] = []
        self._script: deque[ScriptItem] = deque()
        self._connections: dict[int, socket.socket] = {}
        self._connection_count = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle -----------------------------------------------------------------------------
    def start(self) -> ReceiverServer:
        """Bind 127.0.0.1 and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(self, self.requested_port)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"receiver-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and the listening socket (bounded)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        if thread is not None and thread.is_alive():
            done = threading.Thread(target=server.shutdown, daemon=True)
            done.start()
            done.join(STOP_JOIN_SECONDS)
        with self._lock:
            connections = list(self._connections.values())
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if thread is not None:
            thread.join(STOP_JOIN_SECONDS)
        self.wait_for(lambda: self.open_connections == 0, timeout=2.0)
        self._server = None
        self._thread = None

    def __enter__(self) -> ReceiverServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (after start())."""
        if self._server is None:
            raise RuntimeError("ReceiverServer is not started")
        return self._server.server_port

    @property
    def url(self) -> str:
        """The webhook URL, e.g. http://127.0.0.1:PORT/hook."""
        return f"http://{HOST}:{self.port}{self.path}"

    # Scripting -----------------------------------------------------------------------------
    def script(self, items: Iterable[ScriptItem]) -> None:
        """Queue responses, consumed one per request before falling back to the defaults."""
        validated = [_normalise_item(item) for item in items]
        with self._lock:
            self._script.extend(validated)

    def pending_script(self) -> list[ScriptItem]:
        """The scripted responses not consumed yet."""
        with self._lock:
            return list(self._script)

    def _next_plan(self) -> _Plan:
        """Pop the next scripted response, or apply random failure / default status."""
        with self._lock:
            item = self._script.popleft() if self._script else None
            random_fail = None
            if item is None and self.fail_rate > 0 and self.fail_statuses:
                if self._rng.random() < self.fail_rate:
                    random_fail = self._rng.choice(self.fail_statuses)
        sleep = min(max(float(self.slow_seconds), 0.0), MAX_SLEEP_SECONDS)
        if item is None:
            if random_fail is not None:
                headers = {"Retry-After": str(self.retry_after)} if random_fail == 429 else {}
                return _Plan("random", random_fail, headers, sleep=sleep)
            return _Plan("status", self.default_status, sleep=sleep)
        if isinstance(item, int):
            return _Plan("status", item, sleep=sleep)
        if isinstance(item, str):
            if item.startswith("slow:"):
                return _Plan("slow", 200, sleep=min(float(item[5:]), MAX_SLEEP_SECONDS))
            return _Plan(item, 200 if item == "endless" else None)
        status = int(item[0])
        headers = {str(k): str(v) for k, v in item[1].items()} if len(item) >= 2 else {}
        body = item[2] if len(item) == 3 else None
        if isinstance(body, str):
            body = body.encode("utf-8")
        return _Plan("status", status, headers, body, sleep=sleep)

    # Verification hooks (override in subclasses) -------------------------------------------
    def check_signature(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Verify the signature header against the configured secrets."""
        wanted = self.signature_header.lower()
        values = [v for k, v in headers.items() if k.lower() == wanted]
        return bool(values) and verify_signature(body, ",".join(values), list(self.secrets))

    def check_authorization(self, value: str | None) -> bool | None:
        """Check `Authorization: Splunk <secret>` against the secrets; None when absent."""
        return verify_splunk_authorization(value, list(self.secrets))

    def on_received(self, received: Received) -> None:
        """Called once a request has been handled (subclasses print, count...)."""

    # Records -------------------------------------------------------------------------------
    def _append(self, received: Received) -> None:
        with self._lock:
            self._records.append(received)

    @property
    def received(self) -> list[Received]:
        """A snapshot of every request received, in arrival order."""
        with self._lock:
            return list(self._records)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def events_received(self) -> list[str]:
        """Event ids of every 2xx-answered request, in arrival order (duplicates kept)."""
        return [eid for r in self.received if r.answered_2xx for eid in r.event_ids]

    def duplicates(self) -> int:
        """How many 2xx-answered event ids were seen more than once (extra copies)."""
        ids = self.events_received()
        return len(ids) - len(set(ids))

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02
    ) -> bool:
        """Poll predicate until truthy or timeout; returns its final truthiness."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            if predicate():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bool(predicate())
            time.sleep(min(interval, remaining))

    def clear(self) -> None:
        """Forget recorded requests, errors and the connection count (not the script)."""
        with self._lock:
            self._records.clear()
            self._connection_count = 0
        self.errors.clear()

    # Connections ---------------------------------------------------------------------------
    @property
    def connection_count(self) -> int:
        """TCP connections accepted since start (or clear())."""
        with self._lock:
            return self._connection_count

    @property
    def open_connections(self) -> int:
        """TCP connections currently open."""
        with self._lock:
            return len(self._connections)

    def _connection_opened(self, conn: socket.socket) -> int:
        with self._lock:
            self._connection_count += 1
            self._connections[id(conn)] = conn
            return self._connection_count

    def _connection_closed(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.pop(id(conn), None)

    def _note_error(self, error: BaseException | None) -> None:
        if error is not None:
            self.errors.append(error)

    def _wait_or_disconnect(self, conn: socket.socket, seconds: float) -> None:
        """Sleep up to seconds; wake early on stop() or when the client hangs up."""
        deadline = time.monotonic() + max(0.0, min(seconds, HANG_MAX_SECONDS))
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            step = min(0.05, remaining)
            try:
                readable, _, _ = select.select([conn], [], [], step)
                if readable and conn.recv(1, socket.MSG_PEEK) == b"":
                    return  # client closed its side
                if readable:
                    self._stopping.wait(step)  # pipelined data: keep waiting, no busy loop
            except (OSError, ValueError):
                return
