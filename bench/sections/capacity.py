"""Line 0: the receiver's capacity (two http.client senders, every signature verified)."""

from __future__ import annotations

import json
import os
import subprocess

from bench.common import (
    CpuMeter,
    fmt,
    log,
)
from bench.context import BENCH, PYTHON


def run(bench) -> None:
    bench.rx.reset()
    meter = bench.meter()
    senders = [
        subprocess.Popen(
            [PYTHON, str(BENCH / "clients.py"), "blast", "--url", bench.rx.url("/capacity")]
            + ["--secret", bench.rx.secret, "--seconds", str(bench.config.capacity_seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [json.loads(s.communicate(timeout=120)[0]) for s in senders]
    cores = meter.stop()
    CpuMeter.history.pop()  # a deliberately loaded receiver is not "other" load
    stats = bench.rx.stats()
    rate = sum(o["rate"] for o in outputs)
    receiver_cores = cores.get("receiver", 0.0)
    cpu_per_request = receiver_cores * bench.config.capacity_seconds / max(1, stats["requests"])
    bench.results["capacity"] = {
        "measured_rate": rate,
        "cpu_us_per_request": cpu_per_request * 1e6,
        "capacity_per_core": 1 / cpu_per_request if cpu_per_request else None,
        "processes": bench.rx.processes,
        "bad_signatures": stats["bad_signatures"],
        "cpu": cores,
    }
    log(
        f"receiver: {fmt(rate)} req/s from 2 http.client senders (sender-bound on "
        f"{os.cpu_count()} cores); {cpu_per_request * 1e6:.0f} µs CPU per 1 KiB request → "
        f"≈ {fmt(1 / cpu_per_request if cpu_per_request else None)} req/s per core, "
        f"{bench.rx.processes} processes"
    )
