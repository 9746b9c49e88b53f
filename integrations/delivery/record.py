"""Record: the attempts of finished sends and their consequences, in one short transaction.

The retry policy (`integrations.delivery.policy`) decides; this module writes: attempts in
bulk, deliveries and destinations back in one statement each, under the destinations' row
locks, and only for claims whose lease is still theirs (fencing).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cache, partial
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from integrations import events
from integrations.audit_events import record_auto_disable
from integrations.delivery.client import Outcome
from integrations.delivery.policy import Action, Attempted, Policy, decide
from integrations.delivery.queue import (
    DESTINATION_COLUMNS,
    WAITING_SQL,
    Claim,
    claim_chunk,
    new_batches,
    prepare_claim,
    wake_many,
)
from integrations.models import (
    Attempt,
    Delivery,
    DeliveryState,
    Destination,
    ErrorKind,
    Health,
)
from integrations.redaction import MIN_MASKED_LENGTH, destination_secret_values, mask_echoed_secrets

logger = logging.getLogger("integrations.delivery.record")


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


def mask_excerpt_for(delivery: Delivery, destination: Destination | None, excerpt: str) -> str:
    """`mask_echoed_secrets` with the destination's secrets (the delivery's destination is
    loaded, in its tenant, only when none is given and the excerpt could hold a secret)."""
    if not excerpt or len(excerpt) < MIN_MASKED_LENGTH:
        return excerpt
    if destination is None:
        destination = (
            Destination.objects.for_tenant(delivery.tenant_id)
            .filter(pk=delivery.destination_id)
            .first()
        )
    if destination is None:
        return excerpt
    return mask_echoed_secrets(excerpt, destination_secret_values(destination))


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
        response_excerpt=mask_excerpt_for(delivery, destination, outcome.response_excerpt),
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
SELECT id, lease_owner, rate_limit_per_second, active, batching, statement_timestamp() AS now,
       {", ".join(BOOKKEEPING)}
FROM integrations_destination WHERE id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE
"""  # noqa: S608 (constants only)
DEST_UPDATE_SQL = f"""
UPDATE integrations_destination d
SET {", ".join(f"{column} = v.{column}" for column in BOOKKEEPING)},
    lease_owner = v.lease_owner,
    lease_until = CASE WHEN v.lease_owner = '' THEN NULL ELSE statement_timestamp()
                       + make_interval(secs => d.timeout_seconds + %s) END
FROM unnest(%s::uuid[], %s::text[], {", ".join(f"%s::{kind}[]" for kind in BOOKKEEPING.values())})
     AS v(id, lease_owner, {", ".join(BOOKKEEPING)})
WHERE d.id = v.id
"""  # noqa: S608 (constants only)
# The same, returning the rows of the streams that go on (their lease renewed).
DEST_UPDATE_RETURNING_SQL = f"""
WITH u AS ({DEST_UPDATE_SQL} RETURNING {DESTINATION_COLUMNS})
SELECT * FROM u WHERE lease_owner <> ''
"""  # noqa: S608 (constants only)


def record_lost(lost: Sequence[Claim]) -> None:
    """Attempts whose worker died mid-send: recorded as failed; they already counted."""
    if lost:
        Attempt.objects.bulk_create(
            [_attempt_row(c.delivery, failed_outcome(c, LOST_DETAIL)) for c in lost]
        )


def record_many(results: Sequence[tuple[Claim, Outcome]]) -> list[Recorded]:
    """Store the attempts and move deliveries and destinations on, in one transaction."""
    return record_and_continue(results)[0]


def record_and_continue(
    results: Sequence[tuple[Claim, Outcome]], *, owner: int | None = None, most: int | None = None
) -> tuple[list[Recorded], list[Claim]]:
    """record_many, and with an `owner` (a delivery loop) in the same transaction: each stream
    whose batch was just delivered and whose next batch is due now keeps its lease (a new
    token) and gets that batch at once, without going back through the claim. The stream
    stays one batch in flight; what it may not do now (paused, held, disabled, rate limited,
    an open batch to retry) it does through the claim as before. At most `most` streams go on
    (the loop's fair share): the others are due now, and the loops are woken to claim them."""
    if not results:
        return [], []
    continued: list[Claim] = []
    policy = Policy.from_settings()
    done: list[Recorded] = []
    # Built (and their excerpts masked: decrypting secrets) before the destination locks.
    rows_built = [_attempt_row(c.delivery, o, c.destination) for c, o in results]
    with transaction.atomic(), connection.cursor() as cursor:
        # Destinations first, in id order: publishers and the delete service lock them too.
        # (Pipelined, the transaction's BEGIN travels with it.)
        with connection.connection.pipeline():
            cursor.execute(DEST_LOCK_SQL, [sorted({str(c.destination.pk) for c, _ in results})])
            fetched = cursor.fetchall()
        names = [column.name for column in cursor.description]
        rows = {row[0]: dict(zip(names, row, strict=True)) for row in fetched}
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
            delivery = claim.delivery  # what _apply decided on (recorded.delivery)
            if recorded.action == Action.SPLIT:
                _split(cursor, delivery)
            delivery_updates.append(_delivery_values(delivery))
            if recorded.action in (Action.DELIVER, Action.FAIL, Action.SPLIT):
                finished.append((claim, delivery))
            done.append(recorded)
        # Pipelined: the writes and the two queries that follow them travel in one round trip
        # (executed in order, as before; an error still surfaces inside this transaction).
        with connection.connection.pipeline(), connection.cursor() as others:
            _insert_attempts(cursor, attempts)
            _update_deliveries(cursor, delivery_updates)
            may_go_on = owner is not None and bool(finished)
            if may_go_on:
                others.execute(OTHERS_DUE_SQL)  # read only when a stream may go on
            fresh = _set_next_due(cursor, finished, destination_updates, rows)
            others_due = bool(others.fetchone()[0]) if may_go_on else True
        leases: dict = {}
        token = ""
        ready = _continuable(fresh, destination_updates, rows) if owner is not None else []
        # As many as one claim would take, and the loop's share; the others go back through
        # the claim (due now), where another loop may take them.
        keep = claim_chunk() if most is None else max(0, min(claim_chunk(), most))
        if len(ready) > keep:
            ready = ready[:keep]
            transaction.on_commit(wake_many)
        if ready and not others_due:
            token = f"{owner}:{uuid.uuid4().hex[:16]}"
            leases = {pk: token for pk in ready}
        after = {c.destination.pk: c.delivery.first_item_id or 0 for c, _ in results}
        by_id, waiting = _update_destinations(cursor, destination_updates, rows, leases, after)
        if by_id:
            # Under these row locks their waiting events cannot go (publishers and deletes lock
            # the rows too), so every one of them gets a batch.
            continued = new_batches(cursor, by_id, list(by_id), token, idle=[], waiting=waiting)
    for claim in continued:
        prepare_claim(claim)
    return done, continued


# Whether any other stream is due and free. Streams that go on keep their place in flight, so
# they yield it whenever another stream waits: then everyone goes back through the claim, which
# takes them round-robin across tenants (a fresh tenant's event is not kept waiting behind
# other tenants' backlogs when every place in flight is taken). One index probe (destination_due).
OTHERS_DUE_SQL = """
SELECT EXISTS (
    SELECT 1 FROM integrations_destination d
    WHERE d.active AND d.next_due_at IS NOT NULL AND d.next_due_at <= statement_timestamp()
      AND d.disabled_at IS NULL
      AND (d.lease_until IS NULL OR d.lease_until < statement_timestamp()))
"""


def _continuable(fresh: list, updates: dict, rows: dict) -> list:
    """Of the streams whose head batch was delivered and that have only waiting events, those
    that may send their next batch now (no hold, pause, disable or rate limit in the way)."""
    ready = []
    for pk in fresh:
        values, row = updates[pk], rows[pk]
        due = values.get("next_due_at")
        not_before = values.get("_not_before")
        if (
            row["active"]
            and due is not None
            and due <= row["now"]
            and (not_before is None or not_before <= row["now"])
            and values.get("held_since", row["held_since"]) is None
            and values.get("disabled_at", row["disabled_at"]) is None
        ):
            ready.append(pk)
    return ready


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


@cache
def _attempt_insert() -> tuple[str, tuple]:
    """INSERT of Attempt rows from one JSON document (json_to_recordset), column by column from
    the model, and the fields it reads: one parameter encoded in C, one statement text (so the
    loop's connection prepares it once), where bulk_create compiled a placeholder per value."""
    fields = tuple(f for f in Attempt._meta.concrete_fields if not f.primary_key)
    columns = ", ".join(f.column for f in fields)
    types = ", ".join(f"{f.column} {f.db_type(connection)}" for f in fields)
    sql = (
        f"INSERT INTO {Attempt._meta.db_table} ({columns}) "  # noqa: S608 (model metadata)
        f"SELECT {columns} FROM json_to_recordset(%s::json) AS r({types})"
    )
    return sql, fields


def _insert_attempts(cursor, attempts: list[Attempt]) -> None:
    if not attempts:
        return
    sql, fields = _attempt_insert()
    rows = [{f.column: getattr(a, f.attname) for f in fields} for a in attempts]
    # Times and UUIDs as text (PostgreSQL reads both back), as the audit log's JSON does.
    cursor.execute(sql, [json.dumps(rows, default=str, separators=(",", ":"))])


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


def _set_next_due(cursor, finished, updates: dict, rows: dict) -> list:
    """For destinations whose batch finished: due now if more work waits, else idle. Returns
    those whose batch was delivered and that have only waiting events (no open batch)."""
    if not finished:
        return []
    # One probe of each index per destination (not a scan of every open batch): waiting
    # events come after the finished batch's first item (batches take the oldest), so the
    # probe starts there and not among the rows already handed out.
    cursor.execute(
        """
        SELECT q.d, o.id IS NOT NULL, w.id IS NOT NULL
        FROM unnest(%s::uuid[], %s::bigint[]) AS q(d, after)
        LEFT JOIN LATERAL (
            SELECT dl.id FROM integrations_delivery dl
            WHERE dl.destination_id = q.d AND NOT dl.is_test
              AND dl.state IN ('pending', 'delivering', 'retrying')
            ORDER BY dl.id DESC LIMIT 1) o ON true
        LEFT JOIN LATERAL (
            SELECT de.id FROM integrations_deliveryevent de
            WHERE de.destination_id = q.d AND de.delivery_id IS NULL AND de.id > q.after
            ORDER BY de.id LIMIT 1) w ON true
        """,
        [
            [str(claim.destination.pk) for claim, _ in finished],
            [claim.delivery.first_item_id or 0 for claim, _ in finished],
        ],
    )
    found = {row[0]: (row[1], row[2]) for row in cursor.fetchall() if row[1] or row[2]}
    fresh = []
    for claim, delivery in finished:
        pk = claim.destination.pk
        pending = updates[pk]
        pending["next_due_at"] = rows[pk]["now"] if pk in found else None
        is_open, waiting = found.get(pk, (False, False))
        if delivery.state == DeliveryState.DELIVERED and waiting and not is_open:
            fresh.append(pk)
    return fresh


def _update_destinations(
    cursor, updates: dict, rows: dict, leases: dict, after: dict
) -> tuple[dict[Any, Destination], list]:
    """Write every recorded destination's bookkeeping back and free its lease (or renew it,
    for the streams in `leases`: id → new token) in one statement; for the streams that go
    on, return their rows and their next waiting events (queue.WAITING_SQL, same round trip),
    which come after the outbox id in `after` (the first item of the batch just delivered)."""
    if not updates:
        return {}, []
    columns: dict[str, list] = {"id": [], "lease_owner": [], **{c: [] for c in BOOKKEEPING}}
    for destination_id, values in updates.items():
        alerts = values.pop("_alerts", [])
        not_before = values.pop("_not_before", None)
        if not_before is not None and values.get("next_due_at") is not None:
            values["next_due_at"] = max(values["next_due_at"], not_before)
        columns["id"].append(str(destination_id))
        columns["lease_owner"].append(leases.get(destination_id, ""))
        for column in BOOKKEEPING:
            columns[column].append(values.get(column, rows[destination_id][column]))
        for health, reason in alerts:
            transaction.on_commit(partial(publish_health, destination_id, health, reason))
    params = [1 + settings.WEBHOOK_LEASE_MARGIN, *columns.values()]
    if not leases:
        cursor.execute(DEST_UPDATE_SQL, params)
        return {}, []
    # The streams that go on come back as they are now (settings, secrets), and their next
    # events are read in the same round trip (batch sizes from the rows read under the lock).
    ids = list(leases)
    sizes = [Destination.events_per_request(rows[pk]["batching"]) for pk in ids]
    with connection.connection.pipeline(), connection.cursor() as waiting:
        waiting.execute(WAITING_SQL, [[str(pk) for pk in ids], sizes, [after[pk] for pk in ids]])
        cursor.execute(DEST_UPDATE_RETURNING_SQL, params)
        items = waiting.fetchall()
        going_on = cursor.fetchall()
    # DESTINATION_COLUMNS: every concrete field, in order (none needs a converter).
    names = [field.attname for field in Destination._meta.concrete_fields]
    destinations = (Destination.from_db(connection.alias, names, row) for row in going_on)
    return {destination.pk: destination for destination in destinations}, items


def publish_health(destination_id, health: str, reason: str) -> None:
    """Tell the tenant: a `system.health` event for its destinations."""
    destination = Destination.objects.select_related("tenant").filter(pk=destination_id).first()
    if destination is None:
        return
    severity = {"recovered": "info", "failing": "high", "disabled": "critical"}[health]
    events.event_publish(
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
