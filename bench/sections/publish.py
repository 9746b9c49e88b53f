"""Publishing: POST /api/v1/events under gunicorn and the event_publish loop."""

from __future__ import annotations

import http.client
import json
import subprocess
from contextlib import suppress
from pathlib import Path

from bench.common import (
    cpu_text,
    fmt,
    log,
    median,
)
from bench.context import ADMIN_EMAIL, BENCH, PYTHON, ROOT
from scripts.processes import end_group, free_port, wait_until


def run(bench) -> None:
    bench.reset_delivery_state()
    out = {"api": publish_api(bench), "service": None}
    rates = []
    for run in range(bench.config.runs):
        result = bench.shell_json(
            "publish_loop.py",
            {"tenant": "bench-pub", "seconds": bench.config.publish_seconds},
            timeout=bench.config.publish_seconds + 120,
        )
        rates.append(result["rate"])
        log(f"publish via event_publish run {run + 1}: {fmt(result['rate'])} events/s")
    out["service"] = {"rate": median(rates), "runs": rates}
    bench.results["publish"] = out


def publish_api(bench) -> dict:
    try:
        token = bench.stack.manage(
            "create_api_token",
            "--email",
            ADMIN_EMAIL,
            "--tenant",
            "bench-pub",
            "--name",
            "bench",
        ).strip()
    except RuntimeError as error:
        log(f"publish via API: n/a (create_api_token failed: {str(error)[-200:]!r})")
        return {"available": False, "reason": "create_api_token failed"}
    port = free_port()
    gunicorn = Path(PYTHON).parent / "gunicorn"
    server = bench.stack.spawn(
        [str(gunicorn), "portal.wsgi", "-w", "2", "-b", f"127.0.0.1:{port}"]
        + ["--chdir", str(ROOT), "--timeout", "60"]
    )
    try:
        if not wait_until(lambda: _http_status(port, "GET", "/healthz") == 200, 30, interval=0.25):
            return {"available": False, "reason": "the portal did not start"}
        status = _http_status(
            port,
            "POST",
            "/api/v1/events",
            json.dumps({"event_type": "detection.alert", "event": {"probe": True}}),
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        if status != 201:
            log(f"publish via API: n/a (API not available: POST /api/v1/events → {status})")
            return {"available": False, "reason": f"POST /api/v1/events answered {status}"}
        rates, runs = [], []
        for run in range(bench.config.runs):
            meter = bench.meter(portal=server)
            output = subprocess.run(
                [PYTHON, str(BENCH / "clients.py"), "api"]
                + ["--url", f"http://127.0.0.1:{port}/api/v1/events", "--token", token]
                + ["--seconds", str(bench.config.publish_seconds), "--threads", "4"],
                capture_output=True,
                text=True,
                timeout=bench.config.publish_seconds + 120,
                check=True,
            ).stdout
            cores = meter.stop()
            result = json.loads(output)
            runs.append(result)
            rates.append(result["rate"])
            log(
                f"publish via API run {run + 1}: {fmt(result['rate'])} events/s "
                f"(201: {result['created']}, other: {result['statuses']}, "
                f"errors: {result['errors']}); {cpu_text(cores)}"
            )
        return {"available": True, "rate": median(rates), "runs": runs}
    finally:
        end_group(server)
        with suppress(ValueError):
            bench.stack.children.remove(server)


def _http_status(port, method, path, body=None, headers=None) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        conn.close()
