"""Line 6: server time and query count of portal pages, in-process with Django's test Client.

Each page: warm-up requests, then `runs` x `requests` timed GETs (perf_counter around
client.get), then one more under CaptureQueriesContext for the query count and the slowest
queries. A 404 is reported as "missing" (the page is not built yet).
"""

import json
import os
import statistics
import time

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from portal.middleware import TENANT_SESSION_KEY
from portal.models import User

params = json.loads(os.environ["BENCH_PARAMS"])
client = Client()
client.force_login(User.objects.get(pk=params["admin_id"]))
session = client.session
session[TENANT_SESSION_KEY] = params["tenant_id"]
session.save()


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


results = {}
for label, url in params["urls"]:
    budget = time.monotonic() + float(params.get("page_seconds", 60))
    first = client.get(url)
    entry = {"url": url, "status": first.status_code}
    results[label] = entry
    if first.status_code != 200:
        continue
    for _ in range(int(params.get("warmup", 3))):
        client.get(url)
    runs = []
    for _ in range(int(params["runs"])):
        times = []
        for _ in range(int(params["requests"])):
            if time.monotonic() > budget and len(times) >= 3:
                break
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                entry["status"] = response.status_code
        runs.append({"p50": pct(times, 50), "p95": pct(times, 95), "n": len(times)})
    with CaptureQueriesContext(connection) as captured:
        client.get(url)
    queries = sorted(captured.captured_queries, key=lambda q: -float(q["time"]))
    entry.update(
        p50=statistics.median(r["p50"] for r in runs),
        p95=statistics.median(r["p95"] for r in runs),
        runs=runs,
        queries=len(captured.captured_queries),
        sql_ms=sum(float(q["time"]) for q in captured.captured_queries) * 1000,
        slowest=[
            {"ms": float(q["time"]) * 1000, "sql": " ".join(q["sql"].split())[:400]}
            for q in queries[:3]
        ],
        bytes=len(first.content),
    )
print("BENCH_JSON " + json.dumps(results))
