"""Target (a): POSTs/s to 500 destinations in 50 tenants whose receivers answer after 250 ms.

Every destination gets a backlog of `throughput_events` events; the cluster (at its default
size, WEBHOOK_BATCH_SIZE=1) drains them. The rate is taken at the receiver, between the moments
5% and 95% of the backlog had arrived (ramp-up and tail excluded), or over the whole window when
the time limit ends the run first; the Attempt rows give the same figure from the database side.
The receiver also reports the most requests it saw in flight at once and any destination that
had two requests in flight at the same moment (an overlap: never allowed).
"""

from __future__ import annotations

import time

from bench.common import cpu_text, fmt, log

FLEET = "fleet250"


def fleet_groups(config, *, prefix: str = "bt", delay_ms: int = 250) -> list[dict]:
    """The fleet of (a): config.fleet_destinations receivers answering after `delay_ms`."""
    per_tenant = config.fleet_destinations // config.fleet_tenants
    return [
        {
            "prefix": prefix,
            "tenants": config.fleet_tenants,
            "per_tenant": per_tenant,
            "mode": "delay",
            "arg": delay_ms,
            "timeout": 30,
        }
    ]


def watch(bench, cluster, total: int, limit: float, on_sample=None) -> dict:
    """Poll the receiver until `total` events arrived, progress stops or `limit` passes."""
    started = time.monotonic()
    samples: list[tuple[float, int, int]] = []  # (t, requests, events)
    last_progress, last_events = started, -1
    while time.monotonic() - started < limit:
        time.sleep(0.5)
        stats = bench.rx.stats()
        now = time.monotonic()
        samples.append((now - started, stats["requests"], stats["events"]))
        if on_sample is not None:
            on_sample()
        if stats["events"] >= total:
            break
        if stats["events"] > last_events:
            last_events, last_progress = stats["events"], now
        elif now - last_progress > 30:
            break
        if cluster.poll() is not None:
            break
    return {"samples": samples, "wall": time.monotonic() - started}


def steady_rate(samples: list[tuple[float, int, int]], total: int, index: int) -> float | None:
    """Rate of samples[i][index] between 5% and 95% of `total` (or the whole window)."""
    if len(samples) < 2:
        return None
    low, high = 0.05 * total, 0.95 * total
    begin = next((s for s in samples if s[2] >= low), samples[0])
    end = next((s for s in samples if s[2] >= high), samples[-1])
    if end[0] <= begin[0]:
        begin, end = samples[0], samples[-1]
    return (end[index] - begin[index]) / (end[0] - begin[0]) if end[0] > begin[0] else None


def run(bench) -> None:
    config = bench.config
    fleet = bench.fleet(FLEET, fleet_groups(config))
    destinations = [d for ids in fleet.values() for d in ids]
    bench.reset_delivery_state()
    total = bench.seed_fleet(fleet, config.throughput_events)
    cluster = bench.start_cluster(WEBHOOK_BATCH_SIZE=1)
    meter = bench.meter(cluster)
    try:
        watched = watch(bench, cluster, total, config.throughput_seconds, on_sample=meter.sample)
        cores = meter.stop()
        stats = bench.rx.stats()
        bench.settle(destinations, 20.0)
    finally:
        bench.stop_cluster(cluster)
    samples = watched["samples"]
    rate = steady_rate(samples, total, 1)
    attempts, ok, first, last = bench.sql(
        "SELECT count(*), count(*) FILTER (WHERE ok), min(started_at), max(started_at) "
        "FROM integrations_attempt WHERE destination_id = ANY(%s::uuid[])",
        [destinations],
    )[0]
    span = (last - first).total_seconds() if first and last else None
    waiting = bench.waiting_events(destinations)
    result = {
        "destinations": len(destinations),
        "tenants": len(fleet),
        "backlog": total,
        "posts_per_s": rate,
        "db_attempts": attempts,
        "db_attempts_ok": ok,
        "db_posts_per_s": attempts / span if span else None,
        "receiver_requests": stats["requests"],
        "max_in_flight": stats["max_in_flight"],
        "overlaps": stats["overlaps"],
        "bad_signatures": stats["bad_signatures"],
        "delivered": total - waiting,
        "complete": waiting == 0,
        "wall_seconds": watched["wall"],
        "cpu": cores,
        "samples": samples[-200:],
    }
    bench.results["throughput"] = result
    state = "complete" if waiting == 0 else f"{fmt(total - waiting)} of {fmt(total)} delivered"
    log(
        f"throughput (a): {fmt(rate, 1)} POSTs/s at the receiver, "
        f"{fmt(result['db_posts_per_s'], 1)} from Attempt rows ({state} in "
        f"{watched['wall']:.0f}s; at most {stats['max_in_flight']} "
        f"in flight, {stats['overlaps']} overlaps, {stats['bad_signatures']} bad signatures); "
        f"{cpu_text(cores)}"
    )
