"""Faulty receivers for the chaos run.

Built on devtools.receiver.ReceiverServer (which verifies signatures independently of the
engine). Each request draws its answer from a seeded generator:

- the mixed receivers fail about `fault_rate` of requests, spread over `fault_kinds` (500, 503,
  429 with Retry-After, slow replies past the timeout, connection resets, drips);
- "drip": send the status line one byte every `drip_interval` seconds and never finish (until
  the client hangs up, or `drip_cap` seconds);
- a throttle schedule: inside its windows every request is answered `429 Retry-After: 0`;
- an auth outage: between two moments every request is answered 401, then it recovers.

Every request is also kept as a span (arrival → end: answered, or the client hung up), so the
runner can prove that no destination ever had two requests in flight at once.
"""

from __future__ import annotations

import random
import select
import socket
import threading
import time
from collections import Counter
from http.server import ThreadingHTTPServer

from devtools.receiver import (
    HOST,
    Received,
    ReceiverServer,
    ScriptItem,
    _Handler,
    _Plan,
    _Server,
)

FAULTS = ("500", "503", "429", "slow", "reset")
KINDS = (*FAULTS, "drip", "429-ra0", "401")
DISCONNECT_POLL = 0.05  # how often a drip checks whether the client hung up
DRIP_BYTES = b"HTTP/1.1 200 OK\r\nX-Drip: " + b"." * 4096  # never reaches the blank line


def classify(record: Received) -> str:
    """'ok' for an acknowledgement the sender saw in time, else the kind of fault."""
    if record.action in ("slow", "reset", "drip"):
        return record.action  # a slow reply came after the sender's timeout: no acknowledgement
    if record.action == "status" and record.answered_2xx:
        return "ok"
    return str(record.status) if record.status is not None else record.action


def accepted(record: Received) -> bool:
    return classify(record) == "ok"


class _ChaosHandler(_Handler):
    """The base handler plus the "drip" answer."""

    def _execute(self, plan: _Plan) -> None:
        if plan.action == "drip":
            self._drip(plan.sleep)
        else:
            super()._execute(plan)

    def _drip(self, cap: float) -> None:
        receiver = self.server.receiver
        self.close_connection = True
        interval = getattr(receiver, "drip_interval", 1.0)
        deadline = time.monotonic() + cap
        offset = 0
        try:
            while time.monotonic() < deadline and not receiver._stopping.is_set():
                self.wfile.write(DRIP_BYTES[offset : offset + 1])
                self.wfile.flush()
                offset = (offset + 1) % len(DRIP_BYTES)
                pause_until = min(deadline, time.monotonic() + interval)
                while time.monotonic() < pause_until:  # notice a hang-up within 50 ms
                    readable, _, _ = select.select([self.connection], [], [], DISCONNECT_POLL)
                    if readable and self.connection.recv(1, socket.MSG_PEEK) == b"":
                        return
        except (OSError, ValueError):
            return


class _ChaosServer(_Server):
    def __init__(self, receiver: ReceiverServer, port: int) -> None:
        self.receiver = receiver
        ThreadingHTTPServer.__init__(self, (HOST, port), _ChaosHandler)


class ChaosReceiver(ReceiverServer):
    """Fails about `fault_rate` of requests, spread evenly over `fault_kinds`."""

    def __init__(
        self,
        *,
        name: str,
        fault_rate: float,
        slow_reply_seconds: float,
        fault_kinds: tuple[str, ...] = FAULTS,
        retry_after_choices: tuple[int, ...] = (1, 2, 5),
        drip_interval: float = 1.0,
        drip_cap: float = 30.0,
        seed: int,
        expected: set[str] | None = None,
        request_started: threading.Event | None = None,
        acknowledged: threading.Event | None = None,
        **kwargs,
    ) -> None:
        super().__init__(seed=seed, **kwargs)
        self.name = name
        # Set when a request arrives / when a 2xx has just been sent: the runner times kills.
        self.request_started = request_started or threading.Event()
        self.acknowledged = acknowledged or threading.Event()
        self.own_request = threading.Event()  # this receiver's requests only
        self.fault_rate = fault_rate
        self.fault_kinds = fault_kinds
        self.slow_reply_seconds = slow_reply_seconds
        self.retry_after_choices = retry_after_choices
        self.drip_interval = drip_interval
        self.drip_cap = drip_cap
        self.throttle: tuple[float, float, float] | None = None  # (start, every, lasting)
        self.outage: tuple[float, float] | None = None  # 401 between these wall times
        self._chaos_rng = random.Random(f"chaos-receiver-{seed}")
        self._chaos_lock = threading.Lock()
        self.expected = expected  # progress counts only these event ids (None: all)
        self._accepted_ids: set[str] = set()
        self._kinds: Counter[str] = Counter()
        self._open = 0
        self.spans: list[tuple[float, float, Received, str]] = []  # (arrival, end, record, kind)
        self._local = threading.local()

    def start(self) -> ChaosReceiver:
        """As ReceiverServer.start, with the drip-capable handler."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _ChaosServer(self, self.requested_port)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"chaos-receiver-{self.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    # Schedules -----------------------------------------------------------------------------
    def set_throttle(self, start: float, every: float, lasting: float) -> None:
        """From wall time `start`, answer 429 Retry-After: 0 for `lasting` s of every `every`."""
        self.throttle = (start, every, lasting)

    def set_outage(self, start: float, seconds: float) -> None:
        """Answer 401 to everything between wall times start and start + seconds."""
        self.outage = (start, start + seconds)

    def _scheduled(self) -> ScriptItem | None:
        now = time.time()
        if self.outage and self.outage[0] <= now < self.outage[1]:
            return (401, {}, '{"error": "invalid credentials"}')
        if self.throttle and now >= self.throttle[0]:
            start, every, lasting = self.throttle
            if (now - start) % every < lasting:
                return (429, {"Retry-After": "0", "X-Chaos": "ra0"})
        return None

    def _draw(self) -> ScriptItem | str:
        scheduled = self._scheduled()
        if scheduled is not None:
            return scheduled
        with self._chaos_lock:
            if not self.fault_kinds or self._chaos_rng.random() >= self.fault_rate:
                return 200
            fault = self._chaos_rng.choice(self.fault_kinds)
            retry_after = self._chaos_rng.choice(self.retry_after_choices)
        if fault == "429":
            return (429, {"Retry-After": str(retry_after)})
        if fault == "slow":
            return f"slow:{self.slow_reply_seconds:g}"
        if fault in ("reset", "drip"):
            return fault
        return int(fault)

    def _next_plan(self) -> _Plan:
        self.request_started.set()
        self.own_request.set()
        with self._chaos_lock:
            self._open += 1
        item = self._draw()
        # The handler thread that asked records and answers this request: remember its kind.
        self._local.kind = "429-ra0" if isinstance(item, tuple) and "X-Chaos" in item[1] else None
        if item == "drip":
            return _Plan("drip", None, sleep=self.drip_cap)
        self.script([item])  # one drawn answer per request, consumed right away
        return super()._next_plan()

    def on_received(self, received: Received) -> None:
        end = time.time()
        kind = getattr(self._local, "kind", None) or classify(received)
        self._local.kind = None
        with self._chaos_lock:
            self._open -= 1
            self.spans.append((received.time, end, received, kind))
            self._kinds[kind] += 1
            if kind == "ok":
                ids = received.event_ids
                if self.expected is not None:
                    ids = [eid for eid in ids if eid in self.expected]
                self._accepted_ids.update(ids)
        if kind == "ok":
            self.acknowledged.set()

    def kinds_of(self) -> Counter[str]:
        with self._chaos_lock:
            return Counter(span[3] for span in self.spans)

    @property
    def in_flight(self) -> int:
        with self._chaos_lock:
            return self._open

    def progress(self) -> tuple[int, Counter[str]]:
        """(distinct expected events acknowledged so far, requests by outcome kind)."""
        with self._chaos_lock:
            return len(self._accepted_ids), Counter(self._kinds)


def overlaps(spans: list[tuple], grace: float = 0.1) -> list[dict]:
    """Requests that arrived while an earlier one to the same receiver was still open.

    `grace` absorbs how late the receiver notices a hang-up (≤ 50 ms polling)."""
    found = []
    ordered = sorted(spans, key=lambda s: s[0])
    open_until, open_record = 0.0, None
    for start, end, record, _kind in ordered:
        if open_record is not None and start < open_until - grace:
            shared = set(record.event_ids) & set(open_record.event_ids)
            found.append(
                {
                    "at": start,
                    "overlap_s": round(open_until - start, 3),
                    "same_batch": bool(shared),
                    "delivery_ids": (open_record.delivery_id, record.delivery_id),
                }
            )
        if end > open_until:
            open_until, open_record = end, record
    return found
