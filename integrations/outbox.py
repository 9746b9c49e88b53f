"""The outbox: events waiting for delivery to each destination (`integrations_deliveryevent`).

Publishing adds rows here in the publisher's transaction; the engine claims them in the order
they were accepted (see `integrations.engine`).
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection, transaction

from integrations import engine


def enqueue(event_pks: Sequence[int], destination_ids: Sequence) -> list:
    """Queue event i for destination i (parallel lists); wake the delivery loops after commit.

    Every matched destination row is locked (in id order, so publishers never deadlock)
    before it is marked due: a worker recording its last batch for that destination either
    waits for this transaction and then sees the new rows, or has finished, and we mark the
    destination due again. Either way no event waits for a sweep.
    """
    if not event_pks:
        return []
    targets = sorted({str(pk) for pk in destination_ids})
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO integrations_deliveryevent (destination_id, event_id, delivery_id)
            SELECT d, e, NULL FROM unnest(%s::uuid[], %s::bigint[]) AS p(d, e)
            ON CONFLICT DO NOTHING
            """,
            [[str(pk) for pk in destination_ids], list(event_pks)],
        )
        cursor.execute(
            "SELECT id FROM integrations_destination WHERE id = ANY(%s::uuid[]) "
            "ORDER BY id FOR UPDATE",
            [targets],
        )
        cursor.execute(
            "UPDATE integrations_destination SET next_due_at = statement_timestamp() "
            "WHERE id = ANY(%s::uuid[]) AND next_due_at IS NULL AND active",
            [targets],
        )
    transaction.on_commit(lambda: engine.wake_many(targets))
    return targets
