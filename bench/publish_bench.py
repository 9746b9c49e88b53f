"""Publishing throughput: batch API, event_publish_many against raw COPY, single-event API.

    .venv/bin/python bench/publish_bench.py              # 3 runs of 8 s per measurement
    .venv/bin/python bench/publish_bench.py --quick      # 1 run of 4 s

Starts its own stack (scripts/stack.py: a fresh database on an embedded PostgreSQL under
.data/pg-publish-bench, or on DATABASE_URL's server) with WEBHOOK_ENQUEUE=false and no worker
cluster, so nothing is delivered while it measures. The bench layout (bench/stackscripts/
setup.py) gives tenant `bench-pub` two destinations subscribed to `detection.alert`: every
published event matches both. Events carry a ~1 KiB payload, as in bench/run.py.

Measured in one run, so the ratios compare like with like on a shared machine:
1. POST /api/v1/events with {"events": [...]} of --batch events, --threads client threads,
   gunicorn -w 2 (target ≥ 5,000 events/s);
2. event_publish_many in one process, batches alternating with a raw COPY of the same rows
   (target ≥ 20,000 events/s and ≥ 50% of COPY);
3. POST /api/v1/events, one event per request, 4 client threads (bench/clients.py api), as in
   bench/run.py (target: no slower than the 156 events/s measured before batches).

Prints a Markdown table; writes it with the raw numbers to artifacts/bench/publish.json.
All traffic stays on 127.0.0.1; every loop is bounded in count and time; everything started
is stopped by PID.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import secrets
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from bench.common import median
from scripts.devdb import EmbeddedPostgres
from scripts.processes import end_group, free_port, wait_until
from scripts.stack import LocalStack

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"

PYTHON = sys.executable
TENANT = "bench-pub"
ADMIN_EMAIL = "bench-admin@example.test"
PAD = "x" * 780  # about 1 KiB per event, as bench/clients.py
ITEM = (
    '{"event_id":"%s","event_type":"detection.alert","severity":"high",'
    '"event":{"detection":"Bench detection","n":%d,"pad":"' + PAD + '"}}'
)
TARGETS = {"api_batch": 5_000, "service": 20_000, "service_vs_copy": 0.5, "api_single": 156}
MAX_REQUESTS = 1_000_000
BENCH_PUBLISH_LIMIT = "100000000/m"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# Measurements ---------------------------------------------------------------------------------
def shell_json(stack: LocalStack, script: str, params: dict, timeout: float) -> dict:
    code = f"import runpy; runpy.run_path({str(BENCH / 'stackscripts' / script)!r})"
    output = stack.shell(code, timeout=timeout, BENCH_PARAMS=json.dumps(params))
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON ") :])
    raise RuntimeError(f"{script} printed no result:\n{output[-2000:]}")


def batch_body(size: int, start: int) -> bytes:
    items = ",".join(ITEM % (uuid.uuid4(), start + n) for n in range(size))
    return ('{"events":[' + items + "]}").encode()


def api_batches(port: int, token: str, *, batch: int, threads: int, seconds: float) -> dict:
    """POST batches from `threads` threads for `seconds`; counts the events answered created."""
    counts = {"events": 0, "requests": 0, "errors": 0, "statuses": {}}
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def run(worker: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        sent = 0
        while time.perf_counter() < deadline and sent < MAX_REQUESTS:
            body = batch_body(batch, (worker * MAX_REQUESTS + sent) * batch)
            sent += 1
            try:
                connection.request("POST", "/api/v1/events", body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                connection.close()
                status, data = None, b""
            with lock:
                counts["requests"] += 1
                if status == 201:
                    counts["events"] += json.loads(data)["created"]
                elif status is None:
                    counts["errors"] += 1
                else:
                    key = str(status)
                    counts["statuses"][key] = counts["statuses"].get(key, 0) + 1
        connection.close()

    started = time.perf_counter()
    workers = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=seconds + 120)
    elapsed = time.perf_counter() - started
    return {**counts, "seconds": elapsed, "rate": counts["events"] / elapsed}


def api_single(port: int, token: str, *, seconds: float) -> dict:
    """One event per request, 4 threads: bench/clients.py's `api` load, as bench/run.py runs it."""
    output = subprocess.run(
        [PYTHON, str(BENCH / "clients.py"), "api"]
        + ["--url", f"http://127.0.0.1:{port}/api/v1/events", "--token", token]
        + ["--seconds", str(seconds), "--threads", "4"],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=True,
    ).stdout
    return json.loads(output)


def http_status(port: int, method: str, path: str, body=None, headers=None) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        connection.close()


# Report ---------------------------------------------------------------------------------------
def fmt(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def table(results: dict) -> str:
    service, copy = results["service"], results["copy"]
    ratios = [s / c for s, c in zip(service["runs"], copy["runs"], strict=True) if c]
    rows = [
        (
            f"API, batches of {results['batch']}, {results['threads']} client threads, "
            "gunicorn -w 2 (events/s)",
            results["api_batch"]["runs"],
            "api_batch",
        ),
        (
            f"event_publish_many, 1 process, batches of {results['service_batch']}, each "
            f"event → {results['destinations']} destinations (events/s)",
            service["runs"],
            "service",
        ),
        ("raw COPY of the same rows, same run (events/s)", copy["runs"], None),
        ("event_publish_many ÷ COPY", ratios, "service_vs_copy"),
        (
            "API, one event per request, 4 client threads, gunicorn -w 2 (events/s)",
            results["api_single"]["runs"],
            "api_single",
        ),
    ]
    lines = [
        "| measurement | median | runs | target | median ÷ target | |",
        "|---|---:|---|---:|---:|---|",
    ]
    for label, runs, target_key in rows:
        digits = 2 if target_key == "service_vs_copy" else 0
        value = median(runs)
        runs_text = ", ".join(fmt(r, digits) for r in runs)
        target = TARGETS.get(target_key) if target_key else None
        if target is None or value is None:
            lines.append(f"| {label} | {fmt(value, digits)} | {runs_text} | | | |")
            continue
        ok = "✓" if value >= target else "✗"
        lines.append(
            f"| {label} | {fmt(value, digits)} | {runs_text} | ≥ {fmt(target, digits)} | "
            f"{value / target:.2f} | {ok} |"
        )
    machine = results["machine"]
    lines.append("")
    lines.append(
        f"{machine['cores']} cores, Python {machine['python']}; load average "
        f"{machine['load_start'][0]:.2f} at start, {machine['load_end'][0]:.2f} at end "
        "(a shared machine: other work runs beside the benchmark)."
    )
    return "\n".join(lines)


# Main -----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Publishing throughput (loopback only).")
    parser.add_argument("--quick", action="store_true", help="1 run of 4 s per measurement")
    parser.add_argument("--runs", type=int, default=0, help="repetitions (default 3, quick 1)")
    parser.add_argument("--seconds", type=float, default=0, help="per measurement (8, quick 4)")
    parser.add_argument("--batch", type=int, default=500, help="events per API batch")
    parser.add_argument("--threads", type=int, default=2, help="client threads for batches")
    parser.add_argument("--service-batch", type=int, default=500, help="events per service call")
    parser.add_argument("--out", default=str(ROOT / "artifacts" / "bench" / "publish.json"))
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 3)
    seconds = args.seconds or (4.0 if args.quick else 8.0)
    if not (1 <= args.batch <= 1000 and 1 <= args.service_batch <= 1000):
        parser.error("batch sizes must be between 1 and 1000")
    if not (1 <= args.threads <= 16 and 1 <= runs <= 10 and 0 < seconds <= 120):
        parser.error("--threads 1-16, --runs 1-10, --seconds up to 120")

    results: dict = {
        "batch": args.batch,
        "threads": args.threads,
        "service_batch": args.service_batch,
        "seconds": seconds,
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_start": os.getloadavg(),
        },
    }
    embedded = None
    if not os.environ.get("DATABASE_URL"):
        embedded = EmbeddedPostgres(ROOT / ".data" / "pg-publish-bench")
        embedded.start()
        os.environ["DATABASE_URL"] = embedded.url("postgres")
    # No worker cluster and no wake-up tasks: nothing is delivered during the measurement. The
    # per-token publish limit (600/m by default) is lifted: this measures intake, not the limit.
    stack = LocalStack(
        "publish_bench",
        private_targets=["127.0.0.1:9"],
        WEBHOOK_ENQUEUE="false",
        RATE_LIMIT_PUBLISH=BENCH_PUBLISH_LIMIT,
    )
    server = None
    try:
        log("starting the stack (fresh database, migrate)")
        stack.start()
        layout = shell_json(
            stack,
            "setup.py",
            {
                "receiver": "http://127.0.0.1:9",  # never contacted: nothing is delivered
                "secret": secrets.token_hex(16),
                "admin_email": ADMIN_EMAIL,
                "admin_password": "bench-" + secrets.token_hex(8),
            },
            timeout=300,
        )
        results["destinations"] = len(layout["destinations"][TENANT])
        token = stack.manage(
            "create_api_token", "--email", ADMIN_EMAIL, "--tenant", TENANT, "--name", "bench"
        ).strip()
        port = free_port()
        server = stack.spawn(
            [str(Path(PYTHON).parent / "gunicorn"), "portal.wsgi", "-w", "2"]
            + ["-b", f"127.0.0.1:{port}", "--chdir", str(ROOT), "--timeout", "60"]
        )
        if not wait_until(lambda: http_status(port, "GET", "/healthz") == 200, 60, interval=0.25):
            raise RuntimeError("the portal did not start")
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        for _ in range(3):  # warm up both workers
            status = http_status(port, "POST", "/api/v1/events", batch_body(50, 0), auth)
            if status != 201:
                raise RuntimeError(f"POST /api/v1/events with a batch answered {status}")

        for key in ("api_batch", "service", "copy", "api_single"):
            results[key] = {"runs": [], "detail": []}
        for run in range(runs):
            result = api_batches(
                port, token, batch=args.batch, threads=args.threads, seconds=seconds
            )
            results["api_batch"]["runs"].append(result["rate"])
            results["api_batch"]["detail"].append(result)
            log(
                f"run {run + 1}: API batches {result['rate']:,.0f} events/s "
                f"({result['requests']} requests, other statuses {result['statuses']}, "
                f"errors {result['errors']})"
            )
            result = shell_json(
                stack,
                "publish_many.py",
                {"tenant": TENANT, "batch": args.service_batch, "seconds": seconds},
                timeout=seconds * 3 + 300,
            )
            for key in ("service", "copy"):
                results[key]["runs"].append(result[key]["rate"])
                results[key]["detail"].append(result[key])
            log(
                f"run {run + 1}: event_publish_many {result['service']['rate']:,.0f} events/s, "
                f"COPY {result['copy']['rate']:,.0f} events/s "
                f"({result['service']['rate'] / result['copy']['rate']:.0%})"
            )
            result = api_single(port, token, seconds=seconds)
            results["api_single"]["runs"].append(result["rate"])
            results["api_single"]["detail"].append(result)
            log(f"run {run + 1}: API single events {result['rate']:,.0f} events/s")
        for key in ("api_batch", "service", "copy", "api_single"):
            results[key]["rate"] = median(results[key]["runs"])
    finally:
        if server is not None:
            end_group(server)
            if server in stack.children:
                stack.children.remove(server)
        stack.stop()
        if embedded is not None:
            embedded.stop()
    results["machine"]["load_end"] = os.getloadavg()
    markdown = table(results)
    results["markdown"] = markdown
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(markdown)
    log(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
