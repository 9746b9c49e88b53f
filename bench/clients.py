"""Load generators for the benchmark, each run as its own process and bounded in time and count.

    python bench/clients.py bare  --url URL --secret S --seconds 5     # requests.Session
    python bench/clients.py blast --url URL --secret S --seconds 3     # http.client (capacity)
    python bench/clients.py api   --url URL --token T --seconds 5 --threads 4

Each prints one JSON line. Only loopback URLs are accepted.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import sys
import threading
import time
import uuid
from urllib.parse import urlsplit

PAD = "x" * 780  # makes one envelope's JSON about 1 KiB
MAX_REQUESTS = 2_000_000


def loopback(url: str) -> str:
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "::1"):
        raise SystemExit(f"refusing a non-loopback URL: {url}")
    return url


def envelope() -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "detection.alert",
        "event_time": int(time.time() * 1000),
        "severity": "info",
        "tenant": "bench",
        "event": {"detection": "Bench detection", "outcome": "alerted", "pad": PAD},
    }


def signed(secret: bytes) -> tuple[bytes, dict[str, str]]:
    """A 1 KiB batch of one event, serialized and signed like the engine does."""
    body = json.dumps({"events": [envelope()]}, separators=(",", ":")).encode()
    signature = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/json",
        "User-Agent": "OneProtect-Webhooks/1.0 (bench)",
        "X-OneProtect-Signature": signature,
        "X-OneProtect-Timestamp": str(int(time.time())),
        "X-OneProtect-Delivery": str(uuid.uuid4()),
    }


def bare(url: str, secret: bytes, seconds: float) -> dict:
    """Line 1: sign and POST 1 KiB batches in a loop with one kept-alive requests.Session."""
    import requests

    session = requests.Session()
    session.trust_env = False
    ok = errors = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline and ok + errors < MAX_REQUESTS:
        body, headers = signed(secret)
        response = session.post(url, data=body, headers=headers, timeout=10)
        response.content  # noqa: B018 (read the body, as a sender must)
        if response.status_code == 200:
            ok += 1
        else:
            errors += 1
    elapsed = time.perf_counter() - started
    return {"ok": ok, "errors": errors, "seconds": elapsed, "rate": ok / elapsed}


def blast(url: str, secret: bytes, seconds: float) -> dict:
    """Receiver capacity: the cheapest client (http.client, one fixed signed body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    body, headers = signed(secret)
    ok = errors = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline and ok + errors < MAX_REQUESTS:
        conn.request("POST", parts.path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status == 200:
            ok += 1
        else:
            errors += 1
    elapsed = time.perf_counter() - started
    conn.close()
    return {"ok": ok, "errors": errors, "seconds": elapsed, "rate": ok / elapsed}


def api(url: str, token: str, seconds: float, threads: int) -> dict:
    """Line 3: POST /api/v1/events, one event per request, from `threads` kept-alive sessions."""
    import requests

    counts = {"created": 0, "other": 0, "errors": 0, "statuses": {}}
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def run():
        session = requests.Session()
        session.trust_env = False
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        while time.perf_counter() < deadline:
            body = json.dumps(
                {
                    "event_id": str(uuid.uuid4()),
                    "event_type": "detection.alert",
                    "severity": "high",
                    "event": {"detection": "Bench detection", "pad": PAD},
                }
            )
            try:
                response = session.post(url, data=body, headers=headers, timeout=30)
                status = response.status_code
            except requests.RequestException:
                status = None
            with lock:
                if status == 201:
                    counts["created"] += 1
                elif status is None:
                    counts["errors"] += 1
                else:
                    counts["other"] += 1
                    counts["statuses"][str(status)] = counts["statuses"].get(str(status), 0) + 1
                if sum((counts["created"], counts["other"], counts["errors"])) >= MAX_REQUESTS:
                    return

    started = time.perf_counter()
    workers = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=seconds + 60)
    elapsed = time.perf_counter() - started
    return {**counts, "seconds": elapsed, "rate": counts["created"] / elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["bare", "blast", "api"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--secret", default="")
    parser.add_argument("--token", default="")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    url = loopback(args.url)
    seconds = min(args.seconds, 300.0)
    if args.mode == "bare":
        result = bare(url, args.secret.encode(), seconds)
    elif args.mode == "blast":
        result = blast(url, args.secret.encode(), seconds)
    else:
        result = api(url, args.token, seconds, args.threads)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
