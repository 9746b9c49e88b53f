"""`make bench`: throughput, latency, fairness, memory and page numbers on a local stack.

    python -m bench.run                      # full: medians of 3 runs, bounded by 30 minutes
    python -m bench.run --quick              # smaller backlogs, 1 run each, about 8 minutes
    python -m bench.run --only bare,drain --runs 1
    python -m bench.run --profile            # also: engine.drain under cProfile (evidence)

(from the repository root; `make bench BENCH_ARGS="--quick"` does the same). Sections, in order
(one module each in bench/sections/; targets a–g are issue 11's):

    capacity    the receiver's own capacity (line 0)
    bare        one process posting with requests.Session (line 1; the base of target e)
    clients     aiohttp vs httpx, concurrency 100 and 500, fast and 250 ms receivers
    drain       (d) batch 100 and (e) batch 1 against fast receivers
    publish     POST /api/v1/events and the event_publish loop
    latency     (f) idle publish → receiver latency, ORM broker (and Redis when present)
    throughput  (a) 500 destinations in 50 tenants, 250 ms receivers, batch 1
    fairness    (b) a fresh tenant's latency next to 50 drip + 200 slow destinations, and
                (c) the longest attempt against a drip receiver
    memory      (g) worker RSS with 500 streams in flight, two backlog sizes
    pages       page timings at a million rows

It starts its own stack (scripts/stack.py: a fresh database on an embedded PostgreSQL in
.data/pg-bench, or on DATABASE_URL's server), a receiver on 127.0.0.1 that verifies every
signature (bench/receiver.py), and worker clusters as needed (`manage.py qcluster`: the engine
is a black box, measured at the receiver and in the Delivery/Attempt rows); everything it starts
is stopped by PID. Engine settings go in the clusters' environment (WEBHOOK_BATCH_SIZE per
section; WEBHOOK_MAX_IN_FLIGHT, WEBHOOK_DELIVERY_LOOPS and Q_WORKERS from this environment pass
through). All traffic goes to 127.0.0.1; every loop is bounded in count and time, and the whole
run by --budget-minutes (sections that would start past it are reported as skipped).

The final table is Markdown (paste it into the README); it is also written, with the raw
numbers, to artifacts/bench/.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from bench.common import log
from bench.context import ROOT, Bench, Receiver, make_config
from bench.report import table
from scripts.devdb import EmbeddedPostgres
from scripts.stack import LocalStack

SECTIONS = [
    "capacity",
    "bare",
    "clients",
    "drain",
    "publish",
    "latency",
    "throughput",
    "fairness",
    "memory",
    "pages",
]


def run_section(bench: Bench, section: str) -> None:
    log(f"--- {section}")
    try:
        importlib.import_module(f"bench.sections.{section}").run(bench)
    except Exception as error:  # one broken section must not lose the others
        log(f"{section} failed: {type(error).__name__}: {str(error)[-1500:]}")
        bench.results.setdefault("errors", {})[section] = str(error)[-1500:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bounded loopback benchmark of the portal.")
    parser.add_argument("--quick", action="store_true", help="smaller backlogs, 1 run each")
    parser.add_argument("--runs", type=int, default=0, help="repetitions (default 3, quick 1)")
    parser.add_argument("--only", default="", help="comma-separated: " + ",".join(SECTIONS))
    parser.add_argument("--budget-minutes", type=float, default=0, help="default 30, quick 12")
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
    )
    parser.add_argument("--profile", action="store_true", help="also cProfile engine.drain")
    parser.add_argument("--out", default=str(ROOT / "artifacts" / "bench"))
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an engine setting for every cluster, e.g. --set WEBHOOK_MAX_IN_FLIGHT=200 "
        "(WEBHOOK_DELIVERY_LOOPS, Q_WORKERS, ...); repeatable",
    )
    args = parser.parse_args(argv)
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            parser.error(f"--set wants NAME=VALUE, not {item!r}")
        os.environ[name] = value  # LocalStack passes the environment to every cluster
    config = make_config(args, SECTIONS)
    unknown = set(config.only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if "redis://127.0.0.1" not in config.redis_url and "redis://localhost" not in config.redis_url:
        parser.error("--redis-url must be on 127.0.0.1")

    log(
        f"bench: {'quick' if config.quick else 'full'}, {config.runs} run(s), sections "
        f"{','.join(config.only)}, budget {config.budget / 60:.0f} min"
    )
    bench = None
    machine = {}
    embedded = None
    if not os.environ.get("DATABASE_URL"):
        # Our own embedded server: LocalStack's .data/pg-stack is shared with the chaos run,
        # which restarts and stops it. LocalStack takes it as DATABASE_URL's server.
        embedded = EmbeddedPostgres(ROOT / ".data" / "pg-bench")
        embedded.start()
        os.environ["DATABASE_URL"] = embedded.url("postgres")
    with Receiver(processes=2, max_seconds=config.budget + 600) as receiver:
        stack = LocalStack(
            "bench", receivers=[receiver], RATE_LIMIT_PUBLISH="100000000/m"
        )  # the per-token publish limit would cap the API measurements
        try:
            log("starting the stack (fresh database, migrate)")
            stack.start()
            bench = Bench(config, stack, receiver, embedded)
            bench.setup()
            machine = bench.machine()
            log(
                f"machine: {machine['nproc']} cores, {machine['cpu']}, {machine['ram_gib']} GiB, "
                f"Python {machine['python']}, PostgreSQL {machine['postgres']}, load "
                f"{machine['load_at_start'][0]:.2f}"
            )
            for section in SECTIONS:
                if section == "pages" and config.profile and bench.remaining() > 60:
                    log("--- profile")  # before pages: pages' 1M rows stay for inspection
                    run_section(bench, "profile")
                if section not in config.only:
                    continue
                if bench.remaining() < 60:
                    log(f"{section}: skipped (time budget)")
                    continue
                run_section(bench, section)
        finally:
            if bench is not None and bench.db is not None:
                bench.db.close()
            stack.stop()
            if embedded is not None:
                embedded.stop()
    results = bench.results if bench else {}
    machine["load_at_end"] = os.getloadavg()
    markdown = table(results, machine) if machine else "(no results)"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(markdown + "\n")
    (out / "results.json").write_text(
        json.dumps({"machine": machine, **results}, indent=1, default=str)
    )
    if "profile" in results:
        for batch, r in results["profile"].items():
            (out / f"profile_batch{batch}.txt").write_text(
                json.dumps(r["phases"], indent=1)
                + "\n\n"
                + "\n".join(f"{q['ms']:8.2f} ms  {q['sql']}" for q in r["queries_per_batch"])
                + "\n\n"
                + r["cumulative"]
                + "\n"
                + r["tottime"]
            )
    print()
    print(markdown)
    print()
    log(
        f"done; load average at end {machine.get('load_at_end', (0,))[0]:.2f}; "
        f"raw numbers in {out}/results.json"
    )
    return 1 if results.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
