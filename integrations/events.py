"""Publishing events into a tenant, and fanning them out to matching destinations.

Everything goes through `event_publish_many`: validate every event first (all or nothing),
then, in one transaction and with a constant number of statements per batch, match the events
against the tenant's destinations once per batch, lock those destinations, insert the events
not stored before (once per (tenant, event_id): publishing is idempotent) together with their
outbox rows, and mark idle destinations due, which wakes delivery once after commit.
`event_publish` is a batch of one.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from integrations.catalogue import EventType, Severity
from integrations.delivery import outbox, queue
from integrations.models import Destination, Event
from portal.models import Tenant

logger = logging.getLogger("integrations.events")

DEADLOCK = "40P01"  # SQLSTATE deadlock_detected
UNIQUE_VIOLATION = "23505"
PUBLISH_ATTEMPTS = 3


class PublishError(ValueError):
    """Bad event input; `errors` maps field name to a message that says how to fix it."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class BatchPublishError(ValueError):
    """Bad events in a batch; `item_errors` maps each bad item's index to its field errors."""

    def __init__(self, item_errors: dict[int, dict[str, str]]):
        super().__init__(
            "; ".join(
                f"item {index}: {field}: {message}"
                for index, errors in sorted(item_errors.items())
                for field, message in errors.items()
            )
        )
        self.item_errors = item_errors


@dataclass
class Published:
    event: Event
    created: bool


# Named tuples rather than frozen dataclasses: a batch builds one of each per event, and a
# frozen dataclass's __init__ costs about twice as much.
class ValidEvent(NamedTuple):
    """An event that passed validation, with its payload already serialized."""

    event_id: uuid.UUID
    key: str  # str(event_id): the batch's dictionaries hash it faster than a UUID
    event_type: str
    severity: str
    event_time: datetime
    payload: dict
    payload_json: str


class PublishedEvent(NamedTuple):
    """One item of a batch: its event id, the stored row, and whether this call stored it."""

    event_id: uuid.UUID
    pk: int
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


EVENT_TYPES = frozenset(EventType.values)  # Choices.values builds a new list on every call
SEVERITIES = frozenset(Severity.values)


# NaN and Infinity are not JSON (PostgreSQL refuses them): ValueError, like a lone surrogate
# does when the text is encoded to count its bytes (UnicodeEncodeError). One encoder:
# json.dumps with options builds a new one on every call.
PAYLOAD_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)


def validate_event(item: Mapping[str, Any]) -> ValidEvent:
    """Check one event (keys event_type, payload, and optional severity, event_id,
    event_time); raise PublishError with every bad field."""
    event_id = item.get("event_id")
    event_type = item.get("event_type")
    severity = item.get("severity") or Severity.INFO
    payload = item.get("payload")
    errors: dict[str, str] = {}
    parsed_id = None
    if isinstance(event_id, uuid.UUID):
        parsed_id = event_id
    elif event_id is None or event_id == "":
        parsed_id = uuid.uuid4()
    else:
        try:
            parsed_id = uuid.UUID(str(event_id))
        except ValueError:
            errors["event_id"] = "Use a UUID, e.g. 3f2504e0-4f89-41d3-9a0c-0305e82c3301."
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        errors["event_type"] = "Unknown event type: choose one of " + ", ".join(EventType.values)
    if not isinstance(severity, str) or severity not in SEVERITIES:
        errors["severity"] = "Use one of " + ", ".join(Severity.values) + "."
    text = ""
    if not isinstance(payload, dict):
        errors["event"] = "The event must be a JSON object."
    else:
        try:
            text = PAYLOAD_ENCODER.encode(payload)
            size = len(text.encode())
        except (TypeError, ValueError):
            errors["event"] = "The event must be JSON-serializable."
        else:
            limit = settings.WEBHOOK_MAX_EVENT_BYTES
            if size > limit:
                errors["event"] = f"The event is {size} bytes; the limit is {limit}."
            # The encoder writes NUL as \u0000: only then walk the payload to be sure.
            elif "\\u0000" in text and _contains_nul(payload):
                errors["event"] = "The event must not contain NUL characters."
    try:
        parsed_time = parse_event_time(item.get("event_time"))
    except PublishError as error:
        errors.update(error.errors)
        parsed_time = None
    if errors:
        raise PublishError(errors)
    # Without errors every value was parsed (each check above adds an error when one was not).
    assert parsed_id is not None and parsed_time is not None and isinstance(payload, dict)
    return ValidEvent(
        parsed_id, str(parsed_id), str(event_type), str(severity), parsed_time, payload, text
    )


def validate_events(items: Sequence[Mapping[str, Any]]) -> list[ValidEvent]:
    """Check every item; raise BatchPublishError naming each bad one by index and field."""
    valid: list[ValidEvent] = []
    item_errors: dict[int, dict[str, str]] = {}
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            item_errors[index] = {"event": "Each item must be a JSON object."}
            continue
        try:
            valid.append(validate_event(item))
        except PublishError as error:
            item_errors[index] = error.errors
    if item_errors:
        raise BatchPublishError(item_errors)
    return valid


# One statement stores a batch and queues it. The batch travels as one JSON array (one
# parameter, bound on the server, parsed once into jsonb: each payload is then taken as it
# is, not parsed again) rather than as parallel arrays that the driver would encode element
# by element. Events stored before are skipped by NOT EXISTS, an index probe, rather than by
# ON CONFLICT DO NOTHING, whose speculative insertion costs about a tenth of the statement; a
# concurrent batch that stores one of them first makes the unique index refuse the statement,
# and _publish_valid runs it again. The outbox rows are those of the events this statement
# inserted (a duplicate was queued by the call that stored it first), one per destination
# whose filters take the event's type and severity (`matches`, decided in Python by
# Destination.matches) and that still exists; their ids follow the events' order, which is
# the order of delivery.
PUBLISH_SQL = """
    WITH stored AS (
        INSERT INTO integrations_event
            (tenant_id, event_id, event_type, severity, event_time, payload, created_at)
        SELECT %(tenant)s, item.event_id, item.event_type, item.severity, item.event_time,
               item.payload, %(created_at)s
        FROM jsonb_to_recordset(%(events)s::jsonb) AS item(
            position integer, event_id uuid, event_type text, severity text,
            event_time timestamptz, payload jsonb)
        WHERE NOT EXISTS (
            SELECT 1 FROM integrations_event e
            WHERE e.tenant_id = %(tenant)s AND e.event_id = item.event_id)
        ORDER BY item.position
        RETURNING id, event_id, event_type, severity
    ), queued AS (
        INSERT INTO integrations_deliveryevent (destination_id, event_id, delivery_id)
        SELECT match.destination_id, stored.id, NULL
        FROM stored
        JOIN unnest(%(types)s::text[], %(severities)s::text[], %(destinations)s::uuid[])
            AS match(event_type, severity, destination_id)
            ON match.event_type = stored.event_type AND match.severity = stored.severity
        JOIN integrations_destination destination ON destination.id = match.destination_id
        ORDER BY stored.id, match.destination_id
    )
    SELECT event_id::text, id FROM stored
"""


def _batch_document(rows: list[ValidEvent]) -> str:
    """The rows as a JSON array; every field but the payload is validated plain text."""
    return (
        "["
        + ",".join(
            f'{{"position":{position},"event_id":"{row.key}",'
            f'"event_type":"{row.event_type}","severity":"{row.severity}",'
            f'"event_time":"{row.event_time.isoformat()}","payload":{row.payload_json}}}'
            for position, row in enumerate(rows)
        )
        + "]"
    )


def event_publish_many(
    *, tenant: Tenant, events: Sequence[Mapping[str, Any]]
) -> list[PublishedEvent]:
    """Store new events once per (tenant, event_id) and queue them for every matching
    destination, in one transaction; one answer per item, in order. All or nothing: a bad
    item raises BatchPublishError before anything is stored."""
    return _publish_valid(tenant, validate_events(events), timezone.now())


def _publish_valid(
    tenant: Tenant, valid: list[ValidEvent], created_at: datetime
) -> list[PublishedEvent]:
    """event_publish_many after validation: the new rows are stamped `created_at`."""
    unique: dict[str, ValidEvent] = {}
    for item in valid:
        unique.setdefault(item.key, item)  # the first of a repeated id wins
    if not unique:
        return []
    rows = list(unique.values())
    document = _batch_document(rows)  # once, and before any lock is taken
    for attempt in range(1, PUBLISH_ATTEMPTS + 1):
        try:
            created, stored = _store(tenant, rows, document, created_at)
            break
        except (OperationalError, IntegrityError) as error:
            # A concurrent batch stored some of these event ids after this one looked (the
            # unique index then refuses ours), or, sharing ids in another order, waits on this
            # one's rows while this one waits on its (PostgreSQL aborts one). Nothing of this
            # attempt was kept: the next one sees what the other committed.
            if attempt == PUBLISH_ATTEMPTS or not _lost_a_race(error):
                raise
            logger.info("publish: a concurrent batch had the same events; attempt %d", attempt + 1)
    answers: list[PublishedEvent] = []
    answered: set[str] = set()
    for item in valid:
        is_new = item.key not in answered and item.key in created
        answered.add(item.key)
        answers.append(PublishedEvent(item.event_id, stored[item.key], is_new))
    return answers


def _lost_a_race(error: Exception) -> bool:
    cause = error.__cause__
    sqlstate = getattr(cause, "sqlstate", "")
    if sqlstate == UNIQUE_VIOLATION:
        return getattr(getattr(cause, "diag", None), "constraint_name", "") == "event_id_per_tenant"
    return sqlstate == DEADLOCK


def _store(
    tenant: Tenant, rows: list[ValidEvent], document: str, created_at: datetime
) -> tuple[dict[str, int], dict[str, int]]:
    """Insert the new events (`rows`, as `document`: _batch_document) stamped `created_at`
    and queue them, in one transaction: (created, stored) map each event id (as text) to its
    row id, created for the rows this call inserted. At most five statements, whatever the
    batch's size, and usually three."""
    matches = _matches(tenant, {(row.event_type, row.severity) for row in rows})
    targets = sorted({d for destinations in matches.values() for d in destinations})
    types, severities, destinations = [], [], []
    for (event_type, severity), matching in matches.items():
        for destination_id in matching:
            types.append(event_type)
            severities.append(severity)
            destinations.append(destination_id)
    with transaction.atomic(), queue.server_binding():
        # Before the events: outbox ids then follow commit order per destination.
        idle = outbox.lock_destinations(targets)
        with connection.cursor() as cursor:
            cursor.execute(
                PUBLISH_SQL,
                {
                    "tenant": tenant.pk,
                    "created_at": created_at,
                    "events": document,
                    "types": types,
                    "severities": severities,
                    "destinations": outbox.array_literal(destinations),
                },
            )
            created: dict[str, int] = dict(cursor.fetchall())
            stored = dict(created)
            if len(created) < len(rows):
                cursor.execute(
                    "SELECT event_id::text, id FROM integrations_event "
                    "WHERE tenant_id = %s AND event_id = ANY(%s::uuid[])",
                    [
                        tenant.pk,
                        outbox.array_literal(r.key for r in rows if r.key not in created),
                    ],
                )
                stored.update(cursor.fetchall())
                # Only the destinations that were given a new event.
                fresh_kinds = {(r.event_type, r.severity) for r in rows if r.key in created}
                targets = sorted({d for kind in fresh_kinds for d in matches[kind]})
        if created:
            outbox.mark_due([d for d in targets if d in idle])
    return created, stored


def event_publish(
    *,
    tenant: Tenant,
    event_type: str,
    payload: dict,
    severity: str = Severity.INFO,
    event_id: Any = None,
    event_time: Any = None,
) -> Published:
    """Publish one event (a batch of one); the stored event, and whether this call stored it."""
    item = {
        "event_type": event_type,
        "payload": payload,
        "severity": severity,
        "event_id": event_id,
        "event_time": event_time,
    }
    try:
        [valid] = validate_events([item])
    except BatchPublishError as error:
        raise PublishError(error.item_errors[0]) from None
    created_at = timezone.now()
    [answer] = _publish_valid(tenant, [valid], created_at)
    if not answer.created:  # published before: the stored event, as it was then
        return Published(Event.objects.for_tenant(tenant).get(pk=answer.pk), False)
    event = Event(
        pk=answer.pk,
        tenant=tenant,
        event_id=valid.event_id,
        event_type=valid.event_type,
        severity=valid.severity,
        event_time=valid.event_time,
        payload=valid.payload,
        created_at=created_at,
    )
    return Published(event, True)


def destination_candidates(tenant: Tenant) -> list[Destination]:
    """Destinations of the tenant, and of its parent (which may include children).

    Paused and disabled destinations are candidates too: their events are held and go out in
    order when they are activated again.
    """
    tenant_ids = [tenant.pk] + ([tenant.parent_id] if tenant.parent_id else [])
    return list(
        Destination.objects.filter(tenant_id__in=tenant_ids)
        .only("id", "tenant_id", "event_types", "min_severity", "include_child_tenants")
        .order_by("id")
    )


def matching_destinations(
    candidates: list[Destination], *, tenant: Tenant, event_type: str, severity: str
) -> list[Destination]:
    """The candidates (see destination_candidates) whose filters take this event."""
    return [
        d
        for d in candidates
        if d.matches(event_type=event_type, severity=severity, from_child=d.tenant_id != tenant.pk)
    ]


def _matches(tenant: Tenant, kinds: set[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
    """For each (event type, severity) of a batch, the ids (as text) of the destinations
    whose filters take it: one query, then Destination.matches per kind, not per event."""
    candidates = destination_candidates(tenant)
    return {
        (event_type, severity): [
            str(d.pk)
            for d in matching_destinations(
                candidates, tenant=tenant, event_type=event_type, severity=severity
            )
        ]
        for event_type, severity in kinds
    }
