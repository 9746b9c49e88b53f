"""Target (f): idle publish → receiver latency on the ORM broker (and Redis when present)."""

from __future__ import annotations

from bench.common import (
    fmt,
    log,
    median,
    pct,
)


def latency_runs(bench, slug: str, base_tag: int, events: int, **extra) -> dict:
    """Publish one at a time; per run the p50/p95/p99 of publish → receiver arrival."""
    runs = [(base_tag + 1 + i, events) for i in range(bench.config.runs)]
    warm = bench.shell_json(
        "latency.py",
        {
            "tenant": slug,
            "receiver_port": bench.rx.port,
            "runs": [(base_tag, 3)],
            "wait_seconds": 30,
        },
        **extra,
    )
    if warm["timeouts"] == 3:
        raise RuntimeError(f"no delivery reached the receiver for {slug}: {warm}")
    result = bench.shell_json(
        "latency.py",
        {
            "tenant": slug,
            "receiver_port": bench.rx.port,
            "runs": runs,
            "max_seconds": min(400, max(60, bench.remaining() - 120)),
        },
        timeout=900,
        **extra,
    )
    per_run = []
    for tag, _ in runs:
        values = bench.rx.samples(tag)
        per_run.append(
            {
                "n": len(values),
                "p50": pct(values, 50),
                "p95": pct(values, 95),
                "p99": pct(values, 99),
                "max": max(values) if values else None,
            }
        )
    return {
        "p50": median([r["p50"] for r in per_run]),
        "p95": median([r["p95"] for r in per_run]),
        "p99": median([r["p99"] for r in per_run]),
        "timeouts": result["timeouts"],
        "runs": per_run,
    }


def run(bench) -> None:
    out = {}
    bench.reset_delivery_state()
    cluster = bench.start_cluster()
    try:
        out["orm"] = latency_runs(bench, "bench-lat", 100, bench.config.latency_events)
    finally:
        bench.stop_cluster(cluster)
    _log_latency("ORM broker", out["orm"])
    out["redis"] = latency_redis(bench)
    bench.results["latency"] = out


def latency_redis(bench) -> dict:
    try:
        import redis

        client = redis.Redis.from_url(bench.config.redis_url, socket_timeout=2)
        client.ping()
    except Exception as error:  # no Redis here: report, do not fail the bench
        log(f"latency with Redis: n/a ({error})")
        return {"available": False, "reason": str(error)[:200]}
    name = bench.stack.name + "_redis"
    env = {"REDIS_URL": bench.config.redis_url, "Q_CLUSTER_NAME": name}

    def clean():
        for key in client.scan_iter(f"django_q:{name}:*", count=100):
            client.delete(key)

    clean()
    bench.reset_delivery_state()
    cluster = bench.start_cluster(**env)
    try:
        result = latency_runs(bench, "bench-lat", 200, bench.config.latency_events, **env)
    finally:
        bench.stop_cluster(cluster)
        clean()
    _log_latency("Redis broker", result)
    return {"available": True, **result}


def _log_latency(label: str, r: dict) -> None:
    log(
        f"latency {label}: p50 {fmt(r['p50'], 1)} ms, p95 {fmt(r['p95'], 1)} ms, "
        f"p99 {fmt(r['p99'], 1)} ms ({sum(x['n'] for x in r['runs'])} events, "
        f"{r['timeouts']} timeouts)"
    )
