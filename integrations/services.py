"""Writes to destinations: each in one transaction, with its audit entry."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from audit.services import SECRET_MARK, diff, lock_chain, record
from integrations import engine
from integrations.engine import describe_failure
from integrations.explain import Explanation, explain
from integrations.models import (
    DEFAULT_SIGNATURE_HEADER,
    Delivery,
    DeliveryState,
    Destination,
    Provider,
    ResendJob,
    ResendJobState,
)
from integrations.redaction import destination_secret_values, mask_echoed_secrets, mask_query
from integrations.sender import Outcome, get_sender
from integrations.signing import generate_secret_for
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
    "signature_scheme",
]


def destination_snapshot(destination: Destination) -> dict[str, Any]:
    """The audited configuration: never a secret or a custom header value."""
    snapshot = {field: getattr(destination, field) for field in CONFIG_FIELDS}
    # Query values often hold API keys: audit entries (read by auditors, and sent out as
    # `audit_log` events) only say that the query changed.
    snapshot["endpoint_url"] = mask_query(destination.endpoint_url)
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
    generated = None if data.get("secret") else generate_secret_for(destination.signature_scheme)
    destination.set_secret(data.get("secret") or generated)
    destination.save()
    record(
        tenant=tenant,
        actor=actor,
        action="destination.created",
        target=destination,
        after={**destination_snapshot(destination), "secret": SECRET_MARK},
    )
    return destination, generated


@transaction.atomic
def destination_update(*, destination: Destination, actor, data: dict[str, Any]) -> Destination:
    """Apply validated changes and audit the field diff (secrets only as "changed").

    Changing the signature scheme without a new secret generates one in the new scheme's
    format (no overlap: receivers must switch anyway); it is in `destination.generated_secret`
    to be shown once."""
    lock_chain(destination.tenant_id)  # the audit lock first, then the row (see lock_chain)
    destination = Destination.objects.select_for_update().get(pk=destination.pk)
    before = destination_snapshot(destination)
    old_headers = destination.custom_headers()
    was_active = destination.active
    old_scheme = destination.signature_scheme
    old_url = destination.endpoint_url
    _apply(destination, data)
    generated = None
    if destination.signature_scheme != old_scheme and not data.get("secret"):
        generated = generate_secret_for(destination.signature_scheme)
        data = {**data, "secret": generated}
    secret_changed = bool(data.get("secret")) and data["secret"] != destination.secret()
    if secret_changed:
        destination.set_secret(data["secret"])
    if destination.signature_scheme != old_scheme:
        destination.previous_secret_encrypted = ""
        destination.previous_secret_expires_at = None
    destination.save()
    destination.generated_secret = generated
    changed_before, changed_after = diff(before, destination_snapshot(destination))
    if secret_changed:
        changed_before["secret"] = changed_after["secret"] = SECRET_MARK
    if data.get("custom_headers") is not None and data["custom_headers"] != old_headers:
        changed_before["custom_header_values"] = changed_after["custom_header_values"] = SECRET_MARK
    if urlsplit(old_url).query != urlsplit(destination.endpoint_url).query:
        changed_before["endpoint_query"] = changed_after["endpoint_query"] = SECRET_MARK
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
    lock_chain(destination.tenant_id)  # the audit lock first, then the row (see lock_chain)
    destination = Destination.objects.select_for_update().get(pk=destination.pk)
    if destination.active == active and destination.disabled_at is None:
        return destination
    destination.active = active
    if active:
        destination.disabled_at = None
        destination.disabled_reason = ""
        destination.failing_since = None
    destination.save()
    if active:
        _resume(destination)
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
    engine.mark_due_now(destination.pk)


@transaction.atomic
def destination_rotate_secret(
    *,
    destination: Destination,
    actor,
    new_secret: str | None = None,
    overlap_hours: int | None = None,
) -> tuple[Destination, str | None]:
    """Replace the secret; the previous one keeps signing for the overlap window."""
    lock_chain(destination.tenant_id)  # the audit lock first, then the row (see lock_chain)
    destination = Destination.objects.select_for_update().get(pk=destination.pk)
    if overlap_hours is None:
        overlap_hours = settings.WEBHOOK_SECRET_OVERLAP_HOURS
    generated = None if new_secret else generate_secret_for(destination.signature_scheme)
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
    """Delete the destination with its deliveries (its events stay for other destinations).

    The audit lock first, then the row (see lock_chain); the engine locks the row to record
    an attempt, so a send that ends during the delete records nothing (the destination is
    gone) or finishes recording first.
    """
    lock_chain(destination.tenant_id)
    destination = Destination.objects.select_for_update().get(pk=destination.pk)
    record(
        tenant=destination.tenant,
        actor=actor,
        action="destination.deleted",
        target=destination,
        before=destination_snapshot(destination),
    )
    destination.delete()


# Delivery actions -----------------------------------------------------------------------------
@dataclass
class TestResult:
    delivery: Delivery
    outcome: Outcome
    explanation: Explanation | None


def destination_send_test(*, destination: Destination, actor) -> TestResult:
    """Send one test event now (one attempt, hard timeout) and record it; not in the stream."""
    from integrations.signing import event_envelope, prepare, serialize_body

    now = timezone.now()
    envelope = event_envelope(
        event_id=uuid.uuid4(),
        event_type="system.health",
        event_time=now,
        severity="info",
        tenant_slug=destination.tenant.slug,
        payload={
            "test": True,
            "message": "Test event from OneProtect Integrations. You can ignore it.",
            "destination": destination.name,
        },
    )
    body = serialize_body(destination, [envelope])
    timeout = min(destination.timeout_seconds, settings.WEBHOOK_TEST_TIMEOUT)
    outcome = get_sender().send(destination, prepare(destination, body), timeout=timeout)
    # A receiver that echoes the request must not show the secrets back (stored masked too).
    excerpt = mask_echoed_secrets(outcome.response_excerpt, destination_secret_values(destination))
    outcome = replace(outcome, response_excerpt=excerpt)
    with transaction.atomic():
        delivery = Delivery.objects.create(
            tenant_id=destination.tenant_id,
            destination=destination,
            is_test=True,
            state=DeliveryState.DELIVERED if outcome.ok else DeliveryState.FAILED,
            event_count=1,
            attempt_count=1,
            attempt_limit=1,
            last_status_code=outcome.status_code,
            last_error_kind=outcome.error_kind,
            failure_reason="" if outcome.ok else describe_failure(outcome),
            created_at=now,
            finished_at=timezone.now(),
        )
        engine.record_attempt(delivery, outcome)
        record(
            tenant=destination.tenant,
            actor=actor,
            action="destination.test_sent",
            target=destination,
            after={
                "status_code": outcome.status_code,
                "ok": outcome.ok,
                "error_kind": outcome.error_kind,
            },
        )
    return TestResult(
        delivery,
        outcome,
        explain(status_code=outcome.status_code, error_kind=outcome.error_kind, ok=outcome.ok),
    )


class NotResendable(ValueError):
    pass


def _reopen(delivery: Delivery) -> None:
    """Open a failed batch again with a fresh allowance and a retry schedule that restarts."""
    delivery.state = DeliveryState.PENDING
    delivery.attempt_limit = delivery.attempt_count + settings.WEBHOOK_MAX_ATTEMPTS
    delivery.schedule_start = delivery.attempt_count
    delivery.next_attempt_at = None
    delivery.finished_at = None
    delivery.failure_reason = ""


@transaction.atomic
def delivery_resend(*, delivery: Delivery, actor) -> Delivery:
    """Send a failed delivery again (same events, new attempts), ahead of newer events."""
    lock_chain(delivery.tenant_id)  # the audit lock first, then rows (see lock_chain)
    delivery = Delivery.objects.select_for_update().get(pk=delivery.pk)
    if delivery.state != DeliveryState.FAILED or delivery.is_test:
        raise NotResendable("Only failed deliveries can be resent.")
    _reopen(delivery)
    delivery.save()
    engine.mark_due_now(delivery.destination_id)
    record(
        tenant=delivery.tenant,
        actor=actor,
        action="delivery.resend",
        target=delivery,
        target_repr=f"Delivery {delivery.pk} to {delivery.destination.name}",
    )
    return delivery


@transaction.atomic
def destination_resend_all_failed(*, destination: Destination, actor) -> ResendJob:
    """Queue every failed delivery of the destination again, in the background."""
    lock_chain(destination.tenant_id)  # the audit lock first, then rows (see lock_chain)
    total = Delivery.objects.filter(
        destination=destination, state=DeliveryState.FAILED, is_test=False
    ).count()
    job = ResendJob.objects.create(
        tenant_id=destination.tenant_id, destination=destination, total=total, created_by=actor
    )
    record(
        tenant=destination.tenant,
        actor=actor,
        action="delivery.resend_all",
        target=destination,
        after={"failed_deliveries": total},
    )
    from integrations.tasks import enqueue_resend_job

    transaction.on_commit(partial(enqueue_resend_job, job.pk))
    return job


def resend_job_run(job_id: int, *, chunk: int = 500) -> ResendJob:
    """Reopen the job's failed deliveries chunk by chunk, updating its progress."""
    job = ResendJob.objects.get(pk=job_id)
    ResendJob.objects.filter(pk=job_id).update(state=ResendJobState.RUNNING)
    while True:
        with transaction.atomic():
            batch = list(
                Delivery.objects.select_for_update(skip_locked=True)
                .filter(
                    destination_id=job.destination_id,
                    state=DeliveryState.FAILED,
                    is_test=False,
                    created_at__lte=job.created_at,
                )
                .order_by("id")[:chunk]
            )
            for delivery in batch:
                _reopen(delivery)
            Delivery.objects.bulk_update(
                batch,
                [
                    "state",
                    "attempt_limit",
                    "schedule_start",
                    "next_attempt_at",
                    "finished_at",
                    "failure_reason",
                ],
            )
            ResendJob.objects.filter(pk=job_id).update(done=F("done") + len(batch))
            if batch:
                engine.mark_due_now(job.destination_id)
        if len(batch) < chunk:
            break
    ResendJob.objects.filter(pk=job_id).update(
        state=ResendJobState.DONE, finished_at=timezone.now()
    )
    job.refresh_from_db()
    if job.done > job.total:
        ResendJob.objects.filter(pk=job_id).update(total=job.done)
        job.total = job.done
    return job
