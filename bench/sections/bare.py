"""Line 1, the base of target (e): one process posting signed 1 KiB batches (requests)."""

from __future__ import annotations

import json
import subprocess

from bench.common import (
    cpu_text,
    fmt,
    log,
    median,
)
from bench.context import BENCH, PYTHON


def run(bench) -> None:
    rates = []
    for run in range(bench.config.runs):
        bench.rx.reset()
        meter = bench.meter()
        output = subprocess.run(
            [PYTHON, str(BENCH / "clients.py"), "bare", "--url", bench.rx.url("/bare")]
            + ["--secret", bench.rx.secret, "--seconds", str(bench.config.bare_seconds)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        cores = meter.stop()
        result = json.loads(output)
        stats = bench.rx.stats()
        if stats["bad_signatures"] or result["errors"]:
            raise RuntimeError(f"bare run had errors: {result} {stats}")
        rates.append(result["rate"])
        log(f"bare run {run + 1}: {fmt(result['rate'])} req/s; {cpu_text(cores)}")
    bench.results["bare"] = {"rate": median(rates), "runs": rates}
