"""Target (g): worker memory with 500 streams in flight, flat from 20k to 100k events.

500 destinations in 50 tenants whose receivers answer after 5 s (slow enough that every stream
is in flight at once: with 250 ms receivers the database, not the receivers, would bound how
many batches of 100 events are out at a time) get a backlog of `size` events spread evenly;
the cluster at its default size drains it with batch 100. Every 0.5 s the resident memory
(VmRSS) of every worker process is read, and at the end their peaks (VmHWM). The figure is the
largest worker's peak; "flat" means the large backlog's peak is within 10% + 5 MB of the small
one's. At 20k events a batch holds 40 events, at 100k a full 100: the bodies in flight (one per
stream) grow with it, whatever the backlog. The receiver's most requests in flight at once
shows how many streams really were in flight.
"""

from __future__ import annotations

from bench.common import cluster_workers, fmt, log, status_kb
from bench.context import default_workers
from bench.sections.throughput import fleet_groups, watch

FLEET = "fleet5s"
RECORD_WAIT = 20.0  # seconds for the last outcomes to be recorded once all events arrived


def run(bench) -> None:
    config = bench.config
    fleet = bench.fleet(FLEET, fleet_groups(config, prefix="bm", delay_ms=5000))
    destinations = [d for ids in fleet.values() for d in ids]
    out = {}
    for size in config.memory_sizes:
        limit = (60 if config.quick else 90) if size <= 20_000 else (90 if config.quick else 180)
        if bench.remaining() < limit + 60:
            log(f"memory {size}: skipped (time budget)")
            continue
        bench.reset_delivery_state()
        per_destination = max(1, size // len(destinations))
        total = bench.seed_fleet(fleet, per_destination)
        cluster = bench.start_cluster(WEBHOOK_BATCH_SIZE=100)
        rss: dict[int, int] = {}
        hwm: dict[int, int] = {}

        def sample(cluster=cluster, rss=rss, hwm=hwm):
            for pid in cluster_workers(cluster.pid, default_workers()):
                rss[pid] = max(rss.get(pid, 0), status_kb(pid, "VmRSS") or 0)
                hwm[pid] = max(hwm.get(pid, 0), status_kb(pid, "VmHWM") or 0)

        try:
            watched = watch(bench, cluster, total, limit, on_sample=sample)
            stats = bench.rx.stats()
            bench.settle(destinations, RECORD_WAIT, on_sample=sample)
            sample()
        finally:
            bench.stop_cluster(cluster)
        waiting = bench.waiting_events(destinations)
        peaks = {str(pid): kb / 1024 for pid, kb in hwm.items()}
        out[size] = {
            "backlog": total,
            "max_mb": max(peaks.values()) if peaks else None,
            "per_worker_peak_mb": peaks,
            "per_worker_rss_mb": {str(pid): kb / 1024 for pid, kb in rss.items()},
            "max_in_flight": stats["max_in_flight"],
            "overlaps": stats["overlaps"],
            "delivered": total - waiting,
            "complete": waiting == 0,
            "wall_seconds": watched["wall"],
        }
        log(
            f"memory {fmt(total)} events: worker peak RSS {fmt(out[size]['max_mb'], 1)} MB "
            f"(per worker {', '.join(f'{v:.0f}' for v in peaks.values())} MB); at most "
            f"{stats['max_in_flight']} requests in flight; "
            f"{fmt(total - waiting)} of {fmt(total)} delivered in {watched['wall']:.0f}s"
        )
    bench.results["memory"] = out
