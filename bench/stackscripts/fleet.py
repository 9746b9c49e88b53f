"""Many tenants and destinations at once (runs in `manage.py shell`); prints their ids.

BENCH_PARAMS: {"receiver": base URL, "secret": S, "groups": [{"prefix": "tp", "tenants": 50,
"per_tenant": 10, "mode": "delay", "arg": 250, "timeout": 30, "first_dest": 100}, ...]}.
Groups may share a prefix (one tenant with several kinds of destinations).
Destination k of a group gets the receiver path /<mode>/<arg>/<first_dest + k>, so the receiver
tracks each one's requests in flight. Made directly (no audit entries, so no `audit_log` events);
they subscribe to `detection.alert` only. Idempotent: existing tenants/destinations are reused.
"""

import json
import os

from integrations.models import Destination
from portal.models import Tenant

params = json.loads(os.environ["BENCH_PARAMS"])
base = params["receiver"].rstrip("/")
out = {"tenants": {}, "destinations": {}, "dest_numbers": {}}
for group in params["groups"]:
    number = group["first_dest"]
    for t in range(group["tenants"]):
        slug = f"{group['prefix']}-{t}"
        tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={"name": slug.title()})
        out["tenants"][slug] = tenant.pk
        existing = {d.name: d for d in Destination.objects.filter(tenant=tenant)}
        new, ids = [], []
        for k in range(group["per_tenant"]):
            name = f"{slug}-{group['mode']}{group['arg']}-{k}"
            destination = existing.get(name)
            if destination is None:
                destination = Destination(
                    tenant=tenant,
                    name=name,
                    endpoint_url=f"{base}/{group['mode']}/{group['arg']}/{number}",
                    event_types=["detection.alert"],
                    timeout_seconds=group.get("timeout", 30),
                )
                destination.set_secret(params["secret"])
                new.append(destination)
            ids.append(destination)
            out["dest_numbers"][str(destination.pk)] = number
            number += 1
        Destination.objects.bulk_create(new)
        out["destinations"].setdefault(slug, []).extend(str(d.pk) for d in ids)
print("BENCH_JSON " + json.dumps(out))
