"""Targets (d) and (e): drain a backlog over 10 fast destinations, batch 100 and batch 1."""

from __future__ import annotations

import time

from bench.common import (
    cluster_workers,
    cpu_text,
    fmt,
    log,
    median,
    status_kb,
)
from bench.context import default_workers


def drain_run(bench, count: int, batch: int, limit: float, slug: str = "bench-drain") -> dict:
    bench.reset_delivery_state()
    bench.seed_backlog(slug, count)
    cluster = bench.start_cluster(WEBHOOK_BATCH_SIZE=batch)
    meter = bench.meter(cluster)
    started = time.monotonic()
    peak: dict[int, int] = {}
    last_events, last_progress = 0, started
    stalled = False
    try:
        while time.monotonic() - started < limit:
            time.sleep(0.25)
            events = bench.rx.stats()["events"]
            if events >= count:
                break
            if events > last_events:
                last_events, last_progress = events, time.monotonic()
            elif time.monotonic() - last_progress > 30:
                stalled = True
                break
            for pid in cluster_workers(cluster.pid, default_workers()):
                peak[pid] = max(peak.get(pid, 0), status_kb(pid, "VmHWM") or 0)
            meter.sample()
        for pid in cluster_workers(cluster.pid, default_workers()):
            peak[pid] = max(peak.get(pid, 0), status_kb(pid, "VmHWM") or 0)
        cores = meter.stop()
    finally:
        bench.stop_cluster(cluster)
    wall = time.monotonic() - started
    (deliveries, events, attempts, first, last) = bench.sql(
        """
        SELECT count(*) FILTER (WHERE state = 'delivered'),
               coalesce(sum(event_count) FILTER (WHERE state = 'delivered'), 0),
               (SELECT count(*) FROM integrations_attempt),
               min(created_at), max(finished_at)
        FROM integrations_delivery
        """
    )[0]
    waiting = bench.sql(
        """
        SELECT count(*) FROM integrations_deliveryevent de
        LEFT JOIN integrations_delivery d ON d.id = de.delivery_id
        WHERE d.state IS DISTINCT FROM 'delivered'
        """
    )[0][0]
    span = (last - first).total_seconds() if first and last else None
    stats = bench.rx.stats()
    result = {
        "batch": batch,
        "backlog": count,
        "delivered_events": events,
        "deliveries": deliveries,
        "posts": attempts,
        "not_delivered": waiting,
        "complete": waiting == 0,
        "stalled": stalled,
        "span_seconds": span,
        "wall_seconds": wall,
        "events_per_s": events / span if span else None,
        "posts_per_s": attempts / span if span else None,
        "receiver_events": stats["events"],
        "bad_signatures": stats["bad_signatures"],
        "worker_peak_rss_mb": {str(p): kb / 1024 for p, kb in peak.items()},
        "cpu": cores,
    }
    state = "complete" if waiting == 0 else f"{fmt(events)} of {fmt(count)} in {limit:.0f}s"
    log(
        f"drain batch {batch}: {fmt(result['events_per_s'])} events/s, "
        f"{fmt(result['posts_per_s'], 1)} POSTs/s ({state}; receiver saw "
        f"{fmt(stats['events'])} events, {stats['bad_signatures']} bad signatures); "
        f"{cpu_text(cores)}"
    )
    return result


def run(bench) -> None:
    config = bench.config
    out = {}
    for batch, limit in ((100, config.drain_limit_100), (1, config.drain_limit_1)):
        runs = []
        for _ in range(config.runs):
            if bench.remaining() < limit + 30:
                log(f"drain batch {batch}: skipping a run (time budget)")
                break
            runs.append(drain_run(bench, config.drain_events, batch, limit))
        out[batch] = {
            "events_per_s": median([r["events_per_s"] for r in runs]),
            "posts_per_s": median([r["posts_per_s"] for r in runs]),
            "runs": runs,
        }
    bench.results["drain"] = out
