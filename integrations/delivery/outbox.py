"""The outbox: events waiting for delivery to a destination (DeliveryEvent rows).

Publishing writes here in bulk, in the publisher's transaction: one INSERT for every
(event, destination) pair of a batch, then the idle destinations among them are marked due,
and one after-commit hook wakes delivery. The engine reads and advances the rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from functools import partial

from django.db import connection, transaction

from integrations.delivery.queue import wake_many


def enqueue(event_pks: Sequence[int], destination_ids: Sequence) -> list:
    """Queue event `event_pks[i]` for destination `destination_ids[i]` (one row per pair).

    Marks the idle (active) destinations among them due now and wakes the delivery loops once,
    after commit. Returns the destinations that were idle. Three statements, whatever the
    number of rows.
    """
    if len(event_pks) != len(destination_ids):
        raise ValueError("event_pks and destination_ids must be parallel lists.")
    if not event_pks:
        return []
    # As text once per destination (a non-UUID is refused here, before any SQL).
    canonical = {d: str(uuid.UUID(str(d))) for d in set(destination_ids)}
    destinations = sorted(set(canonical.values()))
    with connection.cursor() as cursor:
        # Lock every destination first, in id order (no deadlocks between publishers). A worker
        # recording its last batch for one of them then either waits for us and sees these
        # rows, or has finished and left it idle, and we mark it due; locking only the idle
        # ones would let a finishing worker miss rows it cannot see yet. A destination deleted
        # meanwhile is simply not there any more, and gets nothing.
        cursor.execute(
            "SELECT id FROM integrations_destination WHERE id = ANY(%s::uuid[]) "
            "ORDER BY id FOR UPDATE",
            [array_literal(destinations)],
        )
        present = array_literal(str(row[0]) for row in cursor.fetchall())
        # After the lock: per destination, outbox ids then follow commit order (a second
        # publisher waits here for the first to commit), which is the order of delivery.
        cursor.execute(
            """
            INSERT INTO integrations_deliveryevent (destination_id, event_id, delivery_id)
            SELECT pair.destination_id, pair.event_id, NULL
            FROM unnest(%s::bigint[], %s::uuid[]) AS pair(event_id, destination_id)
            WHERE pair.destination_id = ANY(%s::uuid[])
            ORDER BY pair.event_id, pair.destination_id
            """,
            [
                array_literal(int(pk) for pk in event_pks),
                array_literal(canonical[d] for d in destination_ids),
                present,
            ],
        )
        cursor.execute(
            "UPDATE integrations_destination SET next_due_at = statement_timestamp() "
            "WHERE id = ANY(%s::uuid[]) AND next_due_at IS NULL AND active RETURNING id",
            [present],
        )
        idle = [row[0] for row in cursor.fetchall()]
    if idle:
        transaction.on_commit(partial(wake_many, idle))
    return idle


def array_literal(values: Iterable[int | uuid.UUID | str]) -> str:
    """A PostgreSQL array literal of integers or UUIDs (nothing to escape; callers pass
    nothing else): one text parameter, not a list the driver quotes element by element."""
    return "{" + ",".join(str(value) for value in values) + "}"
