"""The delivery engine: plain functions over the database.

The database is the source of truth. Each destination is a stream: its waiting events
(DeliveryEvent rows without a delivery) go out in event order, one batch at a time, and the
stream advances only when a batch is acknowledged (2xx) or has failed permanently. A worker
takes a destination with `SELECT ... FOR UPDATE SKIP LOCKED` and a lease, sends outside any
transaction, and records the outcome in a short one. Tasks only wake workers; the sweep finds
due work and expired leases, so a lost task or a killed worker only delays delivery.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from integrations.models import (
    OPEN_STATES,
    Attempt,
    Delivery,
    DeliveryState,
    Destination,
    ErrorKind,
    Health,
)
from integrations.sender import Outcome, get_sender
from integrations.signing import event_envelope, prepare, serialize_body

logger = logging.getLogger("integrations.engine")

SWEEP_LOCK = 0x5EE9
DESTINATION_FIELDS_RECORDED = [
    "last_attempt_at",
    "last_status_code",
    "last_error_kind",
    "last_outcome_ok",
    "last_success_at",
    "failing_since",
    "retrying",
    "health_alerted",
    "disabled_at",
    "disabled_reason",
    "next_due_at",
    "lease_until",
    "lease_owner",
]


# Queueing ---------------------------------------------------------------------------------
def enqueue_items(event_pk: int, destination_ids: list) -> None:
    """Add an event to destinations' outboxes; wake the ones that were idle, after commit."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO integrations_deliveryevent (destination_id, event_id, delivery_id)
            SELECT d, %s, NULL FROM unnest(%s::uuid[]) AS d
            ON CONFLICT DO NOTHING
            """,
            [event_pk, destination_ids],
        )
        # Lock in id order (no deadlocks between publishers); a worker that is finishing
        # with this destination waits for us, or we see its "idle" and mark it due.
        cursor.execute(
            """
            SELECT id FROM integrations_destination
            WHERE id = ANY(%s::uuid[]) AND next_due_at IS NULL
            ORDER BY id FOR UPDATE
            """,
            [destination_ids],
        )
        idle = [row[0] for row in cursor.fetchall()]
        if idle:
            cursor.execute(
                "UPDATE integrations_destination SET next_due_at = now() "
                "WHERE id = ANY(%s::uuid[]) AND next_due_at IS NULL",
                [idle],
            )
    for destination_id in idle:
        transaction.on_commit(partial(wake, destination_id))


def mark_due_now(destination_id) -> None:
    """Make a destination's waiting work due now and wake a worker once committed."""
    now = timezone.now()
    Destination.objects.filter(pk=destination_id, active=True).filter(
        Q(next_due_at__isnull=True) | Q(next_due_at__gt=now)
    ).update(next_due_at=now)
    transaction.on_commit(partial(wake, destination_id))


def wake(destination_id) -> None:
    """Queue a task that drains the destination (the database stays the source of truth)."""
    from integrations.tasks import enqueue_drain

    try:
        enqueue_drain(destination_id)
    except Exception:  # a lost wake-up only delays delivery until the next sweep
        logger.warning("could not queue a drain task", exc_info=True)


# Claim ------------------------------------------------------------------------------------
@dataclass
class Claim:
    destination: Destination
    delivery: Delivery
    envelopes: list[dict]
    lease_owner: str


def _load_envelopes(delivery_id: int) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT e.event_id, e.event_type, e.event_time, e.severity, t.slug, e.payload
            FROM integrations_deliveryevent de
            JOIN integrations_event e ON e.id = de.event_id
            JOIN portal_tenant t ON t.id = e.tenant_id
            WHERE de.delivery_id = %s
            ORDER BY de.event_id
            """,
            [delivery_id],
        )
        return [_envelope(row) for row in cursor.fetchall()]


def _envelope(row) -> dict:
    event_id, event_type, event_time, severity, slug, payload = row
    if isinstance(payload, str):  # psycopg hands jsonb back parsed; be safe either way
        import json

        payload = json.loads(payload)
    return event_envelope(
        event_id=event_id,
        event_type=event_type,
        event_time=event_time,
        severity=severity,
        tenant_slug=slug,
        payload=payload,
    )


def _new_batch(destination: Destination, now) -> tuple[Delivery | None, list[dict]]:
    """The next batch of waiting events, in event order, ≤ batch size and ≤ max bytes."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT de.id, e.event_id, e.event_type, e.event_time, e.severity, t.slug, e.payload
            FROM (
                -- the batch's items first, on the partial index; then their events
                SELECT id, event_id FROM integrations_deliveryevent
                WHERE destination_id = %s AND delivery_id IS NULL
                ORDER BY event_id LIMIT %s
            ) de
            JOIN integrations_event e ON e.id = de.event_id
            JOIN portal_tenant t ON t.id = e.tenant_id
            ORDER BY de.event_id
            """,
            [destination.pk, settings.WEBHOOK_BATCH_SIZE],
        )
        rows = cursor.fetchall()
    if not rows:
        return None, []
    item_ids: list[int] = []
    envelopes: list[dict] = []
    size = 20
    for row in rows:
        envelope = _envelope(row[1:])
        approx = len(repr(envelope["event"])) + 200
        if envelopes and size + approx > settings.WEBHOOK_BATCH_MAX_BYTES:
            break
        size += approx
        item_ids.append(row[0])
        envelopes.append(envelope)
    delivery = Delivery.objects.create(
        tenant_id=destination.tenant_id,
        destination=destination,
        state=DeliveryState.DELIVERING,
        event_count=len(envelopes),
        attempt_count=0,
        attempt_limit=settings.WEBHOOK_MAX_ATTEMPTS,
        created_at=now,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE integrations_deliveryevent SET delivery_id = %s WHERE id = ANY(%s)",
            [delivery.pk, item_ids],
        )
    return delivery, envelopes


def claim_batch(destination_id) -> Claim | None:
    """Take the destination's next due batch under a lease, or None when nothing is due."""
    now = timezone.now()
    with transaction.atomic():
        destination = (
            Destination.objects.select_for_update(skip_locked=True)
            .filter(pk=destination_id, active=True, disabled_at__isnull=True, next_due_at__lte=now)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .first()
        )
        if destination is None:
            return None
        delivery = (
            Delivery.objects.filter(destination=destination, state__in=OPEN_STATES, is_test=False)
            .order_by("id")
            .first()
        )
        if delivery is not None:
            if delivery.state == DeliveryState.RETRYING and delivery.next_attempt_at > now:
                destination.next_due_at = delivery.next_attempt_at
                destination.save(update_fields=["next_due_at"])
                return None
            envelopes = _load_envelopes(delivery.pk)
        else:
            delivery, envelopes = _new_batch(destination, now)
            if delivery is None:
                destination.next_due_at = None
                destination.save(update_fields=["next_due_at"])
                return None
        owner = uuid.uuid4().hex
        delivery.state = DeliveryState.DELIVERING
        delivery.attempt_count += 1
        delivery.next_attempt_at = None
        delivery.save(update_fields=["state", "attempt_count", "next_attempt_at"])
        destination.lease_until = now + timedelta(
            seconds=destination.timeout_seconds + settings.WEBHOOK_LEASE_MARGIN
        )
        destination.lease_owner = owner
        destination.save(update_fields=["lease_until", "lease_owner"])
    return Claim(destination, delivery, envelopes, owner)


# Send -------------------------------------------------------------------------------------
def send_claim(claim: Claim) -> Outcome:
    """Serialize once, sign, honour the rate limit, and send; never inside a transaction."""
    destination = claim.destination
    body = serialize_body(destination, claim.envelopes)
    if destination.rate_limit_per_second and destination.last_attempt_at:
        gap = 1.0 / destination.rate_limit_per_second
        wait = gap - (timezone.now() - destination.last_attempt_at).total_seconds()
        if wait > 0:
            time.sleep(min(wait, 60.0))
    return get_sender().send(destination, prepare(destination, body))


# Record -----------------------------------------------------------------------------------
def retry_delay(delivery: Delivery, outcome: Outcome) -> timedelta:
    """Exponential schedule with jitter, or the endpoint's Retry-After (capped)."""
    if outcome.retry_after is not None:
        return timedelta(seconds=outcome.retry_after)
    base = delivery.retry_delay(delivery.attempt_count).total_seconds()
    jitter = settings.WEBHOOK_RETRY_JITTER
    return timedelta(seconds=base * random.uniform(1 - jitter, 1 + jitter))


def describe_failure(outcome: Outcome) -> str:
    if outcome.status_code is not None:
        text = f"HTTP {outcome.status_code}"
        return f"{text}: {outcome.detail}" if outcome.detail else text
    return outcome.detail or ErrorKind(outcome.error_kind).label


def record_attempt(delivery: Delivery, outcome: Outcome) -> None:
    Attempt.objects.create(
        delivery=delivery,
        destination_id=None if delivery.is_test else delivery.destination_id,
        number=delivery.attempt_count,
        delivery_uuid=outcome.delivery_uuid,
        started_at=outcome.started_at,
        duration_ms=outcome.duration_ms,
        status_code=outcome.status_code,
        error_kind=outcome.error_kind,
        error_detail=outcome.detail[:500],
        response_excerpt=outcome.response_excerpt,
        request_headers=outcome.request_headers,
        ok=outcome.ok,
    )


def record_outcome(claim: Claim, outcome: Outcome) -> Delivery:
    """Store the attempt and move the delivery and the destination on, in one transaction."""
    alerts: list[tuple[str, str]] = []
    with transaction.atomic():
        destination = Destination.objects.select_for_update().get(pk=claim.destination.pk)
        delivery = Delivery.objects.select_for_update().get(pk=claim.delivery.pk)
        record_attempt(delivery, outcome)
        if (
            delivery.state != DeliveryState.DELIVERING
            or destination.lease_owner != claim.lease_owner
        ):
            # Our lease ran out and another worker took over: keep the attempt, change nothing.
            return delivery
        now = timezone.now()
        delivery.last_status_code = outcome.status_code
        delivery.last_error_kind = outcome.error_kind
        if outcome.ok:
            delivery.state = DeliveryState.DELIVERED
            delivery.finished_at = now
            delivery.failure_reason = ""
        elif outcome.transient and delivery.attempt_count < delivery.attempt_limit:
            delivery.state = DeliveryState.RETRYING
            delivery.next_attempt_at = now + retry_delay(delivery, outcome)
            delivery.failure_reason = describe_failure(outcome)
        else:
            delivery.state = DeliveryState.FAILED
            delivery.finished_at = now
            reason = describe_failure(outcome)
            if outcome.transient:
                reason = f"Gave up after {delivery.attempt_count} attempts. Last: {reason}"
            delivery.failure_reason = reason[:300]
        delivery.save()

        destination.last_attempt_at = now
        destination.last_status_code = outcome.status_code
        destination.last_error_kind = outcome.error_kind
        destination.last_outcome_ok = outcome.ok
        destination.lease_until = None
        destination.lease_owner = ""
        if outcome.ok:
            if destination.health_alerted:
                alerts.append(("recovered", "Deliveries succeed again."))
            destination.last_success_at = now
            destination.failing_since = None
            destination.retrying = False
            destination.health_alerted = False
        else:
            destination.failing_since = destination.failing_since or now
            destination.retrying = delivery.state == DeliveryState.RETRYING
            if delivery.state == DeliveryState.FAILED and not destination.health_alerted:
                destination.health_alerted = True
                alerts.append(("failing", delivery.failure_reason))
            failing_for = (now - destination.failing_since).total_seconds()
            if failing_for >= settings.WEBHOOK_DISABLE_AFTER:
                destination.disabled_at = now
                destination.disabled_reason = (
                    f"No successful delivery for {failing_for / 3600:.0f} hours. "
                    f"Last error: {describe_failure(outcome)}"
                )[:300]
                destination.health_alerted = True
                alerts.append(("disabled", destination.disabled_reason))
        destination.next_due_at = _next_due(destination, delivery, now)
        destination.save(update_fields=DESTINATION_FIELDS_RECORDED)
        for health, reason in alerts:
            transaction.on_commit(partial(publish_health, destination.pk, health, reason))
    return delivery


def _next_due(destination: Destination, delivery: Delivery, now):
    if delivery.state == DeliveryState.RETRYING:
        return delivery.next_attempt_at
    has_more = (
        Delivery.objects.filter(destination=destination, state__in=OPEN_STATES, is_test=False)
        .exclude(pk=delivery.pk)
        .exists()
    )
    if not has_more:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM integrations_deliveryevent "
                "WHERE destination_id = %s AND delivery_id IS NULL LIMIT 1",
                [destination.pk],
            )
            has_more = cursor.fetchone() is not None
    return now if has_more else None


def publish_health(destination_id, health: str, reason: str) -> None:
    """Tell the tenant: a `system.health` event for its destinations."""
    from integrations.events import event_publish

    destination = Destination.objects.select_related("tenant").filter(pk=destination_id).first()
    if destination is None:
        return
    severity = {"recovered": "info", "failing": "high", "disabled": "critical"}[health]
    event_publish(
        tenant=destination.tenant,
        event_type="system.health",
        severity=severity,
        payload={
            "destination_id": str(destination.pk),
            "destination": destination.name,
            "health": health,
            "health_label": Health(destination.health).label,
            "reason": reason,
        },
    )


# Drain ------------------------------------------------------------------------------------
def deliver_one(destination_id) -> Delivery | None:
    """Claim, send and record one batch; None when nothing was due."""
    claim = claim_batch(destination_id)
    if claim is None:
        return None
    outcome = send_claim(claim)
    return record_outcome(claim, outcome)


def drain(destination_id, *, max_batches: int = 200, max_seconds: float = 5.0) -> int:
    """Deliver due batches for one destination for a time slice, then yield the worker."""
    deadline = time.monotonic() + max_seconds
    sent = 0
    while sent < max_batches:
        if deliver_one(destination_id) is None:
            return sent
        sent += 1
        if time.monotonic() > deadline:
            break
    wake(destination_id)  # more may be due: back of the queue, so other tenants get a turn
    return sent


# Sweep ------------------------------------------------------------------------------------
def sweep(*, limit: int = 1000, grace_seconds: float = 1.0) -> list:
    """Repair lost wake-ups and expired leases: queue every destination with due work."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE integrations_destination d SET next_due_at = now()
            WHERE d.active AND d.next_due_at IS NULL AND (
                EXISTS (SELECT 1 FROM integrations_deliveryevent de
                        WHERE de.destination_id = d.id AND de.delivery_id IS NULL)
                OR EXISTS (SELECT 1 FROM integrations_delivery dl
                           WHERE dl.destination_id = d.id AND NOT dl.is_test
                             AND dl.state IN ('pending', 'delivering', 'retrying')))
            """
        )
        cursor.execute(
            """
            SELECT id FROM integrations_destination
            WHERE active AND disabled_at IS NULL
              AND next_due_at <= now() - make_interval(secs => %s)
              AND (lease_until IS NULL OR lease_until < now())
            ORDER BY next_due_at
            LIMIT %s
            """,
            [grace_seconds, limit],
        )
        due = [row[0] for row in cursor.fetchall()]
    for destination_id in due:
        wake(destination_id)
    return due


def sweep_loop(*, duration: float = 55.0) -> int:
    """Sweep every WEBHOOK_SWEEP_INTERVAL for a while; only one sweeper runs at a time."""
    if not _try_sweep_lock():
        return 0
    rounds = 0
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        try:
            sweep()
        except (OperationalError, InterfaceError):
            # The database restarted: our session (and its advisory lock) is gone. Reconnect
            # and take the lock again, unless another sweeper took it meanwhile.
            logger.warning("sweep failed: database unavailable; retrying", exc_info=True)
            connection.close()
            time.sleep(settings.WEBHOOK_SWEEP_INTERVAL)
            try:
                if not _try_sweep_lock():
                    return rounds
            except (OperationalError, InterfaceError):
                pass
            continue
        rounds += 1
        time.sleep(settings.WEBHOOK_SWEEP_INTERVAL)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [SWEEP_LOCK])
    except (OperationalError, InterfaceError):
        connection.close()  # the lock went with the lost session
    return rounds


def _try_sweep_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [SWEEP_LOCK])
        return bool(cursor.fetchone()[0])


def purge_retention() -> int:
    """Delete delivered batches (with attempts) older than the retention, then orphan events."""
    cutoff = timezone.now() - timedelta(days=settings.WEBHOOK_RETENTION_DAYS)
    deleted = 0
    while True:
        ids = list(
            Delivery.objects.filter(
                state=DeliveryState.DELIVERED, finished_at__lt=cutoff
            ).values_list("id", flat=True)[:5000]
        )
        if not ids:
            break
        with transaction.atomic():
            Attempt.objects.filter(delivery_id__in=ids).delete()
            with connection.cursor() as cursor:
                cursor.execute(
                    "DELETE FROM integrations_deliveryevent WHERE delivery_id = ANY(%s)", [ids]
                )
            Delivery.objects.filter(id__in=ids).delete()
        deleted += len(ids)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            DELETE FROM integrations_event e WHERE e.created_at < %s AND NOT EXISTS (
                SELECT 1 FROM integrations_deliveryevent de WHERE de.event_id = e.id)
            """,
            [cutoff],
        )
    return deleted
