"""Evidence for a missed drain target, in one process (no cluster, WEBHOOK_ENQUEUE off):

1. the statements of one deliver_one() (CaptureQueriesContext);
2. claim / send / record timed separately, wall and CPU (time.process_time), no profiler;
3. drain.drain under cProfile (cumulative and internal time).
"""

import cProfile
import io
import json
import os
import pstats
import statistics
import time

from django.db import connection, reset_queries
from django.test.utils import CaptureQueriesContext

from integrations.delivery import drain, record

params = json.loads(os.environ["BENCH_PARAMS"])
destination_id = params["destination_id"]

with CaptureQueriesContext(connection) as captured:
    drain.deliver_one(destination_id)
queries = [
    {"ms": round(float(q["time"]) * 1000, 2), "sql": " ".join(q["sql"].split())[:300]}
    for q in captured.captured_queries
]


def backend_cpu() -> float:
    """CPU seconds of this connection's PostgreSQL backend (same machine), from /proc."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:  # a server elsewhere (DATABASE_URL): not measurable here
        return float("nan")


phases = {"claim": [], "send": [], "record": []}
pg_before, loop_started = backend_cpu(), time.process_time()
cpu = {"claim": [], "send": [], "record": []}
for _ in range(int(params["phase_batches"])):
    w0, c0 = time.perf_counter(), time.process_time()
    claim = drain.claim_batch(destination_id)
    w1, c1 = time.perf_counter(), time.process_time()
    if claim is None:
        break
    outcome = drain.send_claim(claim)
    w2, c2 = time.perf_counter(), time.process_time()
    record.record_outcome(claim, outcome)
    w3, c3 = time.perf_counter(), time.process_time()
    for name, wall, used in (("claim", w1 - w0, c1 - c0), ("send", w2 - w1, c2 - c1)):
        phases[name].append(wall * 1000)
        cpu[name].append(used * 1000)
    phases["record"].append((w3 - w2) * 1000)
    cpu["record"].append((c3 - c2) * 1000)
    reset_queries()
pg_cpu = backend_cpu() - pg_before
cycles = len(phases["record"])
timing = {
    name: {
        "n": len(values),
        "wall_ms_median": statistics.median(values) if values else None,
        "cpu_ms_mean": statistics.mean(cpu[name]) if cpu[name] else None,
    }
    for name, values in phases.items()
}
timing["postgres"] = {"n": cycles, "cpu_ms_mean": pg_cpu * 1000 / cycles if cycles else None}

profiler = cProfile.Profile()
started = time.perf_counter()
profiler.enable()
batches = drain.drain(destination_id, max_batches=int(params["batches"]), max_seconds=60.0)
profiler.disable()
elapsed = time.perf_counter() - started
text = io.StringIO()
pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(int(params.get("top", 30)))
tottime = io.StringIO()
pstats.Stats(profiler, stream=tottime).sort_stats("tottime").print_stats(25)
print(
    "BENCH_JSON "
    + json.dumps(
        {
            "batches": batches,
            "seconds": elapsed,
            "queries_per_batch": queries,
            "phases": timing,
            "cumulative": text.getvalue(),
            "tottime": tottime.getvalue(),
        }
    )
)
