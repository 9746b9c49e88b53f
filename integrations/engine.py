"""The delivery engine: plain functions over the database (claim, send, record)."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from integrations.models import Destination


def mark_due_now(destination_id) -> None:
    """Make a destination's waiting work due now and wake a worker once committed."""
    now = timezone.now()
    Destination.objects.filter(pk=destination_id, active=True).filter(
        Q(next_due_at__isnull=True) | Q(next_due_at__gt=now)
    ).update(next_due_at=now)
    transaction.on_commit(lambda: wake(destination_id))


def wake(destination_id) -> None:
    """Queue a task that drains the destination (the database stays the source of truth)."""
    from integrations.tasks import enqueue_drain

    enqueue_drain(destination_id)
