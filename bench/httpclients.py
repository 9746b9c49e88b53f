"""aiohttp vs httpx: N concurrent signed 1 KiB POSTs from one asyncio process.

    python -m bench.httpclients --client aiohttp --url URL --secret S --concurrency 100 \\
        --requests 5000 --seconds 10

Prints one JSON line: requests answered 200, errors, wall seconds, requests/s and the CPU seconds
this process used (user + system) per 1,000 requests. Both clients get the same treatment:
one client object with a connection pool as large as the concurrency, keep-alive, no proxy
environment, a fresh signed body per request (JSON + HMAC as the engine does), the response
body read in full, a warm-up of one request per connection that is not measured. Loopback only;
bounded by --requests and --seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import sys
import time

from bench.clients import loopback, signed

MAX_REQUESTS = 1_000_000
GRACE = 5.0  # seconds after --seconds for requests already started


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(client: str, url: str, secret: bytes, concurrency: int, total: int, seconds: float):
    counts = {"ok": 0, "errors": 0, "statuses": {}}

    if client == "aiohttp":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
        session = aiohttp.ClientSession(
            connector=connector, trust_env=False, timeout=aiohttp.ClientTimeout(total=30)
        )

        async def post() -> int:
            body, headers = signed(secret)
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                return response.status

        async def close():
            await session.close()
    else:
        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        # TCP_NODELAY as aiohttp sets it by default: without it httpx's separate header and body
        # writes meet Nagle's algorithm and delayed ACKs (about 40 ms per request on loopback).
        transport = httpx.AsyncHTTPTransport(
            limits=limits, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        )
        session = httpx.AsyncClient(transport=transport, trust_env=False, timeout=30.0)

        async def post() -> int:
            body, headers = signed(secret)
            response = await session.post(url, content=body, headers=headers)
            await response.aread()
            return response.status_code

        async def close():
            await session.aclose()

    async def one():
        try:
            status = await post()
        except Exception as error:  # count and go on: a benchmark, not a test
            counts["errors"] += 1
            counts["statuses"][type(error).__name__] = (
                counts["statuses"].get(type(error).__name__, 0) + 1
            )
            return
        if status == 200:
            counts["ok"] += 1
        else:
            counts["errors"] += 1
            counts["statuses"][str(status)] = counts["statuses"].get(str(status), 0) + 1

    timed_out = False
    try:
        try:  # warm-up: open the pool (bounded: a client may be too slow even for that)
            await asyncio.wait_for(asyncio.gather(*(one() for _ in range(concurrency))), seconds)
        except TimeoutError:
            timed_out = True
        counts.update(ok=0, errors=0, statuses={})
        issued = 0
        deadline = time.perf_counter() + seconds

        async def worker():
            nonlocal issued
            while issued < total and time.perf_counter() < deadline:
                issued += 1
                await one()

        cpu0, started = cpu_seconds(), time.perf_counter()
        try:  # requests started before the deadline may finish within a grace period
            await asyncio.wait_for(
                asyncio.gather(*(worker() for _ in range(concurrency))), seconds + GRACE
            )
        except TimeoutError:
            timed_out = True
        wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu0
    finally:
        await close()
    done = counts["ok"] + counts["errors"]
    return {
        "client": client,
        "concurrency": concurrency,
        **counts,
        "seconds": wall,
        "rate": counts["ok"] / wall if wall else 0.0,
        "cpu_seconds": cpu,
        "cpu_s_per_1000": cpu / done * 1000 if done else None,
        "timed_out": timed_out,  # the warm-up or the last requests outlived their bound
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--client", choices=["aiohttp", "httpx"], required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    result = asyncio.run(
        run(
            args.client,
            loopback(args.url),
            args.secret.encode(),
            max(1, min(args.concurrency, 5000)),
            max(1, min(args.requests, MAX_REQUESTS)),
            min(args.seconds, 300.0),
        )
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
