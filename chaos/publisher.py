"""The chaos run's publisher: runs inside `manage.py shell`, one transaction per event.

Event ids are derived from the seed, so the runner knows exactly which events it expects and a
publish retried after a database error (the commit may or may not have happened) stays
idempotent: `event_publish` stores an event once per (tenant, event_id).
"""

from __future__ import annotations

import random
import sys
import time
import uuid

EVENT_TYPES = ("detection.alert", "inbound_protection.malicious", "ai_response.report_phishing")
SEVERITIES = ("low", "medium", "high", "critical")
RETRY_PAUSE = 0.5
MAX_DB_WAIT = 120.0  # give up on one event after this long without a database


def event_ids(seed: int, count: int) -> list[str]:
    """The ids of the events a run with this seed publishes, in publishing order."""
    rng = random.Random(f"chaos-events-{seed}")
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def _with_db_retries(what: str, action, stats: dict):
    """Run action(); on a lost connection reconnect and retry, for MAX_DB_WAIT at most."""
    from django.db import InterfaceError, OperationalError, connection

    deadline = time.monotonic() + MAX_DB_WAIT
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return action()
        except (OperationalError, InterfaceError) as error:
            last_error = error
            stats["retries"] += 1
            if stats["retries"] == 1 or stats["retries"] % 20 == 0:
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
                print(f"publisher: database error ({first_line}); retrying", flush=True)
            try:
                connection.close()
            except Exception:  # the connection is already gone: nothing to close
                stats["close_errors"] += 1
            time.sleep(RETRY_PAUSE)
    raise SystemExit(f"publisher: gave up on {what} after {MAX_DB_WAIT:.0f}s: {last_error}")


def publish(
    *, tenant_slug: str, count: int, seed: int, seconds: float, part: int = 0, parts: int = 1
) -> None:
    """Publish events part, part + parts, ... of the run's `count`, spread over `seconds`.

    Several publishers (parts) run at once; each publishes its share in order, so each
    publisher's order is an order every destination must see."""
    from integrations.events import event_publish
    from portal.models import Tenant

    stats = {"retries": 0, "close_errors": 0, "existing": 0}
    tenant = _with_db_retries("the tenant", lambda: Tenant.objects.get(slug=tenant_slug), stats)
    started = time.monotonic()
    for index, event_id in enumerate(event_ids(seed, count)):
        if index % parts != part:
            continue
        delay = started + seconds * index / max(count, 1) - time.monotonic()
        if delay > 0:
            time.sleep(delay)

        def one(index=index, event_id=event_id):
            return event_publish(
                tenant=tenant,
                event_type=EVENT_TYPES[index % len(EVENT_TYPES)],
                severity=SEVERITIES[index % len(SEVERITIES)],
                event_id=event_id,
                payload={"n": index, "seed": seed, "source": "chaos"},
            )

        published = _with_db_retries(f"event {index}", one, stats)
        if not published.created:
            stats["existing"] += 1  # committed before the connection broke: not a new event
    elapsed = time.monotonic() - started
    print(
        f"publisher {part + 1}/{parts}: {len(range(part, count, parts))} events in {elapsed:.1f}s "
        f"({stats['retries']} database retries, {stats['existing']} found already stored)",
        flush=True,
    )
    sys.stdout.flush()
