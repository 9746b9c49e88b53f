"""A fast benchmark receiver: raw asyncio HTTP/1.1 on 127.0.0.1, every signature verified.

    python bench/receiver.py --port 8901 --processes 2 --secret S

Why not uvicorn: this venv has neither httptools nor uvloop, so uvicorn would parse with h11
(several times the CPU per request). On a 2-core machine the receiver's CPU is taken from the
workers and PostgreSQL under test, so the cheapest receiver gives the truest numbers.

N processes bind the same port with SO_REUSEPORT (the kernel spreads connections). Counters
and latency samples live in one shared memory block (each process writes only its own slots),
so any process answers:

    GET  /stats        totals: requests, events, bad signatures, first/last arrival, ...
    GET  /samples?tag=N latencies in ms of events whose payload carried bench_ts/bench_tag
    POST /reset        zero everything (call it while idle)
    POST /<anything>   a webhook: verify `X-OneProtect-Signature`, count events, answer 200
                       (401 on a bad signature); under /slow/<ms>/ it answers after <ms>.

Loopback only, bounded: the parent exits after --max-seconds whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import hashlib
import hmac
import json
import os
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
MAX_SLOW_MS = 5_000

# Counter slots per process.
REQUESTS, EVENTS, BAD_SIGNATURES, BAD_REQUESTS, FIRST, LAST, BYTES, NSAMPLES = range(8)
SLOW_REQUESTS, SLOW_EVENTS = 8, 9
SLOTS = 16


class Shared:
    """Counters (doubles) and (tag, latency) samples, one region per process."""

    def __init__(self, processes: int):
        self.processes = processes
        self.counters = RawArray(ctypes.c_double, processes * SLOTS)
        self.tags = RawArray(ctypes.c_int32, processes * SAMPLES_PER_PROCESS)
        self.latencies = RawArray(ctypes.c_double, processes * SAMPLES_PER_PROCESS)

    def reset(self) -> None:
        ctypes.memset(self.counters, 0, ctypes.sizeof(self.counters))

    def totals(self) -> dict:
        c = self.counters
        out = {
            "requests": 0,
            "events": 0,
            "bad_signatures": 0,
            "bad_requests": 0,
            "bytes": 0,
            "samples": 0,
            "slow_requests": 0,
            "slow_events": 0,
            "first": None,
            "last": None,
            "processes": self.processes,
            "per_process_requests": [],
        }
        names = {
            REQUESTS: "requests",
            EVENTS: "events",
            BAD_SIGNATURES: "bad_signatures",
            BAD_REQUESTS: "bad_requests",
            BYTES: "bytes",
            NSAMPLES: "samples",
            SLOW_REQUESTS: "slow_requests",
            SLOW_EVENTS: "slow_events",
        }
        for p in range(self.processes):
            base = p * SLOTS
            for slot, name in names.items():
                out[name] += int(c[base + slot])
            out["per_process_requests"].append(int(c[base + REQUESTS]))
            if c[base + FIRST]:
                first = c[base + FIRST]
                out["first"] = first if out["first"] is None else min(out["first"], first)
            if c[base + LAST]:
                out["last"] = max(out["last"] or 0.0, c[base + LAST])
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


class Handler(asyncio.Protocol):
    """HTTP/1.1 with Content-Length bodies and keep-alive; requests handled in order."""

    def __init__(self, shared: Shared, index: int, secret: bytes):
        self.shared = shared
        self.base = index * SLOTS
        self.sample_base = index * SAMPLES_PER_PROCESS
        self.secret = secret
        self.buffer = bytearray()
        self.transport = None
        self.waiting = False  # a slow response is pending: keep later requests buffered

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
        if method == b"GET" and path == b"/stats":
            self._json(self.shared.totals(), close)
        elif method == b"GET" and path == b"/samples":
            tag = None
            for part in query.split(b"&"):
                key, _, value = part.partition(b"=")
                if key == b"tag" and value:
                    tag = int(value)
            self._json({"latencies_ms": self.shared.samples(tag)}, close)
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
        c[base + REQUESTS] += 1
        c[base + BYTES] += len(body)
        if not c[base + FIRST]:
            c[base + FIRST] = now
        c[base + LAST] = now
        if not self._signature_ok(body, headers.get(SIGNATURE_HEADER)):
            c[base + BAD_SIGNATURES] += 1
            self._reply(401, b"bad signature", close)
            return
        events = body.count(b'"event_id":')
        c[base + EVENTS] += events
        if b'"bench_ts"' in body:
            self._record_latencies(body, now)
        delay_ms = 0
        if path.startswith(b"/slow/"):
            c[base + SLOW_REQUESTS] += 1
            c[base + SLOW_EVENTS] += events
            try:
                delay_ms = min(int(path.split(b"/")[2]), MAX_SLOW_MS)
            except (IndexError, ValueError):
                delay_ms = 0
        if delay_ms > 0:
            self.waiting = True
            asyncio.get_running_loop().call_later(delay_ms / 1000, self._finish_slow, close)
        else:
            self._reply(200, b"ok", close)

    def _finish_slow(self, close: bool) -> None:
        self.waiting = False
        if self.transport is None or self.transport.is_closing():
            return
        self._reply(200, b"ok", close)
        self._process()

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
        self.transport = None


def listening_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((HOST, port))
    sock.listen(1024)
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
