"""The delivery engine: plain functions over the database.

The database is the source of truth. Each destination is a stream: its waiting events
(DeliveryEvent rows without a delivery) go out in event order, one batch at a time, and the
stream advances only when a batch is acknowledged (2xx) or has failed permanently. A worker
takes a destination with `SELECT ... FOR UPDATE SKIP LOCKED` and a lease, sends outside any
transaction, and records the outcome in a short one. Tasks only wake workers; the sweep finds
due work and expired leases, so a lost task or a killed worker only delays delivery.
"""

from __future__ import annotations

import json
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
    Attempt,
    Delivery,
    DeliveryState,
    Destination,
    ErrorKind,
    Health,
)
from integrations.redaction import mask_excerpt_for
from integrations.sender import Outcome, get_sender
from integrations.signing import event_envelope, prepare, serialize_body

logger = logging.getLogger("integrations.engine")

SWEEP_LOCK = 0x5EE9


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
        payload = json.loads(payload)
    return event_envelope(
        event_id=event_id,
        event_type=event_type,
        event_time=event_time,
        severity=severity,
        tenant_slug=slug,
        payload=payload,
    )


def _new_batch(cursor, destination: Destination, now) -> tuple[Delivery | None, list[dict]]:
    """The next batch of waiting events, in event order, ≤ batch size and ≤ max bytes."""
    cursor.execute(
        """
        SELECT de.id, e.event_id, e.event_type, e.event_time, e.severity, t.slug, e.payload,
               octet_length(e.payload::text)
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
        approx = row[7] + 200  # the envelope's own fields
        if envelopes and size + approx > settings.WEBHOOK_BATCH_MAX_BYTES:
            break
        size += approx
        item_ids.append(row[0])
        envelopes.append(_envelope(row[1:7]))
    cursor.execute(
        """
        INSERT INTO integrations_delivery
            (tenant_id, destination_id, state, event_count, attempt_count, attempt_limit,
             last_error_kind, failure_reason, is_test, created_at)
        VALUES (%s, %s, 'delivering', %s, 1, %s, '', '', false, %s)
        RETURNING id
        """,
        [
            destination.tenant_id,
            destination.pk,
            len(envelopes),
            settings.WEBHOOK_MAX_ATTEMPTS,
            now,
        ],
    )
    delivery = Delivery(
        pk=cursor.fetchone()[0],
        tenant_id=destination.tenant_id,
        destination_id=destination.pk,
        state=DeliveryState.DELIVERING,
        event_count=len(envelopes),
        attempt_count=1,
        attempt_limit=settings.WEBHOOK_MAX_ATTEMPTS,
    )
    cursor.execute(
        "UPDATE integrations_deliveryevent SET delivery_id = %s WHERE id = ANY(%s)",
        [delivery.pk, item_ids],
    )
    return delivery, envelopes


# Take the destination and its lease in one statement (row lock, SKIP LOCKED: two workers
# never hold the same destination).
CLAIM_SQL = """
    UPDATE integrations_destination d
    SET lease_until = %(now)s + make_interval(secs => d.timeout_seconds + %(margin)s),
        lease_owner = %(owner)s
    WHERE d.id = (
        SELECT id FROM integrations_destination
        WHERE id = %(id)s AND active AND disabled_at IS NULL AND next_due_at <= %(now)s
          AND (lease_until IS NULL OR lease_until < %(now)s)
        FOR UPDATE SKIP LOCKED)
    RETURNING d.*
"""
RELEASE_SQL = """
    UPDATE integrations_destination SET next_due_at = %s, lease_until = NULL, lease_owner = ''
    WHERE id = %s
"""


def claim_batch(destination_id) -> Claim | None:
    """Take the destination's next due batch under a lease, or None when nothing is due."""
    owner = uuid.uuid4().hex
    now = timezone.now()  # the worker's clock, as everywhere else (not the transaction's)
    with transaction.atomic(), connection.cursor() as cursor:
        claimed = list(
            Destination.objects.raw(
                CLAIM_SQL,
                {
                    "id": destination_id,
                    "owner": owner,
                    "margin": settings.WEBHOOK_LEASE_MARGIN,
                    "now": now,
                },
            )
        )
        if not claimed:
            return None
        destination = claimed[0]
        cursor.execute(
            """
            SELECT id, state, next_attempt_at, attempt_count, attempt_limit, event_count
            FROM integrations_delivery
            WHERE destination_id = %s AND NOT is_test
              AND state IN ('pending', 'delivering', 'retrying')
            ORDER BY id LIMIT 1
            """,
            [destination.pk],
        )
        row = cursor.fetchone()
        if row is not None:
            delivery_id, state, next_attempt_at, attempts, limit, event_count = row
            if state == DeliveryState.RETRYING and next_attempt_at > now:
                cursor.execute(RELEASE_SQL, [next_attempt_at, destination.pk])
                return None
            cursor.execute(
                "UPDATE integrations_delivery SET state = 'delivering', next_attempt_at = NULL, "
                "attempt_count = attempt_count + 1 WHERE id = %s",
                [delivery_id],
            )
            delivery = Delivery(
                pk=delivery_id,
                tenant_id=destination.tenant_id,
                destination_id=destination.pk,
                state=DeliveryState.DELIVERING,
                event_count=event_count,
                attempt_count=attempts + 1,
                attempt_limit=limit,
            )
            envelopes = _load_envelopes(delivery_id)
        else:
            delivery, envelopes = _new_batch(cursor, destination, now)
            if delivery is None:
                cursor.execute(RELEASE_SQL, [None, destination.pk])
                return None
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
        response_excerpt=mask_excerpt_for(delivery.destination_id, outcome.response_excerpt),
        request_headers=outcome.request_headers,
        ok=outcome.ok,
    )


def record_outcome(claim: Claim, outcome: Outcome) -> Delivery:
    """Store the attempt and move the delivery and the destination on, in one transaction."""
    alerts: list[tuple[str, str]] = []
    delivery = claim.delivery
    with transaction.atomic(), connection.cursor() as cursor:
        # Lock the destination first: a publisher marking it due waits for us, or we see it.
        cursor.execute(
            "SELECT lease_owner, failing_since, health_alerted FROM integrations_destination "
            "WHERE id = %s FOR UPDATE",
            [claim.destination.pk],
        )
        row = cursor.fetchone()
        record_attempt(delivery, outcome)
        if row is None or row[0] != claim.lease_owner:
            # Our lease ran out and another worker took over: keep the attempt, change nothing.
            return delivery
        _, failing_since, health_alerted = row
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
            delivery.failure_reason = describe_failure(outcome)[:300]
        else:
            delivery.state = DeliveryState.FAILED
            delivery.finished_at = now
            reason = describe_failure(outcome)
            if outcome.transient:
                reason = f"Gave up after {delivery.attempt_count} attempts. Last: {reason}"
            delivery.failure_reason = reason[:300]
        cursor.execute(
            """
            UPDATE integrations_delivery
            SET state = %s, next_attempt_at = %s, finished_at = %s, last_status_code = %s,
                last_error_kind = %s, failure_reason = %s
            WHERE id = %s
            """,
            [
                delivery.state,
                delivery.next_attempt_at,
                delivery.finished_at,
                delivery.last_status_code,
                delivery.last_error_kind,
                delivery.failure_reason,
                delivery.pk,
            ],
        )

        update = {
            "last_attempt_at": now,
            "last_status_code": outcome.status_code,
            "last_error_kind": outcome.error_kind,
            "last_outcome_ok": outcome.ok,
        }
        if outcome.ok:
            if health_alerted:
                alerts.append(("recovered", "Deliveries succeed again."))
            update.update(
                last_success_at=now, failing_since=None, retrying=False, health_alerted=False
            )
        else:
            failing_since = failing_since or now
            update.update(
                failing_since=failing_since, retrying=delivery.state == DeliveryState.RETRYING
            )
            if delivery.state == DeliveryState.FAILED and not health_alerted:
                health_alerted = True
                update["health_alerted"] = True
                alerts.append(("failing", delivery.failure_reason))
            failing_for = (now - failing_since).total_seconds()
            if failing_for >= settings.WEBHOOK_DISABLE_AFTER:
                reason = (
                    f"No successful delivery for {failing_for / 3600:.0f} hours. "
                    f"Last error: {describe_failure(outcome)}"
                )[:300]
                update.update(disabled_at=now, disabled_reason=reason, health_alerted=True)
                alerts.append(("disabled", reason))
        update["next_due_at"] = _next_due(cursor, claim.destination.pk, delivery, now)
        assignments = ", ".join(f"{column} = %s" for column in update)
        cursor.execute(
            f"UPDATE integrations_destination SET {assignments}, lease_until = NULL, "  # noqa: S608 (column names are ours)
            "lease_owner = '' WHERE id = %s",
            [*update.values(), claim.destination.pk],
        )
        for health, reason in alerts:
            transaction.on_commit(partial(publish_health, claim.destination.pk, health, reason))
    return delivery


def _next_due(cursor, destination_id, delivery: Delivery, now):
    """When the destination next has work: the retry time, now, or never (idle)."""
    if delivery.state == DeliveryState.RETRYING:
        return delivery.next_attempt_at
    cursor.execute(
        """
        SELECT EXISTS (
            SELECT 1 FROM integrations_delivery
            WHERE destination_id = %(id)s AND NOT is_test AND id <> %(delivery)s
              AND state IN ('pending', 'delivering', 'retrying'))
        OR EXISTS (
            SELECT 1 FROM integrations_deliveryevent
            WHERE destination_id = %(id)s AND delivery_id IS NULL)
        """,
        {"id": destination_id, "delivery": delivery.pk},
    )
    return now if cursor.fetchone()[0] else None


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
