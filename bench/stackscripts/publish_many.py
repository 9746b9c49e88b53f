"""event_publish_many against a raw COPY of the same rows, in one process (`manage.py shell`).

Batches alternate (COPY, service, COPY, ...) so that both see the same machine and the same
table sizes; only the publishing call is timed (building the input dicts is not). Each event
matches the tenant's destinations (2 in the bench layout: `detection.alert`), so a batch of n
events writes n event rows and 2n outbox rows either way.
"""

import json
import os
import time
import uuid

from django.db import connection, transaction
from django.utils import timezone

from integrations.events import event_publish_many
from integrations.models import Destination
from portal.models import Tenant

params = json.loads(os.environ["BENCH_PARAMS"])
tenant = Tenant.objects.get(slug=params["tenant"])
destinations = [
    str(pk)
    for pk in Destination.objects.filter(tenant=tenant, active=True).values_list("id", flat=True)
]
batch = int(params["batch"])
seconds = float(params["seconds"])
max_batches = int(params.get("max_batches", 10_000))
pad = "x" * 780


def items(start: int) -> list[dict]:
    return [
        {
            "event_id": uuid.uuid4(),
            "event_type": "detection.alert",
            "severity": "high",
            "payload": {"detection": "Bench detection", "n": start + n, "pad": pad},
        }
        for n in range(batch)
    ]


def raw_copy(rows: list[dict]) -> None:
    """The floor: the same event and outbox rows with COPY, ids taken from the sequence."""
    now = timezone.now()
    with transaction.atomic():
        connection.ensure_connection()
        with connection.connection.cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence('integrations_event', 'id')) "
                "FROM generate_series(1, %s)",
                [len(rows)],
            )
            ids = [row[0] for row in cursor.fetchall()]
            with cursor.copy(
                "COPY integrations_event (id, tenant_id, event_id, event_type, severity, "
                "event_time, payload, created_at) FROM STDIN"
            ) as copy:
                for pk, row in zip(ids, rows, strict=True):
                    copy.write_row(
                        (
                            pk,
                            tenant.pk,
                            row["event_id"],
                            row["event_type"],
                            row["severity"],
                            now,
                            json.dumps(row["payload"], ensure_ascii=False),
                            now,
                        )
                    )
            with cursor.copy(
                "COPY integrations_deliveryevent (destination_id, event_id) FROM STDIN"
            ) as copy:
                for pk in ids:
                    for destination_id in destinations:
                        copy.write_row((destination_id, pk))


def service(rows: list[dict]) -> None:
    answers = event_publish_many(tenant=tenant, events=rows)
    assert all(answer.created for answer in answers)


for warm in range(3):  # connection, caches, the first plans
    raw_copy(items(-batch * (warm + 1)))
    service(items(-batch * (warm + 1)))

timed = {"copy": 0.0, "service": 0.0}
events = {"copy": 0, "service": 0}
runners = {"copy": raw_copy, "service": service}
done = 0
while min(timed.values()) < seconds and done < max_batches:
    for name, run in runners.items():
        rows = items(done * batch)
        started = time.perf_counter()
        run(rows)
        timed[name] += time.perf_counter() - started
        events[name] += len(rows)
    done += 1

print(
    "BENCH_JSON "
    + json.dumps(
        {
            name: {
                "events": events[name],
                "seconds": timed[name],
                "rate": events[name] / timed[name],
            }
            for name in runners
        }
        | {"destinations": len(destinations), "batch": batch, "batches": done}
    )
)
