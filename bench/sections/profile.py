"""Evidence: engine.drain under cProfile in one process (--profile)."""

from __future__ import annotations

from bench.common import (
    log,
)


def run(bench) -> None:
    """engine.drain under cProfile in one process (batch 100 and batch 1)."""
    out = {}
    for batch, batches in ((100, 40), (1, 400)):
        bench.reset_delivery_state()
        destination = bench.ids["destinations"]["bench-drain"][0]
        bench.seed_backlog("bench-drain", batch * (2 * batches + 1), [destination])
        out[batch] = bench.shell_json(
            "profile_drain.py",
            {
                "destination_id": destination,
                "batches": batches,
                "phase_batches": batches,
                "top": 35,
            },
            WEBHOOK_BATCH_SIZE=batch,
            WEBHOOK_ENQUEUE="false",
        )
        r = out[batch]
        phases = ", ".join(
            f"{name} {p['wall_ms_median']:.1f} ms wall / {p['cpu_ms_mean']:.1f} ms CPU"
            if "wall_ms_median" in p
            else f"{name} backend {p['cpu_ms_mean']:.1f} ms CPU"
            for name, p in r["phases"].items()
            if p["n"]
        )
        log(
            f"profile batch {batch}: {len(r['queries_per_batch'])} statements per batch; "
            f"per batch (unprofiled, one process): {phases}; under cProfile "
            f"{r['batches']} batches in {r['seconds']:.2f}s"
        )
    bench.results["profile"] = out
