"""The final Markdown table: every figure with its target and its ratio to the target.

Ratio = measured / target. For a floor (≥) above 1 is good; for a ceiling (≤) at most 1 is good.
"""

from __future__ import annotations

import math
import os
import statistics

from bench.common import CpuMeter, fmt, mark
from bench.context import default_workers

STREAMS_IN_FLIGHT = 450  # (g) counts only if the receiver saw ≥ 90% of the 500 streams at once


def ratio(value: float | None, target: float) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "∞"
    return f"{value / target:.2f}×"


def ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "∞" if math.isinf(value) else f"{value:,.1f} ms"


def machine_line(m: dict) -> str:
    return (
        f"Machine: {m['nproc']} cores, {m['cpu']}, {m['ram_gib']} GiB RAM; Python {m['python']}, "
        f"Django {m['django']}, PostgreSQL {m['postgres']} ({m['postgres_where']}; "
        + ", ".join(f"{k}={v}" for k, v in m["pg_settings"].items())
        + f"); load average at start {m['load_at_start'][0]:.2f}; commit {m['commit']}; "
        f"{m['mode']} mode, median of {m['runs']} run(s)."
    )


def table(results: dict, machine: dict) -> str:
    lines = [machine_line(machine), ""]
    lines.append("| # | Measurement | Result | Target | Ratio | |")
    lines.append("|---|---|---|---|---|---|")

    def row(n, what, result, target="", rat="", ok=None):
        lines.append(f"| {n} | {what} | {result} | {target} | {rat} | {mark(ok)} |")

    bare = results.get("bare", {}).get("rate")
    cap = results.get("capacity")
    if cap:
        busiest = max((c.get("receiver", 0.0) for c in CpuMeter.history), default=None)
        row(
            0,
            f"Receiver capacity ({cap['processes']} processes, every signature verified)",
            f"{fmt(cap['measured_rate'])} req/s measured (sender-bound); "
            f"{cap['cpu_us_per_request']:.0f} µs CPU/req ≈ {fmt(cap['capacity_per_core'])} req/s "
            "per core"
            + (f"; used ≤ {busiest:.2f} cores in any line below" if busiest is not None else ""),
            "≥ 1.5× line 1",
            ratio(cap["measured_rate"], 1.5 * bare) if bare else "",
            None if bare is None else cap["measured_rate"] >= 1.5 * bare,
        )
    if bare is not None:
        row(1, "Bare limit: 1 process, requests.Session, signed 1 KiB POSTs", f"{fmt(bare)} req/s")

    clients = results.get("clients")
    if clients:
        for key, entry in clients["combinations"].items():
            a, h = entry["aiohttp"], entry["httpx"]
            cells = []
            for name, r in (("aiohttp", a), ("httpx", h)):
                cpu = r["cpu_s_per_1000"]
                cells.append(
                    f"{name} {fmt(r['rate'])} req/s, "
                    + (f"{cpu:.3f} CPU s/1k" if cpu is not None else "n/a")
                    + (f", {r['errors']} errors" if r["errors"] else "")
                )
            faster = ""
            if a["cpu_s_per_1000"] and h["cpu_s_per_1000"]:
                faster = f"httpx/aiohttp CPU {h['cpu_s_per_1000'] / a['cpu_s_per_1000']:.2f}×"
            target, concurrency = key.rsplit(" c", 1)
            row(
                "C",
                f"Client: {concurrency} concurrent POSTs, {target} receiver",
                "; ".join(cells),
                "",
                faster,
            )
        row("C", "Client verdict", clients["verdict"]["text"])

    t = results.get("throughput")
    if t:
        rate = t["posts_per_s"]
        row(
            "a",
            f"{t['destinations']} destinations in {t['tenants']} tenants, receivers answer after "
            f"250 ms, batch 1",
            f"{fmt(rate, 1)} POSTs/s (Attempt rows {fmt(t['db_posts_per_s'], 1)}); ≤ "
            f"{t['max_in_flight']} in flight; {t['overlaps']} overlaps"
            + ("" if t["complete"] else f"; {fmt(t['delivered'])}/{fmt(t['backlog'])} in time"),
            "≥ 1,000 POSTs/s",
            ratio(rate, 1000),
            None if rate is None else rate >= 1000 and t["overlaps"] == 0,
        )

    f = results.get("fairness")
    if f:
        row(
            "b",
            f"Fresh tenant publish → receiver while another has {f['noisy_drip']} drip + "
            f"{f['noisy_slow']} slow (3 s) destinations with backlogs",
            f"p95 {ms(f['p95'])} (p50 {ms(f['p50'])}, p99 {ms(f['p99'])}; "
            f"{f['arrived']}/{f['published']} arrived; ∞ = never arrived)",
            "p95 ≤ 1 s",
            ratio(f["p95"], 1000),
            None if f["p95"] is None else f["p95"] <= 1000,
        )
    d = results.get("drip")
    if d:
        worst = max(
            (v for v in (d["receiver_max_s"], d["db_max_s"]) if v is not None), default=None
        )
        row(
            "c",
            f"Longest attempt against a drip receiver (timeout {d['timeout']} s)",
            f"receiver {fmt(d['receiver_max_s'], 1)} s ({d['receiver_open']} still open), "
            f"Attempt rows {fmt(d['db_max_s'], 1)} s ({d['db_attempts']} recorded, "
            f"{d['unrecorded']} unrecorded)",
            f"≤ {d['limit_s']} s",
            ratio(worst, d["limit_s"]),
            None if worst is None else worst <= d["limit_s"] and d["unrecorded"] == 0,
        )

    drain = results.get("drain", {})
    for batch in (100, 1):
        r = drain.get(batch) or drain.get(str(batch))
        if not r:
            continue
        eps, pps = r["events_per_s"], r["posts_per_s"]
        partial = [x for x in r["runs"] if not x["complete"]]
        note = ""
        if partial:
            x = partial[0]
            note = (
                f" (time-bounded: {fmt(x['delivered_events'])} of {fmt(x['backlog'])} in "
                f"{x['wall_seconds']:.0f}s)"
            )
        backlog = fmt(r["runs"][0]["backlog"]) if r["runs"] else "?"
        what = (
            f"Fast receivers, drain {backlog} events over 10 destinations, "
            f"{default_workers()} workers, batch {batch}"
        )
        if batch == 100:
            row(
                "d",
                what,
                f"{fmt(eps)} events/s, {fmt(pps, 1)} POSTs/s{note}",
                "≥ 10,000 events/s",
                ratio(eps, 10_000),
                None if eps is None else eps >= 10_000,
            )
        else:
            floor = 0.4 * bare if bare else None
            row(
                "e",
                what,
                f"{fmt(pps, 1)} POSTs/s"
                + (f" ({pps / bare:.2f}× line 1)" if bare and pps else "")
                + note,
                f"≥ 40% of line 1 ({fmt(floor)} POSTs/s)" if floor else "≥ 40% of line 1",
                ratio(pps, floor) if floor else "n/a",
                None if not (floor and pps) else pps >= floor,
            )

    lat = results.get("latency", {})
    r = lat.get("orm")
    if r:
        ok = None if r["p50"] is None else r["p50"] <= 20 and r["p99"] <= 100
        row(
            "f",
            "Idle latency publish → receiver, ORM broker",
            f"p50 {fmt(r['p50'], 1)} / p95 {fmt(r['p95'], 1)} / p99 {fmt(r['p99'], 1)} ms",
            "p50 ≤ 20 ms, p99 ≤ 100 ms",
            f"{ratio(r['p50'], 20)} / {ratio(r['p99'], 100)}",
            ok,
        )
    r = lat.get("redis")
    if r:
        if r.get("available") is False:
            row("f'", "Idle latency, Redis broker", f"n/a ({r['reason'][:60]})")
        else:
            row(
                "f'",
                "Idle latency publish → receiver, Redis broker (information)",
                f"p50 {fmt(r['p50'], 1)} / p95 {fmt(r['p95'], 1)} / p99 {fmt(r['p99'], 1)} ms",
            )

    mem = results.get("memory")
    if mem:
        sizes = sorted(int(k) for k in mem)
        entries = [mem.get(s) or mem.get(str(s)) for s in sizes]
        peaks = [e["max_mb"] for e in entries]
        text = ", ".join(
            f"{fmt(e['backlog'])} events: {fmt(e['max_mb'], 1)} MB (≤ {e['max_in_flight']} in "
            "flight" + ("" if e["complete"] else ", time-bounded") + ")"
            for e in entries
        )
        flat = None
        if len(peaks) == 2 and None not in peaks:
            flat = peaks[1] <= peaks[0] * 1.10 + 5
            text += "; flat" if flat else "; grows"
        top = max((p for p in peaks if p is not None), default=None)
        in_flight = min((e["max_in_flight"] for e in entries), default=0)
        row(
            "g",
            "Worker peak RSS, 500 destinations (5 s receivers), batch 100",
            text,
            f"≤ 150 MB, flat, with ≥ {STREAMS_IN_FLIGHT} requests in flight",
            ratio(top, 150),
            None
            if top is None
            else top <= 150 and flat is not False and in_flight >= STREAMS_IN_FLIGHT,
        )

    pub = results.get("publish")
    if pub:
        api = pub["api"]
        row(
            "P1",
            "Publish: POST /api/v1/events (gunicorn -w 2, 4 client threads)",
            f"{fmt(api['rate'])} events/s" if api.get("available") else "n/a (API not available)",
        )
        if pub.get("service"):
            row(
                "P2",
                "Publish: event_publish loop, 1 process",
                f"{fmt(pub['service']['rate'])} events/s",
            )

    pages = results.get("pages")
    if pages:
        for i, (label, e) in enumerate(pages["pages"].items()):
            n = f"6{'abcdef'[i]}"
            if e["status"] == 404:
                row(n, label, "n/a (404: page not built yet)", "p95 ≤ 100 ms")
                continue
            if e["status"] != 200:
                row(n, label, f"HTTP {e['status']}", "p95 ≤ 100 ms", "", False)
                continue
            same = e["queries"] == e.get("queries_small")
            row(
                n,
                f"{label} at {fmt(pages['rows'])} rows",
                f"p50 {fmt(e['p50'], 1)} / p95 {fmt(e['p95'], 1)} ms, {e['queries']} queries "
                f"({e.get('queries_small')} at {fmt(pages['small_rows'])} rows)",
                "p95 ≤ 100 ms, queries flat",
                ratio(e["p95"], 100),
                e["p95"] <= 100 and same,
            )

    errors = results.get("errors")
    if errors:
        lines.append("")
        for section, text in errors.items():
            lines.append(f"Section {section} failed: {text.splitlines()[-1] if text else ''}")
    others = [c["other"] for c in CpuMeter.history]
    if others:
        lines.append("")
        lines.append(
            f"CPU used by other processes on the machine during the measurements: median "
            f"{statistics.median(others):.2f}, max {max(others):.2f} of {os.cpu_count()} cores "
            "(0 on a quiet machine; the per-run log lines break CPU down by process group)."
        )
    return "\n".join(lines)
