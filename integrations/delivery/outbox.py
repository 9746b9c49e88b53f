"""The outbox: events waiting for delivery to a destination (DeliveryEvent rows).

Publishing (integrations.events) writes here in bulk, in the publisher's transaction: it locks
the batch's destinations, inserts the events and their outbox rows in one statement, then marks
the idle destinations among them due, and one after-commit hook wakes delivery. The engine
reads and advances the rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from functools import partial

from django.db import connection, transaction

from integrations.delivery.queue import wake_many


def lock_destinations(destination_ids: Sequence[str]) -> set[str]:
    """Lock the destinations a batch is about to be queued for, in id order (no deadlocks
    between publishers), before its events are inserted; return the ids of the idle active
    ones (under the lock, no worker can make them due meanwhile), for mark_due.

    A second publisher for the same destination waits here until the first commits, so
    that, per destination, outbox ids follow commit order, which is the order of delivery.
    A worker recording its last batch for one of them either waits for us and sees our rows,
    or has finished and left it idle, and mark_due marks it due; locking only the idle ones
    would let a finishing worker miss rows it cannot see yet. A destination deleted
    meanwhile is simply not there any more, and gets nothing (the insert joins on it).
    """
    if not destination_ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id::text, next_due_at IS NULL AND active FROM integrations_destination "
            "WHERE id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE",
            [array_literal(destination_ids)],
        )
        return {destination_id for destination_id, idle in cursor.fetchall() if idle}


def mark_due(destination_ids: Sequence[str]) -> list:
    """Mark the idle (active) ones of these locked destinations due now, and wake the
    delivery loops once, after commit. Returns the destinations that were idle. No
    statement when there are none: a busy stream is already due."""
    if not destination_ids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE integrations_destination SET next_due_at = statement_timestamp() "
            "WHERE id = ANY(%s::uuid[]) AND next_due_at IS NULL AND active RETURNING id",
            [array_literal(destination_ids)],
        )
        idle = [row[0] for row in cursor.fetchall()]
    if idle:
        transaction.on_commit(partial(wake_many, idle))
    return idle


def delete_waiting_rows(sender, instance, **kwargs) -> None:
    """Receiver of `pre_delete` for Destination: delete its waiting outbox rows.

    Its delivered rows go with its deliveries; these are the rest (DeliveryEvent explains why
    Django does not cascade them). The destination's lock first, as publishers take it: a
    batch being queued for it commits before the rows are read, and a later one finds the
    destination gone.
    """
    lock_destinations([str(instance.pk)])
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM integrations_deliveryevent "
            "WHERE destination_id = %s AND delivery_id IS NULL",
            [instance.pk],
        )


def array_literal(values: Iterable[int | uuid.UUID | str]) -> str:
    """A PostgreSQL array literal of integers or UUIDs (nothing to escape; callers pass
    nothing else): one text parameter, not a list the driver quotes element by element."""
    return "{" + ",".join(str(value) for value in values) + "}"
