"""Helpers for engine tests: destinations on a loopback receiver, and a clock to advance."""

from __future__ import annotations

from django.utils import timezone

from integrations.catalogue import EventType
from integrations.models import Delivery, Destination
from integrations.services import destination_create

SECRET = "s3cret-for-tests-0123456789abcdef"


def allow_receiver(settings, *receivers) -> None:
    """Let destinations reach these loopback receivers (development/test setting)."""
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOWED_PRIVATE_TARGETS = [f"127.0.0.1:{r.port}" for r in receivers]


def make_destination(tenant, receiver, **data) -> Destination:
    receiver.secrets = [data.get("secret", SECRET)]
    fields = {
        "name": f"dest-{receiver.port}-{Destination.objects.count()}",
        "endpoint_url": receiver.url,
        "secret": SECRET,
        "event_types": list(EventType.values),
        "timeout_seconds": 5,
        **data,
    }
    destination, _ = destination_create(tenant=tenant, actor=None, data=fields)
    return destination


def advance_retries(destination: Destination) -> None:
    """Make scheduled retries due now (instead of waiting for the clock)."""
    now = timezone.now()
    Delivery.objects.filter(destination=destination, state="retrying").update(next_attempt_at=now)
    Destination.objects.filter(pk=destination.pk, next_due_at__isnull=False).update(
        next_due_at=now, lease_until=None
    )
