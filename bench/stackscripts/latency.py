"""Lines 4 and 5: publish one event at a time with a timestamp; wait for the receiver's ack.

The receiver records (arrival - bench_ts) per event; this script only paces the publishing: the
next event is published after the previous one arrived (or after a bounded wait) plus a short,
random pause, so the system stays idle apart from what the scenario adds.
"""

import http.client
import json
import os
import random
import time

from integrations.events import event_publish
from portal.models import Tenant

params = json.loads(os.environ["BENCH_PARAMS"])
tenant = Tenant.objects.get(slug=params["tenant"])
host, port = "127.0.0.1", int(params["receiver_port"])
wait_limit = float(params.get("wait_seconds", 10.0))
gap = params.get("gap_ms", [20, 60])


conn = http.client.HTTPConnection(host, port, timeout=5)  # kept alive: polling is cheap


def samples() -> int:
    conn.request("GET", "/stats")
    return json.loads(conn.getresponse().read())["samples"]


published = timeouts = 0
deadline = time.monotonic() + float(params.get("max_seconds", 300))
for tag, count in params["runs"]:  # [(tag, count), ...]: one tag per run
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        before = samples()
        event_publish(
            tenant=tenant,
            event_type="detection.alert",
            payload={"bench_ts": time.time(), "bench_tag": tag, "detection": "latency probe"},
        )
        published += 1
        wait_until = time.monotonic() + wait_limit
        while samples() <= before:
            if time.monotonic() > wait_until:
                timeouts += 1
                break
            time.sleep(0.005)
        time.sleep(random.uniform(gap[0], gap[1]) / 1000)
print("BENCH_JSON " + json.dumps({"published": published, "timeouts": timeouts}))
