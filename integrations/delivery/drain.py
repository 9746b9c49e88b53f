"""The synchronous path (tests, tools): claim, send and record one destination's batches."""

from __future__ import annotations

import time

from integrations.delivery.client import Outcome
from integrations.delivery.queue import Claim, claim_many
from integrations.delivery.record import failed_outcome, record_lost, record_outcome
from integrations.delivery.sender import get_sender
from integrations.models import (
    Delivery,
)


def claim_batch(destination_id) -> Claim | None:
    """Lease one destination's next due batch, or None when nothing is due."""
    claims, lost = claim_many(limit=1, only=[destination_id])
    record_lost(lost)
    return claims[0] if claims else None


def send_claim(claim: Claim) -> Outcome:
    """Send a claim's request now, synchronously (the loop sends asynchronously instead)."""
    if claim.request is None:
        return failed_outcome(claim, claim.error or "The request could not be prepared.")
    return get_sender().send(claim.destination, claim.request, timeout=claim.timeout)


def deliver_one(destination_id) -> Delivery | None:
    """Claim, send and record one batch; None when nothing was due."""
    claim = claim_batch(destination_id)
    if claim is None:
        return None
    return record_outcome(claim, send_claim(claim))


def drain(destination_id, *, max_batches: int = 200, max_seconds: float | None = None) -> int:
    """Deliver due batches for one destination until none is due, bounded in count and (when
    `max_seconds` is given) in time; the count sent."""
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    sent = 0
    while sent < max_batches and (deadline is None or time.monotonic() < deadline):
        if deliver_one(destination_id) is None:
            break
        sent += 1
    return sent
