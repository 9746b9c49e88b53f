"""The delivery engine: plain functions over the database.

The database is the source of truth. Each destination is a stream: its waiting events (outbox
rows in `integrations_deliveryevent` without a delivery) go out in the order they were
accepted, one batch in flight at a time, and the stream advances only when a batch is
acknowledged (2xx) or has failed permanently.

* **Claim** (`claim_many`): one statement takes up to N due destinations under a lease,
  round-robin across tenants (each tenant's first due destination, then each one's second...)
  and at most `WEBHOOK_TENANT_MAX_IN_FLIGHT` per tenant, with `FOR UPDATE SKIP LOCKED`; a few
  more statements build the batches of all of them at once.
* **Send**: outside any transaction, by the delivery loop (`integrations.delivery.loop`).
* **Record** (`record_many`): the attempts and their consequences in one short transaction.

A lease lasts longer than any attempt can (the timeout plus at most 1 s, plus a margin) and is
compared on the database clock. It belongs to an owner key that its process holds as a
PostgreSQL advisory lock: when a worker dies, its session ends, the lock goes and its leases
are free at once. An outcome whose lease was taken over is discarded (fencing), so no batch is
ever in flight twice. Publishing notifies the loops (`LISTEN/NOTIFY`); the loops also poll, so
a lost notification only delays delivery by a second.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from integrations.audit_events import record_auto_disable
from integrations.delivery.client import Outcome
from integrations.delivery.policy import Action, Attempted, Policy, decide
from integrations.models import (
    Attempt,
    Delivery,
    DeliveryState,
    Destination,
    ErrorKind,
    Health,
)
from integrations.redaction import mask_excerpt_for
from integrations.signing import PreparedRequest, prepare, serialize_body

logger = logging.getLogger("integrations.engine")

NOTIFY_CHANNEL = "oneprotect_delivery"
# Advisory lock namespaces (the first of two int4 keys).
OWNER_LOCK_NS = 0x0E1
SLOT_LOCK_NS = 0x0E2


# Wake-ups -----------------------------------------------------------------------------------
def wake_many(destination_ids: Iterable = ()) -> None:
    """Tell the delivery loops that work is due (delivered to listeners at commit)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [NOTIFY_CHANNEL])
    except Exception:  # a lost wake-up only delays delivery until the loops' next poll
        logger.warning("could not notify the delivery loops", exc_info=True)


def wake(destination_id=None) -> None:
    wake_many([destination_id])


def mark_due_now(destination_id) -> None:
    """Make a destination's waiting work due now, its head batch included, and wake a loop."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE integrations_destination SET next_due_at = %s "
            "WHERE id = %s AND active AND (next_due_at IS NULL OR next_due_at > %s)",
            [now, destination_id, now],
        )
        cursor.execute(
            """
            UPDATE integrations_delivery SET next_attempt_at = %s
            WHERE destination_id = %s AND state = 'retrying' AND next_attempt_at > %s
            """,
            [now, destination_id, now],
        )
    transaction.on_commit(partial(wake, destination_id))


# Owners -------------------------------------------------------------------------------------
_owner: tuple[int, int] | None = None  # (key, id of the database connection holding its lock)


def owner_key() -> int:
    """This process's lease owner key, held as a session advisory lock on its connection."""
    global _owner
    connection.ensure_connection()
    raw = id(connection.connection)
    if _owner is not None and _owner[1] == raw:
        return _owner[0]
    for _ in range(10):
        key = random.randint(1, 2**31 - 1)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [OWNER_LOCK_NS, key])
            if cursor.fetchone()[0]:
                _owner = (key, raw)
                return key
    raise RuntimeError("could not take a lease owner key")


def forget_owner() -> None:
    """Drop this process's owner key (its connection is gone or about to be)."""
    global _owner
    _owner = None


# Claim --------------------------------------------------------------------------------------
@dataclass
class Claim:
    destination: Destination
    delivery: Delivery
    envelope_texts: list[str]  # each event's envelope as JSON text, built by PostgreSQL
    lease_owner: str
    request: PreparedRequest | None = None
    error: str = ""  # set when the request could not even be prepared

    @property
    def timeout(self) -> float:
        return float(self.destination.timeout_seconds)

    @property
    def envelopes(self) -> list[dict]:
        """The envelopes as objects (formats other than the default batch need them)."""
        return [json.loads(text) for text in self.envelope_texts]


# SQL fragments below are our own constants (no input): assembled once at import.
LIVE_OWNERS = f"""
    live AS MATERIALIZED (
        SELECT l.objid::bigint AS key FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.classid = {OWNER_LOCK_NS} AND l.objsubid = 2
          AND l.granted)"""  # noqa: S608
OWNER_ALIVE = "NULLIF(split_part(d.lease_owner, ':', 1), '')::bigint IN (SELECT key FROM live)"
LEASE_FREE = (
    f"(d.lease_until IS NULL OR d.lease_until < statement_timestamp() OR NOT {OWNER_ALIVE})"
)

CLAIM_SQL = f"""
WITH {LIVE_OWNERS}, ready AS (
    SELECT d.id, d.tenant_id, d.next_due_at,
           row_number() OVER (PARTITION BY d.tenant_id ORDER BY d.next_due_at, d.id) AS turn
    FROM integrations_destination d
    WHERE d.active AND d.disabled_at IS NULL AND d.next_due_at <= statement_timestamp()
      AND {LEASE_FREE}
      AND (%(only)s::uuid[] IS NULL OR d.id = ANY(%(only)s::uuid[]))
), busy AS (
    SELECT d.tenant_id, count(*) AS n FROM integrations_destination d
    WHERE d.lease_until >= statement_timestamp() AND {OWNER_ALIVE}
    GROUP BY d.tenant_id
), picked AS (
    SELECT r.id FROM ready r LEFT JOIN busy b ON b.tenant_id = r.tenant_id
    WHERE r.turn + coalesce(b.n, 0) <= %(tenant_cap)s
    ORDER BY r.turn, r.next_due_at, r.id
    LIMIT %(limit)s
), locked AS (
    SELECT d.id FROM integrations_destination d
    WHERE d.id IN (SELECT id FROM picked)
      AND d.active AND d.disabled_at IS NULL AND d.next_due_at <= statement_timestamp()
      AND {LEASE_FREE}
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE integrations_destination d
SET lease_until = statement_timestamp() + make_interval(secs => d.timeout_seconds + %(margin)s),
    lease_owner = %(owner)s
FROM locked WHERE d.id = locked.id
RETURNING d.*
"""  # noqa: S608

OPEN_SQL = """
SELECT DISTINCT ON (destination_id)
       id, destination_id, state, next_attempt_at, attempt_count, attempt_limit,
       event_count, schedule_start, first_item_id, statement_timestamp()
FROM integrations_delivery
WHERE destination_id = ANY(%s::uuid[]) AND NOT is_test
  AND state IN ('pending', 'delivering', 'retrying')
ORDER BY destination_id, first_item_id, id
"""

# The next batch of each destination: its oldest waiting events, in outbox order. Outbox ids
# follow commit order per destination: a publisher locks the destination row before it inserts
# (integrations.outbox), so a second publisher waits for the first to commit, and a claim skips
# a destination that a publisher holds.
# One event's envelope as JSON text, made by PostgreSQL (no decoding and re-encoding of the
# payload in Python): the `events` entries of the documented body.
ENVELOPE = """json_build_object(
    'event_id', e.event_id, 'event_type', e.event_type,
    'event_time', floor(extract(epoch FROM e.event_time) * 1000)::bigint,
    'severity', e.severity, 'tenant', t.slug, 'event', e.payload)::text"""

WAITING_SQL = f"""
SELECT q.destination_id, de.id, {ENVELOPE}
FROM unnest(%s::uuid[], %s::int[]) AS q(destination_id, size)
CROSS JOIN LATERAL (
    SELECT id, event_id FROM integrations_deliveryevent
    WHERE destination_id = q.destination_id AND delivery_id IS NULL
    ORDER BY id LIMIT q.size
) de
JOIN integrations_event e ON e.id = de.event_id
JOIN portal_tenant t ON t.id = e.tenant_id
ORDER BY q.destination_id, de.id
"""  # noqa: S608 (constants only)

ITEMS_SQL = f"""
SELECT de.delivery_id, {ENVELOPE}
FROM integrations_deliveryevent de
JOIN integrations_event e ON e.id = de.event_id
JOIN portal_tenant t ON t.id = e.tenant_id
WHERE de.delivery_id = ANY(%s)
ORDER BY de.delivery_id, de.id
"""  # noqa: S608 (constants only)


def _batch_size(destination: Destination) -> int:
    limit = getattr(destination, "max_batch_events", None)
    size = limit() if callable(limit) else settings.WEBHOOK_BATCH_SIZE
    return max(1, int(size))


def claim_many(
    *, owner: int | None = None, limit: int = 100, only: Sequence | None = None
) -> tuple[list[Claim], list[Claim]]:
    """Lease up to `limit` due destinations and build their next batches.

    Returns (claims to send, claims whose previous attempt was lost). Lost attempts (a
    worker died mid-send) are returned to be recorded like any failed attempt.
    """
    if limit <= 0:
        return [], []
    owner = owner if owner is not None else owner_key()
    token = f"{owner}:{uuid.uuid4().hex[:16]}"  # unique per claim: fencing compares it
    with transaction.atomic():
        destinations = list(
            Destination.objects.raw(
                CLAIM_SQL,
                {
                    "owner": token,
                    "margin": 1 + settings.WEBHOOK_LEASE_MARGIN,
                    "limit": limit,
                    "tenant_cap": settings.WEBHOOK_TENANT_MAX_IN_FLIGHT,
                    "only": [str(pk) for pk in only] if only is not None else None,
                },
            )
        )
        if not destinations:
            return [], []
        by_id = {d.pk: d for d in destinations}
        with connection.cursor() as cursor:
            cursor.execute(OPEN_SQL, [list(by_id)])
            open_rows = cursor.fetchall()
            claims, lost, idle, later = _claims_for_open(cursor, by_id, open_rows, token)
            with_open = {row[1] for row in open_rows}
            fresh = [pk for pk in by_id if pk not in with_open]
            claims += _new_batches(cursor, by_id, fresh, token, idle)
            if idle:
                # Nothing to send after all: idle, or waiting for an older publisher's commit.
                cursor.execute(
                    """
                    UPDATE integrations_destination d
                    SET lease_until = NULL, lease_owner = '',
                        next_due_at = CASE WHEN EXISTS (
                            SELECT 1 FROM integrations_deliveryevent de
                            WHERE de.destination_id = d.id AND de.delivery_id IS NULL)
                          THEN statement_timestamp() + interval '50 milliseconds' END
                    WHERE d.id = ANY(%s::uuid[])
                    """,
                    [idle],
                )
            for destination_id, when in later:
                cursor.execute(
                    "UPDATE integrations_destination SET lease_until = NULL, lease_owner = '', "
                    "next_due_at = %s WHERE id = %s",
                    [when, destination_id],
                )
    for claim in claims:
        _prepare(claim)
    return claims, lost


def _claims_for_open(cursor, by_id, open_rows, owner) -> tuple[list, list, list, list]:
    """Claims for destinations whose head batch is already open (retrying, resent...)."""
    claims: list[Claim] = []
    lost: list[Claim] = []
    idle: list = []
    later: list = []
    sendable: list[int] = []
    for row in open_rows:
        (delivery_id, destination_id, state, next_at, attempts, limit, count, start, first, now) = (
            row
        )
        destination = by_id[destination_id]
        if state == DeliveryState.RETRYING and next_at is not None and next_at > now:
            later.append((destination_id, next_at))
            continue
        delivery = Delivery(
            pk=delivery_id,
            tenant_id=destination.tenant_id,
            destination_id=destination_id,
            state=DeliveryState.DELIVERING,
            event_count=count,
            attempt_count=attempts + 1,
            attempt_limit=limit,
            schedule_start=start,
            first_item_id=first,
        )
        claim = _claim(destination, delivery, owner)
        if state == DeliveryState.DELIVERING:
            # Claimed before, never recorded: that worker died during the attempt.
            lost.append(_claim(destination, _copy(delivery, attempt_count=attempts), owner))
        claims.append(claim)
        sendable.append(delivery_id)
    if sendable:
        cursor.execute(
            "UPDATE integrations_delivery SET state = 'delivering', next_attempt_at = NULL, "
            "attempt_count = attempt_count + 1 WHERE id = ANY(%s)",
            [sendable],
        )
        cursor.execute(ITEMS_SQL, [sendable])
        texts: dict[int, list[str]] = {}
        for delivery_id, text in cursor.fetchall():
            texts.setdefault(delivery_id, []).append(text)
        for claim in claims:
            claim.envelope_texts = texts.get(claim.delivery.pk, [])
    return claims, lost, idle, later


def _copy(delivery: Delivery, **changes) -> Delivery:
    copy = Delivery(**{f.attname: getattr(delivery, f.attname) for f in Delivery._meta.fields})
    for name, value in changes.items():
        setattr(copy, name, value)
    return copy


def _claim(destination: Destination, delivery: Delivery, owner: str) -> Claim:
    return Claim(
        destination=destination,
        delivery=delivery,
        envelope_texts=[],
        lease_owner=owner,
    )


def _new_batches(cursor, by_id, fresh: list, owner: str, idle: list) -> list[Claim]:
    """Open one new batch for each destination with waiting events (a fixed few statements)."""
    if not fresh:
        return []
    cursor.execute(WAITING_SQL, [fresh, [_batch_size(by_id[pk]) for pk in fresh]])
    rows: dict = {}
    for row in cursor.fetchall():
        rows.setdefault(row[0], []).append(row)
    batches = []  # (destination, item ids, envelopes)
    for destination_id in fresh:
        items = rows.get(destination_id)
        if not items:
            idle.append(destination_id)
            continue
        item_ids: list[int] = []
        envelopes: list[str] = []
        size = 20
        for _, item_id, text in items:
            approx = len(text) if text.isascii() else len(text.encode())  # bytes
            if envelopes and size + approx + 1 > settings.WEBHOOK_BATCH_MAX_BYTES:
                break
            size += approx + 1
            item_ids.append(item_id)
            envelopes.append(text)
        batches.append((by_id[destination_id], item_ids, envelopes))
    if not batches:
        return []
    now = timezone.now()
    cursor.execute(
        """
        INSERT INTO integrations_delivery (tenant_id, destination_id, state, event_count,
            attempt_count, attempt_limit, last_error_kind, failure_reason, is_test, created_at,
            schedule_start, first_item_id)
        SELECT b.tenant_id, b.destination_id, 'delivering', b.events, 1, %s, '', '', false,
               %s, 0, b.first_item
        FROM unnest(%s::bigint[], %s::uuid[], %s::int[], %s::bigint[])
             WITH ORDINALITY AS b(tenant_id, destination_id, events, first_item, n)
        ORDER BY b.n
        RETURNING id, destination_id
        """,
        [
            settings.WEBHOOK_MAX_ATTEMPTS,
            now,
            [d.tenant_id for d, _, _ in batches],
            [str(d.pk) for d, _, _ in batches],
            [len(envelopes) for _, _, envelopes in batches],
            [item_ids[0] for _, item_ids, _ in batches],
        ],
    )
    new_ids = {row[1]: row[0] for row in cursor.fetchall()}
    delivery_ids = [new_ids[destination.pk] for destination, _, _ in batches]
    pairs_items: list[int] = []
    pairs_deliveries: list[int] = []
    claims = []
    for (destination, item_ids, envelopes), delivery_id in zip(batches, delivery_ids, strict=True):
        pairs_items += item_ids
        pairs_deliveries += [delivery_id] * len(item_ids)
        delivery = Delivery(
            pk=delivery_id,
            tenant_id=destination.tenant_id,
            destination_id=destination.pk,
            state=DeliveryState.DELIVERING,
            event_count=len(envelopes),
            attempt_count=1,
            attempt_limit=settings.WEBHOOK_MAX_ATTEMPTS,
            schedule_start=0,
            first_item_id=item_ids[0],
            created_at=now,
        )
        claim = _claim(destination, delivery, owner)
        claim.envelope_texts = envelopes
        claims.append(claim)
    cursor.execute(
        """
        UPDATE integrations_deliveryevent de SET delivery_id = p.delivery_id
        FROM unnest(%s::bigint[], %s::bigint[]) AS p(item_id, delivery_id)
        WHERE de.id = p.item_id
        """,
        [pairs_items, pairs_deliveries],
    )
    return claims


def _prepare(claim: Claim) -> None:
    """Serialize once and sign; a failure here is recorded as the attempt's outcome."""
    try:
        # The exact bytes that are signed: the documented compact form, so that a receiver's
        # "re-serialized?" check in the signature checker can reproduce it.
        body = serialize_body(claim.destination, claim.envelopes)
        claim.request = prepare(claim.destination, body, message_id=f"msg_{claim.delivery.pk}")
    except Exception as error:  # e.g. a secret that no configured key can decrypt
        logger.exception("could not prepare a request for destination %s", claim.destination.pk)
        claim.error = f"The request could not be prepared ({type(error).__name__})."


def failed_outcome(claim: Claim, detail: str, kind: str = ErrorKind.OTHER) -> Outcome:
    """An attempt that never reached the network, as an outcome to record."""
    return Outcome(
        ok=False,
        transient=True,
        started_at=timezone.now(),
        duration_ms=0,
        delivery_uuid=uuid.uuid4(),
        error_kind=kind,
        detail=detail,
    )


LOST_DETAIL = "The worker stopped during this attempt (its result is unknown); retried."


# Record -------------------------------------------------------------------------------------
def describe_failure(outcome: Outcome) -> str:
    if outcome.status_code is not None:
        text = f"HTTP {outcome.status_code}"
        return f"{text}: {outcome.detail}" if outcome.detail else text
    return outcome.detail or ErrorKind(outcome.error_kind).label


def record_attempt(delivery: Delivery, outcome: Outcome) -> None:
    Attempt.objects.bulk_create([_attempt_row(delivery, outcome)])


def _attempt_row(
    delivery: Delivery, outcome: Outcome, destination: Destination | None = None
) -> Attempt:
    """An Attempt row; an excerpt that echoes a secret or header value is stored masked."""
    return Attempt(
        delivery_id=delivery.pk,
        destination_id=None if delivery.is_test else delivery.destination_id,
        number=max(1, delivery.attempt_count),
        delivery_uuid=outcome.delivery_uuid,
        started_at=outcome.started_at,
        duration_ms=outcome.duration_ms,
        status_code=outcome.status_code,
        error_kind=outcome.error_kind,
        error_detail=outcome.detail[:500],
        response_excerpt=mask_excerpt_for(
            destination or delivery.destination_id, outcome.response_excerpt
        ),
        request_headers=outcome.request_headers,
        ok=outcome.ok,
    )


@dataclass
class Recorded:
    """What recording an outcome did (for the loop's counters)."""

    action: str  # a policy Action, "fenced" or "gone"
    delivery: Delivery | None = None


def record_outcome(claim: Claim, outcome: Outcome) -> Delivery:
    """Record one outcome (tests and the synchronous drain)."""
    record_many([(claim, outcome)])
    return claim.delivery


# The destination's delivery bookkeeping that recording an outcome may change, with its SQL
# type (all of it is written back in one statement for every destination of a record).
BOOKKEEPING = {
    "last_attempt_at": "timestamptz",
    "last_status_code": "int",
    "last_error_kind": "text",
    "last_outcome_ok": "boolean",
    "last_success_at": "timestamptz",
    "failing_since": "timestamptz",
    "retrying": "boolean",
    "health_alerted": "boolean",
    "failed_attempts_in_row": "int",
    "permanent_failures_in_row": "int",
    "held_since": "timestamptz",
    "hold_reason": "text",
    "disabled_at": "timestamptz",
    "disabled_reason": "text",
    "next_due_at": "timestamptz",
}
DEST_LOCK_SQL = f"""
SELECT id, lease_owner, rate_limit_per_second, statement_timestamp() AS now,
       {", ".join(BOOKKEEPING)}
FROM integrations_destination WHERE id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE
"""  # noqa: S608 (constants only)
DEST_UPDATE_SQL = f"""
UPDATE integrations_destination d
SET {", ".join(f"{column} = v.{column}" for column in BOOKKEEPING)},
    lease_until = NULL, lease_owner = ''
FROM unnest(%s::uuid[], {", ".join(f"%s::{kind}[]" for kind in BOOKKEEPING.values())})
     AS v(id, {", ".join(BOOKKEEPING)})
WHERE d.id = v.id
"""  # noqa: S608 (constants only)


def record_lost(lost: Sequence[Claim]) -> None:
    """Attempts whose worker died mid-send: recorded as failed; they already counted."""
    if lost:
        Attempt.objects.bulk_create(
            [_attempt_row(c.delivery, failed_outcome(c, LOST_DETAIL)) for c in lost]
        )


def record_many(results: Sequence[tuple[Claim, Outcome]]) -> list[Recorded]:
    """Store the attempts and move deliveries and destinations on, in one transaction."""
    if not results:
        return []
    policy = Policy.from_settings()
    done: list[Recorded] = []
    # Built (and their excerpts masked: decrypting secrets) before the destination locks.
    rows_built = [_attempt_row(c.delivery, o, c.destination) for c, o in results]
    with transaction.atomic(), connection.cursor() as cursor:
        # Destinations first, in id order: publishers and the delete service lock them too.
        cursor.execute(DEST_LOCK_SQL, [sorted({str(c.destination.pk) for c, _ in results})])
        names = [column.name for column in cursor.description]
        rows = {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}
        attempts: list[Attempt] = []
        delivery_updates: list[list] = []
        destination_updates: dict = {}
        finished: list[tuple[Claim, Delivery]] = []
        for (claim, outcome), attempt in zip(results, rows_built, strict=True):
            row = rows.get(claim.destination.pk)
            if row is None:  # deleted meanwhile: its deliveries went with it
                done.append(Recorded("gone"))
                continue
            if row["lease_owner"] != claim.lease_owner:
                # Our lease was taken over: keep the attempt as history, change nothing else.
                attempts.append(attempt)
                done.append(Recorded("fenced", claim.delivery))
                continue
            attempts.append(attempt)
            recorded = _apply(policy, claim, outcome, row, destination_updates)
            if recorded.action == Action.SPLIT:
                _split(cursor, recorded.delivery)
            delivery_updates.append(_delivery_values(recorded.delivery))
            if recorded.action in (Action.DELIVER, Action.FAIL, Action.SPLIT):
                finished.append((claim, recorded.delivery))
            done.append(recorded)
        Attempt.objects.bulk_create(attempts)
        _update_deliveries(cursor, delivery_updates)
        _set_next_due(cursor, finished, destination_updates, rows)
        _update_destinations(cursor, destination_updates, rows)
    return done


def _apply(policy: Policy, claim: Claim, outcome: Outcome, row, updates: dict) -> Recorded:
    """Decide, and fill in the delivery's and destination's new values."""
    now = row["now"]
    failing_since, health_alerted = row["failing_since"], row["health_alerted"]
    last_success_at, held_since = row["last_success_at"], row["held_since"]
    permanent_in_row = row["permanent_failures_in_row"]
    failed_in_row, last_attempt_at = row["failed_attempts_in_row"], row["last_attempt_at"]
    rate_limit = row["rate_limit_per_second"]
    delivery = claim.delivery
    pending = updates.setdefault(claim.destination.pk, {"_alerts": []})
    decision = decide(
        policy,
        Attempted(
            ok=outcome.ok,
            transient=outcome.transient,
            status_code=outcome.status_code,
            retry_after=outcome.retry_after,
            attempt_in_schedule=delivery.attempt_in_schedule,
            attempts_left=delivery.attempt_limit - delivery.attempt_count,
            event_count=delivery.event_count,
            ever_succeeded=last_success_at is not None,
            held=held_since is not None,
            permanent_in_a_row=permanent_in_row,
            interrupted=outcome.interrupted,
        ),
    )
    delivery.last_status_code = outcome.status_code
    delivery.last_error_kind = outcome.error_kind
    delivery.next_attempt_at = None
    delivery.finished_at = None
    delivery.failure_reason = ""
    reason = describe_failure(outcome)[:300]
    if decision.action == Action.DELIVER:
        delivery.state = DeliveryState.DELIVERED
        delivery.finished_at = now
    elif decision.action in (Action.RETRY, Action.HOLD):
        delivery.state = DeliveryState.RETRYING
        delivery.next_attempt_at = now + timedelta(seconds=decision.delay)
        delivery.failure_reason = reason
    elif decision.action == Action.SPLIT:
        delivery.state = DeliveryState.PENDING  # its first half goes out next, at once
        delivery.failure_reason = reason
    else:
        delivery.state = DeliveryState.FAILED
        delivery.finished_at = now
        if outcome.transient:
            reason = f"Gave up after {delivery.attempt_count} attempts. Last: {reason}"
        delivery.failure_reason = reason[:300]

    if outcome.interrupted:
        # Our own shutdown cut the attempt short: it says nothing about the receiver.
        pending["next_due_at"] = delivery.next_attempt_at
        return Recorded(decision.action, delivery)
    pending.update(
        last_attempt_at=now,
        last_status_code=outcome.status_code,
        last_error_kind=outcome.error_kind,
        last_outcome_ok=outcome.ok,
    )
    if outcome.ok:
        if health_alerted or held_since is not None:
            pending["_alerts"].append(("recovered", "Deliveries succeed again."))
        pending.update(
            last_success_at=now,
            failing_since=None,
            retrying=False,
            health_alerted=False,
            failed_attempts_in_row=0,
            permanent_failures_in_row=0,
            held_since=None,
            hold_reason="",
        )
    else:
        # A run of failures: a long quiet gap (no attempts) starts a new run.
        gap = policy.schedule[-1] * 2 if policy.schedule else 86400
        if failing_since is None or (
            last_attempt_at is not None and (now - last_attempt_at).total_seconds() > gap
        ):
            failing_since, failed_in_row = now, 0
        failed_in_row += 1
        pending.update(
            failing_since=failing_since,
            failed_attempts_in_row=failed_in_row,
            retrying=delivery.state == DeliveryState.RETRYING,
        )
        if not outcome.transient and outcome.status_code != 413:
            pending["permanent_failures_in_row"] = permanent_in_row + 1
        elif outcome.transient:
            pending["permanent_failures_in_row"] = 0
        if decision.action == Action.HOLD:
            if held_since is None:
                pending["held_since"] = now
                pending["_alerts"].append(("failing", f"Delivery is held: {reason}"))
                pending["health_alerted"] = True
                health_alerted = True
            pending["hold_reason"] = reason
        if delivery.state == DeliveryState.FAILED and not health_alerted:
            pending["health_alerted"] = True
            pending["_alerts"].append(("failing", delivery.failure_reason))
        failing_for = (now - failing_since).total_seconds()
        if (
            failing_for >= settings.WEBHOOK_DISABLE_AFTER
            and failed_in_row >= settings.WEBHOOK_DISABLE_MIN_FAILURES
        ):
            disabled = (
                f"No successful delivery for {failing_for / 3600:.0f} hours "
                f"({failed_in_row} failed attempts in a row). Last error: {reason}"
            )[:300]
            pending.update(disabled_at=now, disabled_reason=disabled, health_alerted=True)
            pending["_alerts"].append(("disabled", disabled))
            transaction.on_commit(partial(record_auto_disable, claim.destination.pk, disabled))
    if decision.action in (Action.RETRY, Action.HOLD):
        pending["next_due_at"] = delivery.next_attempt_at
    if rate_limit:
        pending["_not_before"] = now + timedelta(seconds=1.0 / rate_limit)
    return Recorded(decision.action, delivery)


def _delivery_values(delivery: Delivery) -> list:
    return [
        delivery.pk,
        delivery.state,
        delivery.next_attempt_at,
        delivery.finished_at,
        delivery.last_status_code,
        delivery.last_error_kind,
        delivery.failure_reason,
        delivery.attempt_count,
        delivery.event_count,
    ]


def _update_deliveries(cursor, rows: list[list]) -> None:
    if not rows:
        return
    columns = list(zip(*rows, strict=True))
    cursor.execute(
        """
        UPDATE integrations_delivery dl
        SET state = v.state, next_attempt_at = v.next_attempt_at, finished_at = v.finished_at,
            last_status_code = v.status, last_error_kind = v.kind,
            failure_reason = v.reason, attempt_count = GREATEST(dl.attempt_count, v.attempts),
            event_count = v.events
        FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::timestamptz[],
                    %s::int[], %s::text[], %s::text[], %s::int[], %s::int[])
             AS v(id, state, next_attempt_at, finished_at, status, kind, reason, attempts, events)
        WHERE dl.id = v.id
        """,
        [list(column) for column in columns],
    )


def _split(cursor, delivery: Delivery) -> None:
    """A 413: keep the first half in this batch; the second half becomes the next batch."""
    cursor.execute(
        "SELECT id FROM integrations_deliveryevent WHERE delivery_id = %s ORDER BY id",
        [delivery.pk],
    )
    item_ids = [row[0] for row in cursor.fetchall()]
    half = max(1, len(item_ids) // 2)
    first, second = item_ids[:half], item_ids[half:]
    delivery.event_count = len(first)
    if not second:
        return
    cursor.execute(
        """
        INSERT INTO integrations_delivery (tenant_id, destination_id, state, event_count,
            attempt_count, attempt_limit, last_error_kind, failure_reason, is_test, created_at,
            schedule_start, first_item_id)
        VALUES (%s, %s, 'pending', %s, 0, %s, '', '', false, statement_timestamp(), 0, %s)
        RETURNING id
        """,
        [
            delivery.tenant_id,
            delivery.destination_id,
            len(second),
            settings.WEBHOOK_MAX_ATTEMPTS,
            second[0],
        ],
    )
    new_id = cursor.fetchone()[0]
    cursor.execute(
        "UPDATE integrations_deliveryevent SET delivery_id = %s WHERE id = ANY(%s)",
        [new_id, second],
    )
    # The first half is sent next as a fresh batch: its schedule starts again.
    cursor.execute(
        "UPDATE integrations_delivery SET schedule_start = attempt_count WHERE id = %s",
        [delivery.pk],
    )


def _set_next_due(cursor, finished, updates: dict, rows: dict) -> None:
    """For destinations whose batch finished: due now if more work waits, else idle."""
    if not finished:
        return
    ids = [str(claim.destination.pk) for claim, _ in finished]
    cursor.execute(
        """
        SELECT d FROM unnest(%s::uuid[]) AS d
        WHERE EXISTS (SELECT 1 FROM integrations_delivery dl
                      WHERE dl.destination_id = d AND NOT dl.is_test
                        AND dl.state IN ('pending', 'delivering', 'retrying'))
           OR EXISTS (SELECT 1 FROM integrations_deliveryevent de
                      WHERE de.destination_id = d AND de.delivery_id IS NULL)
        """,
        [ids],
    )
    busy = {row[0] for row in cursor.fetchall()}
    for claim, _ in finished:
        pk = claim.destination.pk
        pending = updates[pk]
        pending["next_due_at"] = rows[pk]["now"] if pk in busy else None


def _update_destinations(cursor, updates: dict, rows: dict) -> None:
    """Write every recorded destination's bookkeeping back and free its lease: one statement."""
    if not updates:
        return
    columns: dict[str, list] = {"id": [], **{column: [] for column in BOOKKEEPING}}
    for destination_id, values in updates.items():
        alerts = values.pop("_alerts", [])
        not_before = values.pop("_not_before", None)
        if not_before is not None and values.get("next_due_at") is not None:
            values["next_due_at"] = max(values["next_due_at"], not_before)
        columns["id"].append(str(destination_id))
        for column in BOOKKEEPING:
            columns[column].append(values.get(column, rows[destination_id][column]))
        for health, reason in alerts:
            transaction.on_commit(partial(publish_health, destination_id, health, reason))
    cursor.execute(DEST_UPDATE_SQL, list(columns.values()))


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


# Synchronous drain (tests, tools) -----------------------------------------------------------
def claim_batch(destination_id) -> Claim | None:
    """Lease one destination's next due batch, or None when nothing is due."""
    claims, lost = claim_many(limit=1, only=[destination_id])
    record_lost(lost)
    return claims[0] if claims else None


def send_claim(claim: Claim) -> Outcome:
    """Send a claim's request now, synchronously (the loop sends asynchronously instead)."""
    from integrations.sender import get_sender

    if claim.request is None:
        return failed_outcome(claim, claim.error or "The request could not be prepared.")
    return get_sender().send(claim.destination, claim.request, timeout=claim.timeout)


def deliver_one(destination_id) -> Delivery | None:
    """Claim, send and record one batch; None when nothing was due."""
    claim = claim_batch(destination_id)
    if claim is None:
        return None
    return record_outcome(claim, send_claim(claim))


def drain(destination_id, *, max_batches: int = 200) -> int:
    """Deliver due batches for one destination until none is due (bounded); the count sent."""
    sent = 0
    while sent < max_batches:
        if deliver_one(destination_id) is None:
            break
        sent += 1
    return sent


# Sweep --------------------------------------------------------------------------------------
def sweep() -> list:
    """Repair lost bookkeeping: destinations with work but no due time become due now."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE integrations_destination d SET next_due_at = statement_timestamp()
            WHERE d.next_due_at IS NULL AND (
                EXISTS (SELECT 1 FROM integrations_deliveryevent de
                        WHERE de.destination_id = d.id AND de.delivery_id IS NULL)
                OR EXISTS (SELECT 1 FROM integrations_delivery dl
                           WHERE dl.destination_id = d.id AND NOT dl.is_test
                             AND dl.state IN ('pending', 'delivering', 'retrying')))
            RETURNING d.id
            """
        )
        return [row[0] for row in cursor.fetchall()]


def next_due_in(default: float) -> float:
    """Seconds until the earliest due time (for the loop's idle wait), at most `default`."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXTRACT(EPOCH FROM min(next_due_at) - statement_timestamp()) "
            "FROM integrations_destination "
            "WHERE active AND disabled_at IS NULL AND next_due_at IS NOT NULL "
            "AND (lease_until IS NULL OR lease_until < statement_timestamp())"
        )
        value = cursor.fetchone()[0]
    if value is None:
        return default
    return max(0.0, min(float(value), default))


def purge_retention() -> int:
    """Delete delivered batches (with attempts) older than the retention, then orphan events."""
    cutoff = timezone.now() - timedelta(days=settings.WEBHOOK_RETENTION_DAYS)
    deleted = 0
    for _ in range(10_000):  # bounded: 5,000 batches a round
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
