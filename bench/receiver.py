"""The benchmark receiver: raw asyncio HTTP/1.1 on 127.0.0.1, every signature verified.

    python bench/receiver.py --port 8901 --processes 2 --secret S

Why not uvicorn: this venv has neither httptools nor uvloop, so uvicorn would parse with h11
(several times the CPU per request). On a 2-core machine the receiver's CPU is taken from the
workers and PostgreSQL under test, so the cheapest receiver gives the truest numbers.

N processes bind the same port with SO_REUSEPORT (the kernel spreads connections). Counters,
latency samples and the request log live in shared memory (each process writes only its own
slots; the per-destination in-flight counters are shared under one lock), so any process answers.

Webhooks (POST), by path; <dest> is a destination number (0..MAX_DEST-1) used to track
requests in flight per destination, any other last segment is not tracked:

    /fast/0/<dest>          answer 200 at once
    /delay/<ms>/<dest>      answer 200 after <ms> (≤ 10 s), without blocking other requests
    /slow/<ms>/<anything>   the same (older name)
    /drip/<ms>/<dest>       send the status line one byte every <ms>, never finishing: the
                            response never completes (the receiver hangs up after DRIP_MAX_S)
    /<anything else>        answer 200 at once

Every webhook's signature (`X-OneProtect-Signature: sha256=<hex>`, any of a comma-separated
list) is checked first: a bad one is answered 401 and counted. Each request is logged with its
destination, arrival and end time (answered, or the client hung up), event count, a hash of its
event ids, its mode and status. A request that arrives for a destination that already has one
in flight is an *overlap* (a batch in flight twice, or two batches of one stream at once).

    GET  /stats              totals: requests, events, bad signatures, in flight now and at
                             most, overlaps, per-mode counts, first/last arrival
    GET  /samples?tag=N      latencies in ms of events whose payload carried bench_ts/bench_tag
    GET  /requests?mode=drip the request log: [dest, start, end or null, events, status]
    POST /reset              zero everything (call it while idle)

Loopback only, bounded: the parent exits after --max-seconds whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import hashlib
import hmac
import json
import multiprocessing
import os
import re
import signal
import socket
import sys
import time
from multiprocessing.sharedctypes import RawArray

HOST = "127.0.0.1"
SIGNATURE_HEADER = b"x-oneprotect-signature"
MAX_BODY = 32 * 1024 * 1024
MAX_HEADER = 64 * 1024
SAMPLES_PER_PROCESS = 200_000
LOG_PER_PROCESS = 200_000
MAX_DELAY_MS = 10_000
DRIP_MAX_S = 300.0  # a drip stops (the receiver hangs up) after this long whatever happens
DRIP_BYTES = b"HTTP/1.1 200 OK\r\nX-Drip: " + b"." * 4096  # never reaches the blank line
MAX_DEST = 4096
EVENT_ID = re.compile(rb'"event_id":"([0-9a-fA-F-]{36})"')

MODES = ["other", "fast", "delay", "drip"]
MODE_CODE = {name: i for i, name in enumerate(MODES)}

# Counter slots per process.
(REQUESTS, EVENTS, BAD_SIGNATURES, BAD_REQUESTS, FIRST, LAST, BYTES, NSAMPLES) = range(8)
SLOW_REQUESTS, SLOW_EVENTS, NLOG = 8, 9, 10
MODE_REQUESTS = 11  # .. 11 + len(MODES)
SLOTS = 16
# Shared slots (under the lock).
G_INFLIGHT, G_MAX_INFLIGHT, G_OVERLAPS = range(3)


class Shared:
    """Counters, (tag, latency) samples and the request log, one region per process."""

    def __init__(self, processes: int):
        self.processes = processes
        self.counters = RawArray(ctypes.c_double, processes * SLOTS)
        self.tags = RawArray(ctypes.c_int32, processes * SAMPLES_PER_PROCESS)
        self.latencies = RawArray(ctypes.c_double, processes * SAMPLES_PER_PROCESS)
        n = processes * LOG_PER_PROCESS
        self.log_dest = RawArray(ctypes.c_int32, n)
        self.log_start = RawArray(ctypes.c_double, n)
        self.log_end = RawArray(ctypes.c_double, n)
        self.log_events = RawArray(ctypes.c_int32, n)
        self.log_status = RawArray(ctypes.c_int16, n)
        self.log_mode = RawArray(ctypes.c_int8, n)
        self.log_ids = RawArray(ctypes.c_int64, n)  # a hash of the request's event ids
        self.inflight = RawArray(ctypes.c_int32, MAX_DEST)
        self.overlap_dest = RawArray(ctypes.c_int32, MAX_DEST)
        self.globals = RawArray(ctypes.c_int64, 4)
        self.lock = multiprocessing.Lock()

    def reset(self) -> None:
        with self.lock:
            for array in (self.counters, self.inflight, self.overlap_dest, self.globals):
                ctypes.memset(array, 0, ctypes.sizeof(array))

    # In flight ----------------------------------------------------------------------------
    def begin(self, dest: int) -> None:
        with self.lock:
            g = self.globals
            g[G_INFLIGHT] += 1
            g[G_MAX_INFLIGHT] = max(g[G_MAX_INFLIGHT], g[G_INFLIGHT])
            if 0 <= dest < MAX_DEST:
                if self.inflight[dest] > 0:
                    g[G_OVERLAPS] += 1
                    self.overlap_dest[dest] += 1
                self.inflight[dest] += 1

    def end(self, dest: int) -> None:
        with self.lock:
            self.globals[G_INFLIGHT] -= 1
            if 0 <= dest < MAX_DEST:
                self.inflight[dest] -= 1

    # Reading ------------------------------------------------------------------------------
    def totals(self) -> dict:
        c = self.counters
        names = {
            REQUESTS: "requests",
            EVENTS: "events",
            BAD_SIGNATURES: "bad_signatures",
            BAD_REQUESTS: "bad_requests",
            BYTES: "bytes",
            NSAMPLES: "samples",
            SLOW_REQUESTS: "slow_requests",
            SLOW_EVENTS: "slow_events",
            NLOG: "logged",
        }
        out: dict = {name: 0 for name in names.values()}
        out.update(first=None, last=None, processes=self.processes, per_process_requests=[])
        out["modes"] = {name: 0 for name in MODES}
        for p in range(self.processes):
            base = p * SLOTS
            for slot, name in names.items():
                out[name] += int(c[base + slot])
            for i, name in enumerate(MODES):
                out["modes"][name] += int(c[base + MODE_REQUESTS + i])
            out["per_process_requests"].append(int(c[base + REQUESTS]))
            if c[base + FIRST]:
                first = c[base + FIRST]
                out["first"] = first if out["first"] is None else min(out["first"], first)
            if c[base + LAST]:
                out["last"] = max(out["last"] or 0.0, c[base + LAST])
        with self.lock:
            out["in_flight"] = int(self.globals[G_INFLIGHT])
            out["max_in_flight"] = int(self.globals[G_MAX_INFLIGHT])
            out["overlaps"] = int(self.globals[G_OVERLAPS])
            out["overlap_destinations"] = {
                str(d): int(self.overlap_dest[d]) for d in range(MAX_DEST) if self.overlap_dest[d]
            }
        return out

    def samples(self, tag: int | None) -> list[float]:
        values: list[float] = []
        for p in range(self.processes):
            count = min(int(self.counters[p * SLOTS + NSAMPLES]), SAMPLES_PER_PROCESS)
            base = p * SAMPLES_PER_PROCESS
            for i in range(base, base + count):
                if tag is None or self.tags[i] == tag:
                    values.append(round(self.latencies[i], 3))
        return values

    def requests(self, mode: str | None) -> list[list]:
        code = MODE_CODE.get(mode) if mode else None
        rows = []
        for p in range(self.processes):
            count = min(int(self.counters[p * SLOTS + NLOG]), LOG_PER_PROCESS)
            base = p * LOG_PER_PROCESS
            for i in range(base, base + count):
                if code is not None and self.log_mode[i] != code:
                    continue
                end = self.log_end[i]
                rows.append(
                    [
                        int(self.log_dest[i]),
                        round(self.log_start[i], 4),
                        round(end, 4) if end else None,
                        int(self.log_events[i]),
                        int(self.log_status[i]),
                        MODES[self.log_mode[i]],
                        int(self.log_ids[i]),
                    ]
                )
        return rows


def parse_path(path: bytes) -> tuple[str, int, int]:
    """(mode, argument, destination) of a webhook path; destination -1 when not tracked."""
    parts = path.strip(b"/").split(b"/")
    mode, arg, dest = "other", 0, -1
    if parts and parts[0] in (b"fast", b"delay", b"slow", b"drip") and len(parts) >= 2:
        mode = {b"slow": "delay"}.get(parts[0], parts[0].decode())
        try:
            arg = int(parts[1])
        except ValueError:
            arg = 0
        if len(parts) >= 3 and parts[2].isdigit():
            dest = int(parts[2])
    elif parts and parts[0] == b"fast":
        mode = "fast"
    if mode == "delay":
        arg = max(0, min(arg, MAX_DELAY_MS))
    elif mode == "drip":
        arg = max(50, min(arg or 2000, 60_000))
    return mode, arg, dest if 0 <= dest < MAX_DEST else -1


class Handler(asyncio.Protocol):
    """HTTP/1.1 with Content-Length bodies and keep-alive; requests handled in order."""

    def __init__(self, shared: Shared, index: int, secret: bytes):
        self.shared = shared
        self.base = index * SLOTS
        self.sample_base = index * SAMPLES_PER_PROCESS
        self.log_base = index * LOG_PER_PROCESS
        self.secret = secret
        self.buffer = bytearray()
        self.transport = None
        self.waiting = False  # a delayed response is pending: keep later requests buffered
        self.pending: tuple[int, int] | None = None  # (log slot, dest) of the open request
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > MAX_BODY + MAX_HEADER:
            self._reply(413, b"too large", close=True)
            return
        if not self.waiting:
            self._process()

    def _process(self) -> None:
        while not self.waiting and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER:
                    self._reply(431, b"headers too large", close=True)
                return
            head = bytes(self.buffer[:end]).split(b"\r\n")
            try:
                method, target, _version = head[0].split(b" ", 2)
            except ValueError:
                self._reply(400, b"bad request line", close=True)
                return
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
                self._reply(411, b"length required", close=True)
                return
            try:
                length = int(headers.get(b"content-length", b"0"))
            except ValueError:
                self._reply(400, b"bad content-length", close=True)
                return
            if length > MAX_BODY:
                self._reply(413, b"too large", close=True)
                return
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            close = headers.get(b"connection", b"").lower() == b"close"
            self._handle(method, target, headers, body, close)

    def _handle(self, method: bytes, target: bytes, headers: dict, body: bytes, close: bool):
        path, _, query = target.partition(b"?")
        params = dict(part.partition(b"=")[::2] for part in query.split(b"&") if part)
        if method == b"GET" and path == b"/stats":
            self._json(self.shared.totals(), close)
        elif method == b"GET" and path == b"/samples":
            tag = params.get(b"tag")
            self._json({"latencies_ms": self.shared.samples(int(tag) if tag else None)}, close)
        elif method == b"GET" and path == b"/requests":
            mode = params.get(b"mode", b"").decode() or None
            self._json({"now": time.time(), "requests": self.shared.requests(mode)}, close)
        elif method == b"POST" and path == b"/reset":
            self.shared.reset()
            self._json({"reset": True}, close)
        elif method == b"POST":
            self._webhook(path, headers, body, close)
        else:
            self._reply(404, b"not found", close)

    def _webhook(self, path: bytes, headers: dict, body: bytes, close: bool) -> None:
        now = time.time()
        c = self.shared.counters
        base = self.base
        mode, arg, dest = parse_path(path)
        c[base + REQUESTS] += 1
        c[base + MODE_REQUESTS + MODE_CODE[mode]] += 1
        c[base + BYTES] += len(body)
        if not c[base + FIRST]:
            c[base + FIRST] = now
        c[base + LAST] = now
        ids = EVENT_ID.findall(body)
        slot = self._log(now, dest, mode, len(ids), ids)
        self.shared.begin(dest)
        self.pending = (slot, dest)
        if not self._signature_ok(body, headers.get(SIGNATURE_HEADER)):
            c[base + BAD_SIGNATURES] += 1
            self._reply(401, b"bad signature", close)
            return
        c[base + EVENTS] += len(ids)
        if b'"bench_ts"' in body:
            self._record_latencies(body, now)
        if mode == "delay":
            c[base + SLOW_REQUESTS] += 1
            c[base + SLOW_EVENTS] += len(ids)
        if mode == "delay" and arg > 0:
            self.waiting = True
            self.timer = asyncio.get_running_loop().call_later(arg / 1000, self._finish, close)
        elif mode == "drip":
            self.waiting = True
            self._drip(0, arg / 1000, now + DRIP_MAX_S)
        else:
            self._reply(200, b"ok", close)

    def _drip(self, offset: int, interval: float, stop_at: float) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if time.time() >= stop_at or offset >= len(DRIP_BYTES):
            self._done(0)
            self.transport.close()
            self.transport = None
            return
        self.transport.write(DRIP_BYTES[offset : offset + 1])
        self.timer = asyncio.get_running_loop().call_later(
            interval, self._drip, offset + 1, interval, stop_at
        )

    def _finish(self, close: bool) -> None:
        self.waiting = False
        self.timer = None
        if self.transport is None or self.transport.is_closing():
            return
        self._reply(200, b"ok", close)
        self._process()

    def _log(self, now: float, dest: int, mode: str, events: int, ids: list[bytes]) -> int:
        c = self.shared.counters
        n = int(c[self.base + NLOG])
        if n >= LOG_PER_PROCESS:
            return -1
        i = self.log_base + n
        s = self.shared
        s.log_dest[i], s.log_start[i], s.log_end[i] = dest, now, 0.0
        s.log_events[i], s.log_status[i], s.log_mode[i] = events, 0, MODE_CODE[mode]
        digest = hashlib.blake2b(b",".join(sorted(ids)), digest_size=8).digest()
        s.log_ids[i] = int.from_bytes(digest, "little", signed=True)
        c[self.base + NLOG] = n + 1
        return i

    def _done(self, status: int) -> None:
        """The open request ended: answered with `status`, or 0 when the client hung up."""
        if self.pending is None:
            return
        slot, dest = self.pending
        self.pending = None
        if slot >= 0:
            self.shared.log_end[slot] = time.time()
            self.shared.log_status[slot] = status
        self.shared.end(dest)

    def _record_latencies(self, body: bytes, now: float) -> None:
        try:
            document = json.loads(body)
        except ValueError:
            self.shared.counters[self.base + BAD_REQUESTS] += 1
            return
        events = document.get("events", []) if isinstance(document, dict) else []
        c = self.shared.counters
        for envelope in events:
            payload = envelope.get("event") if isinstance(envelope, dict) else None
            if not isinstance(payload, dict) or "bench_ts" not in payload:
                continue
            n = int(c[self.base + NSAMPLES])
            if n >= SAMPLES_PER_PROCESS:
                return
            self.shared.tags[self.sample_base + n] = int(payload.get("bench_tag", 0))
            self.shared.latencies[self.sample_base + n] = (now - float(payload["bench_ts"])) * 1000
            c[self.base + NSAMPLES] = n + 1

    def _signature_ok(self, body: bytes, value: bytes | None) -> bool:
        if not value:
            return False
        expected = hmac.new(self.secret, body, hashlib.sha256).hexdigest().encode()
        ok = False
        for part in value.split(b","):
            part = part.strip()
            if part.startswith(b"sha256="):
                ok = hmac.compare_digest(part[7:].lower(), expected) or ok
        return ok

    def _json(self, data: dict, close: bool) -> None:
        self._reply(200, json.dumps(data).encode(), close, b"application/json")

    def _reply(self, status: int, body: bytes, close: bool = False, ctype=b"text/plain"):
        self._done(status)
        if self.transport is None:
            return
        reason = b"OK" if status == 200 else b"Error"
        head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (
            status,
            reason,
            ctype,
            len(body),
        )
        head += b"Connection: close\r\n\r\n" if close else b"\r\n"
        self.transport.write(head + body)
        if close:
            self.transport.close()
            self.transport = None

    def connection_lost(self, exc) -> None:
        self._done(0)  # the client hung up before its answer (timeout, deadline, kill)
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None


def listening_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((HOST, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def serve(shared: Shared, index: int, port: int, secret: bytes, deadline: float) -> None:
    loop = asyncio.new_event_loop()
    sock = listening_socket(port)

    def factory():
        return Handler(shared, index, secret)

    async def main():
        server = await loop.create_server(factory, sock=sock)
        async with server:
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))

    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    try:
        loop.run_until_complete(main())
    except RuntimeError:  # stopped by SIGTERM
        pass
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--secret", default=os.environ.get("BENCH_RECEIVER_SECRET", ""))
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("--secret (or BENCH_RECEIVER_SECRET) is required")
    shared = Shared(args.processes)
    deadline = time.monotonic() + args.max_seconds
    children = []
    for index in range(args.processes):
        pid = os.fork()
        if pid == 0:
            serve(shared, index, args.port, args.secret.encode(), deadline)
        children.append(pid)

    def stop(*_):
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(0)))
    print(f"receiver pids {children} on {HOST}:{args.port}", flush=True)
    for pid in children:
        os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
