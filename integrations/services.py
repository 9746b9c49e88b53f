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
from integrations import jobs
from integrations.catalogue import EXAMPLE_PAYLOADS, SEVERITY_RANK, EventType
from integrations.delivery import queue
from integrations.delivery.record import describe_failure, record_attempt
from integrations.delivery.sender import Outcome, get_sender
from integrations.delivery.signing import (
    event_envelope,
    generate_secret_for,
    prepare,
    serialize_body,
)
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
    "batching",
    "splunk_index",
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
    secret = data.get("secret") or generate_secret_for(destination.signature_scheme)
    generated = None if data.get("secret") else secret
    destination.set_secret(secret)
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
    destination = (
        Destination.objects.for_tenant(destination.tenant_id)
        .select_for_update()
        .get(pk=destination.pk)
    )
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
    destination = (
        Destination.objects.for_tenant(destination.tenant_id)
        .select_for_update()
        .get(pk=destination.pk)
    )
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
    queue.mark_due_now(destination.pk)


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
    destination = (
        Destination.objects.for_tenant(destination.tenant_id)
        .select_for_update()
        .get(pk=destination.pk)
    )
    if overlap_hours is None:
        overlap_hours = settings.WEBHOOK_SECRET_OVERLAP_HOURS
    secret = new_secret or generate_secret_for(destination.signature_scheme)
    generated = None if new_secret else secret
    if overlap_hours > 0:
        destination.previous_secret_encrypted = destination.secret_encrypted
        destination.previous_secret_expires_at = timezone.now() + timedelta(hours=overlap_hours)
    else:
        destination.previous_secret_encrypted = ""
        destination.previous_secret_expires_at = None
    destination.set_secret(secret)
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
    destination = (
        Destination.objects.for_tenant(destination.tenant_id)
        .select_for_update()
        .get(pk=destination.pk)
    )
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
    outcome: Outcome | None  # None while the test is still being sent
    explanation: Explanation | None

    @property
    def pending(self) -> bool:
        return self.outcome is None


# The task that sends a queued test event (django-q2 imports it by this path).
# A test never outlives the worker's task timeout: django-q2 kills it without recording.
TEST_TASK_MARGIN_SECONDS = 20


def sample_event_envelope(destination: Destination, now) -> dict:
    """A realistic sample of an event type the destination forwards (the catalogue's
    example), marked as a test so that receivers can tell it apart."""

    forwarded = [value for value in EventType.values if value in destination.event_types]
    event_type = forwarded[0] if forwarded else EventType.SYSTEM_HEALTH
    payload = {**EXAMPLE_PAYLOADS[event_type], "test": True}
    severity = destination.min_severity or payload.get("severity") or "info"
    if severity not in SEVERITY_RANK:
        severity = "info"
    return event_envelope(
        event_id=uuid.uuid4(),
        event_type=event_type,
        event_time=now,
        severity=severity,
        tenant_slug=destination.tenant.slug,
        payload=payload,
    )


def send_test_timeout(destination: Destination) -> float:
    """The destination's own timeout, kept under the worker's task timeout."""
    limit = max(1, settings.Q_CLUSTER["timeout"] - TEST_TASK_MARGIN_SECONDS)
    return min(destination.timeout_seconds, limit)


@transaction.atomic
def _test_delivery_create(*, destination: Destination, actor) -> Delivery:
    delivery = Delivery.objects.create(
        tenant_id=destination.tenant_id,
        destination=destination,
        is_test=True,
        state=DeliveryState.PENDING,
        event_count=1,
        attempt_count=0,
        attempt_limit=1,
        created_at=timezone.now(),
    )
    record(
        tenant=destination.tenant,
        actor=actor,
        action="destination.test_sent",
        target=destination,
        after={"delivery_id": delivery.pk},
    )
    return delivery


def destination_test_queue(*, destination: Destination, actor) -> Delivery:
    """Queue one test event: a worker sends it; the page polls the test delivery's state."""
    delivery = _test_delivery_create(destination=destination, actor=actor)
    transaction.on_commit(partial(jobs.enqueue_test_send, delivery.pk))
    return delivery


def destination_send_test(*, destination: Destination, actor) -> TestResult:
    """Send one test event now, in this request, and record it (the API's synchronous test:
    it holds the request, so WEBHOOK_TEST_TIMEOUT bounds it)."""
    delivery = _test_delivery_create(destination=destination, actor=actor)
    timeout = min(send_test_timeout(destination), settings.WEBHOOK_TEST_TIMEOUT)
    return _send_test(delivery, timeout=timeout)


def send_queued_test(delivery_id: int, *, timeout: float | None = None) -> TestResult:
    """Send a queued test event (one attempt, the destination's timeout) and record the
    outcome; a delivered test also marks the destination healthy. Not part of the stream."""
    delivery = (
        Delivery.objects.unscoped("a worker's task names the test delivery by id")
        .select_related("destination__tenant")
        .get(pk=delivery_id)
    )
    return _send_test(delivery, timeout=timeout)


def _send_test(delivery: Delivery, *, timeout: float | None = None) -> TestResult:
    if delivery.state != DeliveryState.PENDING:
        return shown_test_result(delivery)  # already sent (a task delivered twice)
    destination = delivery.destination
    body = serialize_body(destination, [sample_event_envelope(destination, delivery.created_at)])
    Delivery.objects.for_tenant(delivery.tenant_id).filter(pk=delivery.pk).update(
        state=DeliveryState.DELIVERING
    )
    outcome = get_sender().send(
        destination, prepare(destination, body), timeout=timeout or send_test_timeout(destination)
    )
    # A receiver that echoes the request must not show the secrets back (stored masked too).
    excerpt = mask_echoed_secrets(outcome.response_excerpt, destination_secret_values(destination))
    outcome = replace(outcome, response_excerpt=excerpt)
    now = timezone.now()
    with transaction.atomic():
        delivery.state = DeliveryState.DELIVERED if outcome.ok else DeliveryState.FAILED
        delivery.attempt_count = 1
        delivery.last_status_code = outcome.status_code
        delivery.last_error_kind = outcome.error_kind
        delivery.failure_reason = "" if outcome.ok else describe_failure(outcome)[:300]
        delivery.finished_at = now
        delivery.save()
        record_attempt(delivery, outcome)
        _health_from_test(destination, outcome, now)
    return TestResult(
        delivery,
        outcome,
        explain(status_code=outcome.status_code, error_kind=outcome.error_kind, ok=outcome.ok),
    )


def _health_from_test(destination: Destination, outcome: Outcome, now) -> None:
    """A delivered test proves the endpoint works: health and last success say so. A failed
    one names the problem only while nothing real was sent yet (the stream's health wins)."""
    last = {
        "last_attempt_at": now,
        "last_status_code": outcome.status_code,
        "last_error_kind": outcome.error_kind,
        "last_outcome_ok": outcome.ok,
    }
    if outcome.ok:
        Destination.objects.for_tenant(destination.tenant_id).filter(pk=destination.pk).update(
            **last, last_success_at=now, failing_since=None, retrying=False
        )
    else:
        Destination.objects.for_tenant(destination.tenant_id).filter(
            pk=destination.pk, last_attempt_at__isnull=True
        ).update(**last)


def shown_test_result(delivery: Delivery) -> TestResult:
    """A test delivery's result as the page shows it (pending until its attempt exists)."""
    attempt = delivery.attempts.order_by("-number").first()
    if attempt is None:
        return TestResult(delivery, None, None)
    outcome = Outcome(
        ok=attempt.ok,
        transient=False,
        status_code=attempt.status_code,
        error_kind=attempt.error_kind,
        detail=attempt.error_detail,
        duration_ms=attempt.duration_ms,
        response_excerpt=attempt.response_excerpt,
        request_headers=attempt.request_headers,
        delivery_uuid=attempt.delivery_uuid,
        started_at=attempt.started_at,
    )
    return TestResult(
        delivery,
        outcome,
        explain(status_code=attempt.status_code, error_kind=attempt.error_kind, ok=attempt.ok),
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
    delivery = (
        Delivery.objects.for_tenant(delivery.tenant_id).select_for_update().get(pk=delivery.pk)
    )
    if delivery.state != DeliveryState.FAILED or delivery.is_test:
        raise NotResendable("Only failed deliveries can be resent.")
    _reopen(delivery)
    delivery.save()
    queue.mark_due_now(delivery.destination_id)
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
    total = (
        Delivery.objects.for_tenant(destination.tenant_id)
        .filter(destination=destination, state=DeliveryState.FAILED, is_test=False)
        .count()
    )
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
    transaction.on_commit(partial(jobs.enqueue_resend_job, job.pk))
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
                queue.mark_due_now(job.destination_id)
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
