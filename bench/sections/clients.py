"""The async HTTP client for the engine: aiohttp vs httpx (bench/httpclients.py).

Each client, in its own process, sends N signed 1 KiB POSTs at concurrency 100 and 500 against
the fast receiver and against the one that answers after 250 ms. Per combination and run the two
clients go one after the other, the order alternating between runs; the table shows medians of
requests/s and of the client's own CPU seconds per 1,000 requests (the engine's limit on two
cores is CPU, so CPU per request decides at the fast receiver; requests/s at the slow one shows
whether a client keeps `concurrency` requests truly in flight).
"""

from __future__ import annotations

import json
import subprocess

from bench.common import fmt, log, median
from bench.context import PYTHON, ROOT

CLIENTS = ("aiohttp", "httpx")
TARGETS = (("fast", "/fast/0"), ("250 ms", "/delay/250"))
CONCURRENCY = (100, 500)


def one(bench, client: str, path: str, concurrency: int, requests: int) -> dict:
    seconds = bench.config.clients_seconds
    output = subprocess.run(
        [PYTHON, "-m", "bench.httpclients", "--client", client, "--url", bench.rx.url(path)]
        + ["--secret", bench.rx.secret, "--concurrency", str(concurrency)]
        + ["--requests", str(requests), "--seconds", str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=True,
        cwd=ROOT,
    ).stdout
    return json.loads(output)


def run(bench) -> None:
    config = bench.config
    runs = min(config.runs, 2)  # httpx's slow runs last up to 3× `seconds`: keep this bounded
    out: dict = {}
    for label, path in TARGETS:
        for concurrency in CONCURRENCY:
            # At 250 ms a request takes ≥ 0.25 s: bound the count so a run stays near `seconds`.
            requests = config.clients_requests
            if path != "/fast/0":
                requests = min(requests, int(concurrency * 4 * config.clients_seconds))
            per_client: dict[str, list[dict]] = {c: [] for c in CLIENTS}
            for number in range(runs):
                if bench.remaining() < 4 * config.clients_seconds + 60:
                    log("clients: skipping the remaining runs (time budget)")
                    break
                order = CLIENTS if number % 2 == 0 else tuple(reversed(CLIENTS))
                for client in order:
                    bench.rx.reset()
                    result = one(bench, client, path, concurrency, requests)
                    stats = bench.rx.stats()
                    result["bad_signatures"] = stats["bad_signatures"]
                    result["max_in_flight_at_receiver"] = stats["max_in_flight"]
                    per_client[client].append(result)
                    cpu = result["cpu_s_per_1000"]  # None when not one request completed
                    log(
                        f"clients {client} → {label}, concurrency {concurrency}: "
                        f"{fmt(result['rate'])} req/s, {fmt(cpu, 3)} CPU s per "
                        f"1,000 ({result['ok']} ok, {result['errors']} errors"
                        f"{', timed out' if result.get('timed_out') else ''} "
                        f"{result['statuses'] or ''}; receiver saw ≤ {stats['max_in_flight']} in "
                        f"flight, {stats['bad_signatures']} bad signatures)"
                    )
            key = f"{label} c{concurrency}"
            out[key] = {
                client: {
                    "rate": median([r["rate"] for r in results]),
                    "cpu_s_per_1000": median([r["cpu_s_per_1000"] for r in results]),
                    "errors": sum(r["errors"] for r in results),
                    "max_in_flight": max(
                        (r["max_in_flight_at_receiver"] for r in results), default=0
                    ),
                    "runs": results,
                }
                for client, results in per_client.items()
            }
    bench.results["clients"] = {"combinations": out, "verdict": verdict(out)}
    log(f"clients: {bench.results['clients']['verdict']['text']}")


def verdict(out: dict) -> dict:
    """Which client wins on CPU per request (fast receiver) and on requests/s (everywhere)."""
    cpu_wins: dict[str, int] = {c: 0 for c in CLIENTS}
    rate_wins: dict[str, int] = {c: 0 for c in CLIENTS}
    ratios = []
    for key, entry in out.items():
        a, h = entry["aiohttp"], entry["httpx"]
        if a["rate"] and h["rate"]:
            rate_wins["aiohttp" if a["rate"] >= h["rate"] else "httpx"] += 1
        if a["cpu_s_per_1000"] and h["cpu_s_per_1000"]:
            cpu_wins["aiohttp" if a["cpu_s_per_1000"] <= h["cpu_s_per_1000"] else "httpx"] += 1
            if key.startswith("fast"):
                ratios.append(h["cpu_s_per_1000"] / a["cpu_s_per_1000"])
    if not ratios:
        return {"winner": None, "text": "no result"}
    ratio = median(ratios)
    winner = "aiohttp" if ratio >= 1 else "httpx"
    factor = ratio if ratio >= 1 else 1 / ratio
    text = (
        f"{winner} is faster: {factor:.2f}× less CPU per request than the other at the fast "
        f"receiver (median over concurrency); more requests/s in {rate_wins[winner]} of "
        f"{len(out)} combinations, less CPU per request in {cpu_wins[winner]} of {len(out)}"
    )
    return {"winner": winner, "cpu_factor": factor, "text": text, "rate_wins": rate_wins}
