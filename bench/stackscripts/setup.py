"""Stack setup (runs in `manage.py shell`): tenants, an admin, destinations; prints their ids.

Destinations are made directly (not through destination_create) so that no audit entry, and so
no `audit_log` event, is published while setting up; they subscribe to `detection.alert` only.
"""

import json
import os

from integrations.models import Destination
from portal.models import Membership, Role, Tenant, User

params = json.loads(os.environ["BENCH_PARAMS"])
base = params["receiver"].rstrip("/")
secret = params["secret"]

admin, _ = User.objects.get_or_create(email=params["admin_email"])
admin.set_password(params["admin_password"])
admin.save()

# tenant slug -> [(destination name, receiver path)]
layout = {
    "bench-drain": [(f"drain-{i}", f"/drain/{i}") for i in range(10)],
    "bench-pub": [(f"pub-{i}", f"/pub/{i}") for i in range(2)],
    "bench-lat": [("lat", "/lat")],
    "bench-slow": [("slow", "/slow/200/a")],
    "bench-fresh": [("fresh", "/fresh")],
    "bench-pages": [(f"pages-{i}", f"/pages/{i}") for i in range(10)],
}
out = {"tenants": {}, "destinations": {}, "admin_id": admin.pk}
for slug, destinations in layout.items():
    tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={"name": slug.title()})
    Membership.objects.get_or_create(user=admin, tenant=tenant, defaults={"role": Role.ADMIN})
    out["tenants"][slug] = tenant.pk
    ids = []
    for name, path in destinations:
        destination = Destination.objects.filter(tenant=tenant, name=name).first()
        if destination is None:
            destination = Destination(
                tenant=tenant,
                name=name,
                endpoint_url=base + path,
                event_types=["detection.alert"],
                timeout_seconds=30,
            )
            destination.set_secret(secret)
            destination.save()
        ids.append(str(destination.pk))
    out["destinations"][slug] = ids

print("BENCH_JSON " + json.dumps(out))
