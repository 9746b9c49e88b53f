"""Publishing events into a tenant, and fanning them out to matching destinations."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from integrations.catalogue import EventType, Severity
from integrations.models import Destination, Event
from portal.models import Tenant


class PublishError(ValueError):
    """Bad event input; `errors` maps field name to a message that says how to fix it."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass
class Published:
    event: Event
    created: bool


def parse_event_time(value: Any) -> datetime:
    """ISO 8601 text, Unix milliseconds, or a datetime; naive values are UTC."""
    if value is None or value == "":
        return timezone.now()
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, bool):
        raise PublishError({"event_time": "Use ISO 8601 text or Unix milliseconds."})
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError) as error:
            raise PublishError({"event_time": "Unix milliseconds out of range."}) from error
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return parse_event_time(int(text))
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as error:
            raise PublishError(
                {"event_time": "Use ISO 8601 (2026-11-23T10:00:00Z) or Unix milliseconds."}
            ) from error
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise PublishError({"event_time": "Use ISO 8601 text or Unix milliseconds."})


def _contains_nul(value: Any) -> bool:
    """PostgreSQL's jsonb cannot store U+0000, in keys or in strings."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(k) or _contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_contains_nul(item) for item in value)
    return False


def validate_event(
    *, event_id: Any, event_type: Any, severity: Any, event_time: Any, payload: Any
) -> tuple[uuid.UUID, str, str, datetime, dict]:
    errors: dict[str, str] = {}
    parsed_id = None
    if event_id in (None, ""):
        parsed_id = uuid.uuid4()
    else:
        try:
            parsed_id = uuid.UUID(str(event_id))
        except ValueError:
            errors["event_id"] = "Use a UUID, e.g. 3f2504e0-4f89-41d3-9a0c-0305e82c3301."
    if event_type not in EventType.values:
        errors["event_type"] = "Unknown event type: choose one of " + ", ".join(EventType.values)
    severity = severity or Severity.INFO
    if severity not in Severity.values:
        errors["severity"] = "Use one of " + ", ".join(Severity.values) + "."
    if not isinstance(payload, dict):
        errors["event"] = "The event must be a JSON object."
    else:
        try:
            size = len(json.dumps(payload, ensure_ascii=False).encode())
        except (TypeError, ValueError):
            size = -1
            errors["event"] = "The event must be JSON-serializable."
        if size > settings.WEBHOOK_MAX_EVENT_BYTES:
            errors["event"] = (
                f"The event is {size} bytes; the limit is {settings.WEBHOOK_MAX_EVENT_BYTES}."
            )
        elif size >= 0 and _contains_nul(payload):
            errors["event"] = "The event must not contain NUL characters."
    try:
        parsed_time = parse_event_time(event_time)
    except PublishError as error:
        errors.update(error.errors)
        parsed_time = None
    if errors:
        raise PublishError(errors)
    return parsed_id, event_type, severity, parsed_time, payload


def event_publish(
    *,
    tenant: Tenant,
    event_type: str,
    payload: dict,
    severity: str = Severity.INFO,
    event_id: Any = None,
    event_time: Any = None,
) -> Published:
    """Store the event once per (tenant, event_id) and fan it out in the same transaction."""
    event_uuid, event_type, severity, when, payload = validate_event(
        event_id=event_id,
        event_type=event_type,
        severity=severity,
        event_time=event_time,
        payload=payload,
    )
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO integrations_event
                    (tenant_id, event_id, event_type, severity, event_time, payload, created_at)
                VALUES (%s, %s, %s, %s, %s, %s::jsonb, now())
                ON CONFLICT (tenant_id, event_id) DO NOTHING
                RETURNING id
                """,
                [tenant.pk, event_uuid, event_type, severity, when, json.dumps(payload)],
            )
            row = cursor.fetchone()
        if row is None:
            return Published(Event.objects.get(tenant=tenant, event_id=event_uuid), False)
        event = Event.objects.get(pk=row[0])
        fan_out(event, tenant)
    return Published(event, True)


def matching_destinations(tenant: Tenant, event_type: str, severity: str) -> list[Destination]:
    """Destinations of the tenant, and of its parent when they include child accounts.

    Paused and disabled destinations match too: their events are held and go out in order
    when they are activated again.
    """
    tenant_ids = [tenant.pk] + ([tenant.parent_id] if tenant.parent_id else [])
    candidates = Destination.objects.filter(tenant_id__in=tenant_ids).only(
        "id", "tenant_id", "event_types", "min_severity", "include_child_tenants"
    )
    return [
        d
        for d in candidates
        if d.matches(event_type=event_type, severity=severity, from_child=d.tenant_id != tenant.pk)
    ]


def fan_out(event: Event, tenant: Tenant) -> list:
    """Queue the event for every matching destination and wake the idle ones after commit."""
    from integrations import outbox

    destination_ids = [
        d.pk for d in matching_destinations(tenant, event.event_type, event.severity)
    ]
    if destination_ids:
        outbox.enqueue([event.pk] * len(destination_ids), destination_ids)
    return destination_ids
