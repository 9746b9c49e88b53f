"""Writes to destinations: each in one transaction, with its audit entry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import SECRET_MARK, diff, record
from integrations import crypto
from integrations.models import DEFAULT_SIGNATURE_HEADER, Destination, Provider
from portal.models import Tenant

CONFIG_FIELDS = [
    "name",
    "endpoint_url",
    "provider",
    "event_types",
    "min_severity",
    "include_child_tenants",
    "signature_header",
    "timeout_seconds",
    "rate_limit_per_second",
    "skip_tls_verify",
    "active",
]


def destination_snapshot(destination: Destination) -> dict[str, Any]:
    """The audited configuration: never a secret or a custom header value."""
    snapshot = {field: getattr(destination, field) for field in CONFIG_FIELDS}
    snapshot["custom_header_names"] = list(destination.custom_header_names)
    return snapshot


def _apply(destination: Destination, data: dict[str, Any]) -> None:
    for field in CONFIG_FIELDS:
        if field in data and data[field] is not None:
            setattr(destination, field, data[field])
    if "rate_limit_per_second" in data:
        destination.rate_limit_per_second = data["rate_limit_per_second"]
    if not destination.signature_header:
        destination.signature_header = DEFAULT_SIGNATURE_HEADER
    if "custom_headers" in data and data["custom_headers"] is not None:
        destination.set_custom_headers(data["custom_headers"])


@transaction.atomic
def destination_create(
    *, tenant: Tenant, actor, data: dict[str, Any]
) -> tuple[Destination, str | None]:
    """Create a destination; returns it and the generated secret (None when one was given)."""
    destination = Destination(tenant=tenant, provider=Provider.CUSTOM)
    _apply(destination, {"active": True, **data})
    generated = None if data.get("secret") else crypto.generate_secret()
    destination.set_secret(data.get("secret") or generated)
    destination.save()
    record(
        tenant=tenant,
        actor=actor,
        action="destination.created",
        target=destination,
        after={**destination_snapshot(destination), "secret": "set"},
    )
    return destination, generated


@transaction.atomic
def destination_update(*, destination: Destination, actor, data: dict[str, Any]) -> Destination:
    """Apply validated changes and audit the field diff (secrets only as "changed")."""
    destination = Destination.objects.select_for_update().get(pk=destination.pk)
    before = destination_snapshot(destination)
    old_headers = destination.custom_headers()
    was_active = destination.active
    _apply(destination, data)
    secret_changed = bool(data.get("secret")) and data["secret"] != destination.secret()
    if secret_changed:
        destination.set_secret(data["secret"])
    destination.save()
    changed_before, changed_after = diff(before, destination_snapshot(destination))
    if secret_changed:
        changed_before["secret"] = changed_after["secret"] = SECRET_MARK
    if data.get("custom_headers") is not None and data["custom_headers"] != old_headers:
        changed_before["custom_header_values"] = changed_after["custom_header_values"] = (
            SECRET_MARK
        )
    if changed_after:
        record(
            tenant=destination.tenant,
            actor=actor,
            action="destination.updated",
            target=destination,
            before=changed_before,
            after=changed_after,
        )
    if destination.active and not was_active:
        _resume(destination)
    return destination


@transaction.atomic
def destination_set_active(*, destination: Destination, actor, active: bool) -> Destination:
    """Pause or activate; activating a disabled destination resumes its kept backlog."""
    destination = Destination.objects.select_for_update().get(pk=destination.pk)
    if destination.active == active and destination.disabled_at is None:
        return destination
    destination.active = active
    if active:
        destination.disabled_at = None
        destination.disabled_reason = ""
        destination.failing_since = None
        _resume(destination)
    destination.save()
    record(
        tenant=destination.tenant,
        actor=actor,
        action="destination.activated" if active else "destination.paused",
        target=destination,
        before={"active": not active},
        after={"active": active},
    )
    return destination


def _resume(destination: Destination) -> None:
    """Make the destination's waiting work due now and wake a worker after commit."""
    from integrations import engine

    engine.mark_due_now(destination.pk)


@transaction.atomic
def destination_rotate_secret(
    *, destination: Destination, actor, new_secret: str | None = None, overlap_hours: int | None = None
) -> tuple[Destination, str | None]:
    """Replace the secret; the previous one keeps signing for the overlap window."""
    destination = Destination.objects.select_for_update().get(pk=destination.pk)
    if overlap_hours is None:
        overlap_hours = settings.WEBHOOK_SECRET_OVERLAP_HOURS
    generated = None if new_secret else crypto.generate_secret()
    if overlap_hours > 0:
        destination.previous_secret_encrypted = destination.secret_encrypted
        destination.previous_secret_expires_at = timezone.now() + timedelta(hours=overlap_hours)
    else:
        destination.previous_secret_encrypted = ""
        destination.previous_secret_expires_at = None
    destination.set_secret(new_secret or generated)
    destination.save()
    record(
        tenant=destination.tenant,
        actor=actor,
        action="destination.secret_rotated",
        target=destination,
        before={"secret": SECRET_MARK},
        after={"secret": SECRET_MARK, "previous_secret_valid_hours": overlap_hours},
    )
    return destination, generated


@transaction.atomic
def destination_delete(*, destination: Destination, actor) -> None:
    """Delete the destination with its deliveries (its events stay for other destinations)."""
    record(
        tenant=destination.tenant,
        actor=actor,
        action="destination.deleted",
        target=destination,
        before=destination_snapshot(destination),
    )
    destination.delete()
