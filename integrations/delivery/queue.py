"""The queue: take due destinations under a lease and build their next batches.

The database is the source of truth. Each destination is a stream: its waiting events (outbox
rows in `integrations_deliveryevent` without a delivery) go out in the order they were
accepted, one batch in flight at a time, and the stream advances only when a batch is
acknowledged (2xx) or has failed permanently (`integrations.delivery.record`).

`claim_many`: one statement takes up to N due destinations under a lease, round-robin across
tenants (each tenant's first due destination, then each one's second...) and at most
`WEBHOOK_TENANT_MAX_IN_FLIGHT` per tenant, with `FOR UPDATE SKIP LOCKED`; a few more
statements build the batches of all of them at once.

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
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.db.backends.postgresql.base import ServerBindingCursor  # type: ignore[attr-defined]
from django.utils import timezone

from integrations.delivery.signing import PreparedRequest, prepare, serialize_body
from integrations.models import (
    Delivery,
    DeliveryState,
    Destination,
)

logger = logging.getLogger("integrations.delivery.queue")

NOTIFY_CHANNEL = "oneprotect_delivery"
PREPARE_THRESHOLD = 2
# Advisory lock namespaces (the first of two int4 keys).
OWNER_LOCK_NS = 0x0E1
SLOT_LOCK_NS = 0x0E2


# Connections --------------------------------------------------------------------------------
def use_prepared_statements() -> None:
    """Server-side binding on this thread's connection, each statement prepared on its second
    run: the delivery loop sends the same dozen statements thousands of times, and planning
    them again each time cost PostgreSQL as much as running them. Only the loop's own
    connection (web processes keep Django's defaults, which suit connection poolers)."""
    connection.ensure_connection()
    raw = connection.connection
    raw.cursor_factory = ServerBindingCursor
    raw.prepare_threshold = PREPARE_THRESHOLD


@contextmanager
def server_binding() -> Iterator[None]:
    """Bind parameters on the server for the cursors opened in this block (none prepared).

    For the bulk statements of publishing: a batch travels as one large parameter, which
    Django's client-side binding would otherwise quote into the statement's text for the
    server to scan again. Nothing is prepared, so connection poolers are unaffected.
    """
    connection.ensure_connection()
    raw = connection.connection
    if raw.cursor_factory is ServerBindingCursor:  # the delivery loop's connection already is
        yield
        return
    factory, threshold = raw.cursor_factory, raw.prepare_threshold
    raw.cursor_factory, raw.prepare_threshold = ServerBindingCursor, None
    try:
        yield
    finally:
        raw.cursor_factory, raw.prepare_threshold = factory, threshold


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


def owner_key(prefer: int | None = None) -> int:
    """This process's lease owner key, held as a session advisory lock on its connection.

    `prefer`: the key this process held on a connection it lost (a database restart, a
    dropped session). Taking it back at once keeps the leases of the sends still in flight
    alive, so that no other loop sends those batches again."""
    global _owner
    connection.ensure_connection()
    raw = id(connection.connection)
    if _owner is not None and _owner[1] == raw:
        return _owner[0]
    candidates = ([prefer] if prefer else []) + [random.randint(1, 2**31 - 1) for _ in range(10)]
    for key in candidates:
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
# A destination row by name, column by column (not d.*): a prepared statement keeps its result
# type, so a column added by a migration must not change what an old one returns.
DESTINATION_COLUMNS = ", ".join(f"d.{field.column}" for field in Destination._meta.concrete_fields)
LIVE_OWNERS = f"""
    live AS MATERIALIZED (
        SELECT l.objid::bigint AS key FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.classid = {OWNER_LOCK_NS} AND l.objsubid = 2
          AND l.granted)"""  # noqa: S608
OWNER_ALIVE = "NULLIF(split_part(d.lease_owner, ':', 1), '')::bigint IN (SELECT key FROM live)"
# A lease is free once it expired, or when its owner is gone: its advisory lock is missing
# although the lease was granted since the server started. (A restart drops every lock, but not
# the sends in flight: their owners take their keys back on reconnecting, and until then
# leases from before the restart hold until they expire.)
LEASE_FREE = (
    "(d.lease_until IS NULL OR d.lease_until < statement_timestamp() OR ("
    f"NOT {OWNER_ALIVE} AND d.lease_until - make_interval(secs => d.timeout_seconds + "
    "%(margin)s) > pg_postmaster_start_time()))"
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
RETURNING {DESTINATION_COLUMNS}
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
FROM unnest(%s::uuid[], %s::int[], %s::bigint[]) AS q(destination_id, size, after)
CROSS JOIN LATERAL (
    SELECT id, event_id FROM integrations_deliveryevent
    WHERE destination_id = q.destination_id AND delivery_id IS NULL AND id > q.after
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


def claim_chunk() -> int:
    """How many streams one claim leases at most: WEBHOOK_CLAIM_MAX_EVENTS worth of full
    batches (at least 1). Bounds what a claim holds in memory before the bodies are built."""
    batch = max(1, settings.WEBHOOK_BATCH_SIZE)
    return max(1, settings.WEBHOOK_CLAIM_MAX_EVENTS // batch)


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
            claims += new_batches(cursor, by_id, fresh, token, idle)
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
        prepare_claim(claim)
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


def new_batches(
    cursor, by_id, fresh: list, owner: str, idle: list, waiting: list | None = None
) -> list[Claim]:
    """Open one new batch for each destination with waiting events (a fixed few statements);
    `waiting`: WAITING_SQL's rows for them, when already read."""
    if not fresh:
        return []
    if waiting is None:
        sizes = [by_id[pk].max_batch_events() for pk in fresh]
        cursor.execute(WAITING_SQL, [fresh, sizes, [0] * len(fresh)])
        waiting = cursor.fetchall()
    rows: dict = {}
    for row in waiting:
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
    pairs_items: list[int] = []
    pairs_destinations: list[str] = []
    for destination, item_ids, _ in batches:
        pairs_items += item_ids
        pairs_destinations += [str(destination.pk)] * len(item_ids)
    # One statement opens the batches and hands them their items.
    cursor.execute(
        """
        WITH opened AS (
            INSERT INTO integrations_delivery (tenant_id, destination_id, state, event_count,
                attempt_count, attempt_limit, last_error_kind, failure_reason, is_test,
                created_at, schedule_start, first_item_id)
            SELECT b.tenant_id, b.destination_id, 'delivering', b.events, 1, %s, '', '', false,
                   %s, 0, b.first_item
            FROM unnest(%s::bigint[], %s::uuid[], %s::int[], %s::bigint[])
                 WITH ORDINALITY AS b(tenant_id, destination_id, events, first_item, n)
            ORDER BY b.n
            RETURNING id, destination_id
        ), handed AS (
            UPDATE integrations_deliveryevent de SET delivery_id = opened.id
            FROM unnest(%s::bigint[], %s::uuid[]) AS p(item_id, destination_id)
            JOIN opened ON opened.destination_id = p.destination_id
            WHERE de.id = p.item_id
        )
        SELECT id, destination_id FROM opened
        """,
        [
            settings.WEBHOOK_MAX_ATTEMPTS,
            now,
            [d.tenant_id for d, _, _ in batches],
            [str(d.pk) for d, _, _ in batches],
            [len(envelopes) for _, _, envelopes in batches],
            [item_ids[0] for _, item_ids, _ in batches],
            pairs_items,
            pairs_destinations,
        ],
    )
    new_ids = {row[1]: row[0] for row in cursor.fetchall()}
    claims = []
    for destination, item_ids, envelopes in batches:
        delivery = Delivery(
            pk=new_ids[destination.pk],
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
    return claims


def prepare_claim(claim: Claim) -> None:
    """Serialize once and sign; a failure here is recorded as the attempt's outcome."""
    try:
        # The exact bytes that are signed: the documented compact form, so that a receiver's
        # "re-serialized?" check in the signature checker can reproduce it.
        body = serialize_body(claim.destination, claim.envelopes)
        claim.request = prepare(claim.destination, body, message_id=f"msg_{claim.delivery.pk}")
        claim.envelope_texts = []  # the body holds them now: a loop keeps one copy in flight
    except Exception as error:  # e.g. a secret that no configured key can decrypt
        logger.exception("could not prepare a request for destination %s", claim.destination.pk)
        claim.error = f"The request could not be prepared ({type(error).__name__})."


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
