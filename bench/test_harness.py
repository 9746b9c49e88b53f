"""Tests of the measuring tools themselves (not of the portal): the benchmark receiver's modes
and bookkeeping, and the pure helpers the bench and chaos reports rely on.

    make test PYTEST_ARGS="bench/test_harness.py -q"

Real loopback traffic to a real receiver process, bounded in time; the receiver is stopped by
its PID.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.receiver import parse_path
from bench.report import ratio
from bench.sections.throughput import steady_rate
from chaos.receiver import overlaps
from scripts.processes import end_group, free_port, start_in_group, wait_for_url

SECRET = "harness-secret"
RECEIVER = Path(__file__).resolve().parent / "receiver.py"


@pytest.fixture
def receiver():
    port = free_port()
    process = start_in_group(
        [sys.executable, str(RECEIVER), "--port", str(port), "--processes", "2"]
        + ["--secret", SECRET, "--max-seconds", "60"],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_url(f"http://127.0.0.1:{port}/stats", 15, process=process, interval=0.05)
        yield port
    finally:
        end_group(process)


def get(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def body(event_id: str = "0b7e4c1e-8f1a-4d0e-9a51-6d3f6a1b2c3d") -> bytes:
    return json.dumps({"events": [{"event_id": event_id}]}, separators=(",", ":")).encode()


def send(port: int, path: str, payload: bytes, secret: str = SECRET) -> socket.socket:
    """Send one signed POST and return the open socket (the caller reads or hangs up)."""
    signature = "sha256=" + hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(payload)}\r\n"
        f"X-OneProtect-Signature: {signature}\r\n\r\n".encode()
        + payload
    )
    return sock


def status_of(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    sock.close()
    return int(data.split(b" ", 2)[1])


def test_paths_select_mode_argument_and_destination():
    assert parse_path(b"/fast/0/12") == ("fast", 0, 12)
    assert parse_path(b"/delay/250/7") == ("delay", 250, 7)
    assert parse_path(b"/slow/200/a") == ("delay", 200, -1)  # the older name, not tracked
    assert parse_path(b"/delay/999999/1") == ("delay", 10_000, 1)  # capped
    assert parse_path(b"/drip/2000/3") == ("drip", 2000, 3)
    assert parse_path(b"/drain/3") == ("other", 0, -1)


def test_receiver_answers_by_mode_and_checks_signatures(receiver):
    assert status_of(send(receiver, "/fast/0/1", body())) == 200
    assert status_of(send(receiver, "/fast/0/1", body(), secret="wrong")) == 401
    started = time.monotonic()
    assert status_of(send(receiver, "/delay/300/2", body())) == 200
    assert time.monotonic() - started >= 0.3
    stats = get(receiver, "/stats")
    assert stats["requests"] == 3
    assert stats["bad_signatures"] == 1
    assert stats["modes"]["fast"] == 2 and stats["modes"]["delay"] == 1
    assert stats["overlaps"] == 0 and stats["in_flight"] == 0


def test_delayed_answers_do_not_block_each_other_and_overlaps_are_counted(receiver):
    started = time.monotonic()
    first = send(receiver, "/delay/500/5", body())
    second = send(receiver, "/delay/500/5", body())  # same destination: an overlap
    other = send(receiver, "/delay/500/6", body())
    assert [status_of(s) for s in (first, second, other)] == [200, 200, 200]
    assert time.monotonic() - started < 1.4  # in parallel, not one after the other
    stats = get(receiver, "/stats")
    assert stats["overlaps"] == 1
    assert stats["overlap_destinations"] == {"5": 1}
    assert stats["max_in_flight"] == 3


def test_drip_never_finishes_and_its_wall_time_ends_at_the_hang_up(receiver):
    sock = send(receiver, "/drip/100/9", body())
    time.sleep(0.6)
    received = sock.recv(100)
    assert received and b"\r\n\r\n" not in received  # bytes trickle, headers never complete
    sock.close()
    time.sleep(0.3)
    rows = get(receiver, "/requests?mode=drip")["requests"]
    assert len(rows) == 1
    dest, start, end, events, status, mode, _ids = rows[0]
    assert (dest, events, status, mode) == (9, 1, 0, "drip")  # status 0: the client hung up
    assert 0.5 <= end - start < 1.5
    assert get(receiver, "/stats")["in_flight"] == 0


def test_steady_rate_skips_ramp_up_and_tail():
    # (t, requests, events): 10 requests/s between 5% and 95% of 100 events.
    samples = [(0.0, 0, 0), (1.0, 5, 5), (2.0, 15, 15), (10.0, 95, 95), (30.0, 100, 100)]
    assert steady_rate(samples, 100, 1) == pytest.approx(10.0)
    assert steady_rate(samples[:1], 100, 1) is None


def test_ratio_shows_measured_over_target():
    assert ratio(500, 1000) == "0.50×"
    assert ratio(None, 1000) == "n/a"
    assert ratio(float("inf"), 1000) == "∞"


def span(start, end, ids, delivery):
    return (start, end, SimpleNamespace(event_ids=ids, delivery_id=delivery), "ok")


def test_chaos_overlaps_find_requests_in_flight_twice():
    spans = [
        span(0.0, 1.0, ["a"], "d1"),
        span(1.05, 2.0, ["b"], "d2"),  # starts 50 ms before the end: within the grace
        span(1.5, 2.5, ["b"], "d3"),  # the same batch while d2 is still open
        span(3.0, 4.0, ["c"], "d4"),
    ]
    found = overlaps(spans)
    assert len(found) == 1
    assert found[0]["same_batch"] is True
    assert found[0]["delivery_ids"] == ("d2", "d3")
    assert overlaps([span(0.0, 1.0, ["a"], "d1"), span(1.0, 2.0, ["a"], "d2")]) == []
