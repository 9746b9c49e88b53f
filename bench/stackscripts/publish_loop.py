"""Line 3b: event_publish in a loop in one process, timed inside (runs in `manage.py shell`)."""

import json
import os
import time
import uuid

from integrations.events import event_publish
from portal.models import Tenant

params = json.loads(os.environ["BENCH_PARAMS"])
tenant = Tenant.objects.get(slug=params["tenant"])
pad = "x" * 780
for _ in range(20):  # warm up: connection, caches
    event_publish(tenant=tenant, event_type="detection.alert", payload={"warm": True})

count = 0
started = time.perf_counter()
deadline = started + float(params["seconds"])
while time.perf_counter() < deadline and count < 1_000_000:
    event_publish(
        tenant=tenant,
        event_type="detection.alert",
        severity="high",
        event_id=uuid.uuid4(),
        payload={"detection": "Bench detection", "n": count, "pad": pad},
    )
    count += 1
elapsed = time.perf_counter() - started
print("BENCH_JSON " + json.dumps({"published": count, "seconds": elapsed, "rate": count / elapsed}))
