"""Targets (b) and (c), in one scenario.

A noisy tenant has 50 "drip" destinations (their receiver sends the status line a byte every
2 s and never finishes; destination timeout `drip_timeout`) and 200 slow ones (answer after
3 s), each with a backlog (batch 1, so the backlog lasts). While they drain, a fresh tenant
publishes one event at a time:

(b) the fresh tenant's publish → receiver latency, p50/p95/p99. An event that has not arrived
    when the run ends counts as infinitely late (so a stalled engine cannot look fast).
(c) the longest wall time of one attempt against a drip receiver: from the receiver's side
    (arrival to hang-up; a request still open counts with its age so far) and from the Attempt
    rows (duration_ms). The scenario lasts at least `drip_timeout` + 4 s after the first drip
    request so that a deadline has time to fire. Drip requests the receiver saw but no Attempt
    row records are counted too (an attempt killed with its worker is never recorded).
"""

from __future__ import annotations

import math
import time

from bench.common import cpu_text, fmt, log, pct
from scripts.processes import wait_until

FLEET = "noisy"
FRESH = "bench-fresh"
TAG = 300


def fleet_groups(config) -> list[dict]:
    return [
        {
            "prefix": "bn",
            "tenants": 1,
            "per_tenant": config.fair_drip,
            "mode": "drip",
            "arg": 2000,
            "timeout": config.drip_timeout,
        },
        {
            "prefix": "bn",
            "tenants": 1,
            "per_tenant": config.fair_slow,
            "mode": "delay",
            "arg": 3000,
            "timeout": 30,
        },
    ]


def fresh_latency(bench, events: int, wait: float, max_seconds: float) -> dict:
    published = bench.shell_json(
        "latency.py",
        {
            "tenant": FRESH,
            "receiver_port": bench.rx.port,
            "runs": [(TAG, events)],
            "wait_seconds": wait,
            "max_seconds": max_seconds,
        },
        timeout=max_seconds + 120,
    )
    values = bench.rx.samples(TAG)
    missing = max(0, published["published"] - len(values))
    everything = values + [math.inf] * missing
    return {
        "published": published["published"],
        "arrived": len(values),
        "missing": missing,
        "timeouts": published["timeouts"],
        "p50": pct(everything, 50),
        "p95": pct(everything, 95),
        "p99": pct(everything, 99),
        "max_arrived": max(values) if values else None,
    }


def drip_walls(bench, drip_ids: list[str]) -> dict:
    log_ = bench.rx.requests("drip")
    now = log_["now"]
    walls, open_ = [], 0
    for _dest, start, end, _events, _status, _mode, _ids in log_["requests"]:
        if end is None:
            open_ += 1
        walls.append((end or now) - start)
    attempts, longest_ms = bench.sql(
        "SELECT count(*), max(duration_ms) FROM integrations_attempt "
        "WHERE destination_id = ANY(%s::uuid[])",
        [drip_ids],
    )[0]
    return {
        "receiver_requests": len(walls),
        "receiver_open": open_,
        "receiver_max_s": max(walls) if walls else None,
        "db_attempts": attempts,
        "db_max_s": longest_ms / 1000 if longest_ms is not None else None,
        "unrecorded": max(0, len(walls) - open_ - attempts),
    }


def run(bench) -> None:
    config = bench.config
    fleet = bench.fleet(FLEET, fleet_groups(config))
    noisy = [d for ids in fleet.values() for d in ids]
    drip_ids = [
        str(row[0])
        for row in bench.sql(
            "SELECT id FROM integrations_destination WHERE id = ANY(%s::uuid[]) "
            "AND endpoint_url LIKE '%%/drip/%%'",
            [noisy],
        )
    ]
    bench.reset_delivery_state()
    bench.seed_fleet(fleet, config.fair_backlog)
    cluster = bench.start_cluster(WEBHOOK_BATCH_SIZE=1)
    meter = bench.meter(cluster)
    try:
        if not wait_until(lambda: bench.rx.stats()["modes"]["drip"] > 0, 60, interval=0.25):
            log("fairness: no drip request within 60 s (measuring anyway)")
        first_drip = time.monotonic()
        wait_until(lambda: bench.rx.stats()["modes"]["delay"] >= 20, 30, interval=0.25)
        budget = 60 if config.quick else 150
        latency = fresh_latency(bench, config.fair_events, wait=10.0, max_seconds=budget)
        # (c) needs the deadline's chance to fire: timeout + 4 s after the first drip request.
        hold = config.drip_timeout + 4 - (time.monotonic() - first_drip)
        if hold > 0:
            time.sleep(hold)
        cores = meter.stop()
        walls = drip_walls(bench, drip_ids)
        stats = bench.rx.stats()
    finally:
        bench.stop_cluster(cluster)
    limit = config.drip_timeout + 1
    bench.results["fairness"] = {
        **latency,
        "noisy_drip": config.fair_drip,
        "noisy_slow": config.fair_slow,
        "noisy_backlog_per_destination": config.fair_backlog,
        "slow_requests": stats["modes"]["delay"],
        "overlaps": stats["overlaps"],
        "cpu": cores,
    }
    bench.results["drip"] = {**walls, "timeout": config.drip_timeout, "limit_s": limit}
    log(
        f"fairness (b): fresh tenant p50 {fmt(latency['p50'], 1)} / p95 {fmt(latency['p95'], 1)}"
        f" / p99 {fmt(latency['p99'], 1)} ms ({latency['arrived']} of {latency['published']} "
        f"arrived) while the noisy tenant's {config.fair_drip} drip + {config.fair_slow} slow "
        f"destinations got {stats['modes']['delay']} slow and {stats['modes']['drip']} drip "
        f"requests; {stats['overlaps']} overlaps; {cpu_text(cores)}"
    )
    log(
        f"drip (c): longest attempt {fmt(walls['receiver_max_s'], 1)} s at the receiver "
        f"({walls['receiver_open']} of {walls['receiver_requests']} still open), "
        f"{fmt(walls['db_max_s'], 1)} s in Attempt rows ({walls['db_attempts']} recorded, "
        f"{walls['unrecorded']} ended without a record); limit {limit} s"
    )
