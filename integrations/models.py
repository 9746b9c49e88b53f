"""Destinations, events, deliveries (one batch to one destination) and their attempts."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils import timezone

from integrations import crypto
from integrations.catalogue import SEVERITY_RANK, EventType, Severity
from integrations.redaction import mask_query
from portal.models import Tenant, TenantOwnedModel
from portal.scoping import TenantManager

DEFAULT_SIGNATURE_HEADER = "X-OneProtect-Signature"


class Provider(models.TextChoices):
    CUSTOM = "custom", "Custom webhook"
    SPLUNK_HEC = "splunk_hec", "Splunk HTTP Event Collector"


class SignatureScheme(models.TextChoices):
    ONEPROTECT = "oneprotect", "OneProtect: HMAC-SHA256 of the body (sha256=<hex>)"
    STANDARD_WEBHOOKS = "standard_webhooks", "Standard Webhooks (replay-protected)"


class Batching(models.TextChoices):
    """How many events one request carries."""

    BATCHED = "batched", "Batched (up to 100 events per request)"
    SINGLE = "single", "One event per request"


class Health(models.TextChoices):
    HEALTHY = "healthy", "Healthy"
    RETRYING = "retrying", "Retrying"
    UNREACHABLE = "unreachable", "Endpoint unreachable"
    AUTH_DENIED = "auth_denied", "Authentication / Permission denied"
    NOT_FOUND = "not_found", "Endpoint not found"
    REJECTED = "rejected", "Rejected by the receiver"
    RATE_LIMITED = "rate_limited", "Rate limited"
    FAILING = "failing", "Failing"
    PAUSED = "paused", "Paused"
    DISABLED = "disabled", "Disabled"
    NO_EVENTS = "no_events", "No events yet"


class ErrorKind(models.TextChoices):
    NONE = "", "None"
    DNS = "dns", "DNS failure"
    CONNECT = "connect", "Connection refused"
    TLS = "tls", "TLS error"
    TIMEOUT = "timeout", "Timeout"
    HTTP = "http", "HTTP error status"
    REDIRECT = "redirect", "Redirect (not followed)"
    SSRF = "ssrf", "Refused: private or reserved address"
    OTHER = "other", "Other error"


UNREACHABLE_KINDS = {ErrorKind.DNS, ErrorKind.CONNECT, ErrorKind.TLS, ErrorKind.TIMEOUT}
AUTH_STATUSES = frozenset({401, 403})
NOT_FOUND_STATUSES = frozenset({404, 410})
# 4xx answers that mean "try again later" rather than "this request is refused".
TRANSIENT_CLIENT_STATUSES = frozenset({408, 429})


def is_rejection(status_code: int | None) -> bool:
    """A 4xx that is not about credentials, the URL or load: the receiver refused the request."""
    if status_code is None or not 400 <= status_code < 500:
        return False
    return status_code not in AUTH_STATUSES | NOT_FOUND_STATUSES | TRANSIENT_CLIENT_STATUSES


class Destination(TenantOwnedModel):
    """An HTTPS endpoint that receives the tenant's events as signed, batched POSTs."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed by destination_name_per_tenant (its first column): no index of its own to maintain.
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False)
    name = models.CharField(max_length=120)
    endpoint_url = models.URLField(max_length=2000)
    provider = models.CharField(max_length=16, choices=Provider.choices, default=Provider.CUSTOM)
    event_types = ArrayField(models.CharField(max_length=64, choices=EventType.choices))
    min_severity = models.CharField(max_length=16, choices=Severity.choices, blank=True)
    include_child_tenants = models.BooleanField(default=False)
    signature_header = models.CharField(max_length=100, default=DEFAULT_SIGNATURE_HEADER)
    custom_header_names = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    custom_headers_encrypted = models.TextField(blank=True)
    timeout_seconds = models.PositiveSmallIntegerField(default=30)
    skip_tls_verify = models.BooleanField(default=False)
    rate_limit_per_second = models.FloatField(null=True, blank=True)
    batching = models.CharField(max_length=16, choices=Batching.choices, default=Batching.BATCHED)
    splunk_index = models.CharField(max_length=80, blank=True)  # Splunk HEC "index"; optional
    active = models.BooleanField(default=True)

    secret_encrypted = models.TextField()
    secret_set_at = models.DateTimeField()
    previous_secret_encrypted = models.TextField(blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)

    # Delivery bookkeeping, kept on the row so that health costs no extra query.
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error_kind = models.CharField(max_length=16, choices=ErrorKind.choices, blank=True)
    last_outcome_ok = models.BooleanField(null=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    retrying = models.BooleanField(default=False)
    health_alerted = models.BooleanField(default=False)
    # Failed attempts since the last 2xx: auto-disable counts a run of failures, not one.
    failed_attempts_in_row = models.PositiveIntegerField(default=0)
    # The circuit breaker: permanent failures in a row, and since when the stream is held.
    permanent_failures_in_row = models.PositiveSmallIntegerField(default=0)
    held_since = models.DateTimeField(null=True, blank=True)
    hold_reason = models.CharField(max_length=300, blank=True)

    # The work queue: when this destination next has something due, and who holds it. A lease
    # is valid until `lease_until` (database clock) while its owner's advisory lock is held.
    next_due_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Not stored: set by services.destination_update on the instance it returns, so that the
    # caller can show a newly generated secret once.
    generated_secret: str | None

    signature_scheme = models.CharField(
        max_length=24, choices=SignatureScheme.choices, default=SignatureScheme.ONEPROTECT
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="destination_name_per_tenant")
        ]
        indexes = [
            models.Index(
                fields=["next_due_at"],
                name="destination_due",
                condition=Q(active=True, next_due_at__isnull=False),
            )
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def endpoint_url_masked(self) -> str:
        """The URL with query values masked (they often hold API keys): for display."""
        return mask_query(self.endpoint_url)

    # Secrets -------------------------------------------------------------------------------
    def set_secret(self, secret: str) -> None:
        self.secret_encrypted = crypto.encrypt(secret)
        self.secret_set_at = timezone.now()

    def secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted)

    def previous_secret(self, now=None) -> str | None:
        """The rotated-out secret while its overlap window lasts."""
        now = now or timezone.now()
        if self.previous_secret_encrypted and self.previous_secret_expires_at:
            if self.previous_secret_expires_at > now:
                return crypto.decrypt(self.previous_secret_encrypted)
        return None

    def custom_headers(self) -> dict[str, str]:
        return crypto.decrypt_json(self.custom_headers_encrypted) or {}

    def set_custom_headers(self, headers: dict[str, str]) -> None:
        self.custom_header_names = list(headers)
        self.custom_headers_encrypted = crypto.encrypt_json(headers) if headers else ""

    # Requests ------------------------------------------------------------------------------
    def max_batch_events(self) -> int:
        """How many events one request may carry: 1 in "One event per request" mode."""
        return self.events_per_request(self.batching)

    @staticmethod
    def events_per_request(batching: str) -> int:
        """max_batch_events for a destination with this `batching` (at least 1)."""
        if batching == Batching.SINGLE:
            return 1
        return max(1, settings.WEBHOOK_BATCH_SIZE)

    @property
    def is_splunk(self) -> bool:
        return self.provider == Provider.SPLUNK_HEC

    # Filters -------------------------------------------------------------------------------
    def matches(self, *, event_type: str, severity: str, from_child: bool) -> bool:
        if from_child and not self.include_child_tenants:
            return False
        if event_type not in self.event_types:
            return False
        if self.min_severity and SEVERITY_RANK[severity] < SEVERITY_RANK[self.min_severity]:
            return False
        return True

    # Health --------------------------------------------------------------------------------
    @property
    def health(self) -> str:
        """The destination's health in the customer's words (docs/design.md#health)."""
        if self.disabled_at is not None:
            return Health.DISABLED
        if not self.active:
            return Health.PAUSED
        if self.last_attempt_at is None:
            return Health.NO_EVENTS
        if self.last_outcome_ok:
            return Health.HEALTHY
        if self.last_status_code in AUTH_STATUSES:
            return Health.AUTH_DENIED
        if self.last_status_code in NOT_FOUND_STATUSES:
            return Health.NOT_FOUND
        if self.last_status_code == 429:
            return Health.RATE_LIMITED
        if is_rejection(self.last_status_code) and self.last_error_kind != ErrorKind.REDIRECT:
            return Health.REJECTED
        if self.last_error_kind in UNREACHABLE_KINDS:
            return Health.UNREACHABLE
        if self.retrying:
            return Health.RETRYING
        return Health.FAILING

    @property
    def health_label(self) -> str:
        """The health's label; a rejection names the status, e.g. "… (HTTP 422)"."""
        health = Health(self.health)
        if health == Health.REJECTED:
            return f"{health.label} (HTTP {self.last_status_code})"
        return health.label

    def waiting_count(self) -> int:
        """Events queued for this destination and not yet in a batch."""
        waiting = DeliveryEvent.objects.filter(
            destination__tenant_id=self.tenant_id, destination_id=self.pk, delivery__isnull=True
        )
        return waiting.count()


class Event(models.Model):
    """An event published into a tenant; stored once per (tenant, event_id)."""

    id = models.BigAutoField(primary_key=True)
    # Indexed by event_id_per_tenant (its first column): no index of its own to maintain.
    # No database constraint (Django still cascades deletes): its check at commit locked the
    # tenant's row once per event, about a tenth of publishing a batch. A tenant cannot go
    # from under its events: its audit entries protect it, in the database too (they reference
    # it and can never be deleted), and publishing runs for a tenant loaded from the request.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    event_id = models.UUIDField()
    event_type = models.CharField(max_length=64, choices=EventType.choices)
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.INFO)
    event_time = models.DateTimeField()
    payload = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    objects = TenantManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "event_id"], name="event_id_per_tenant")
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERING = "delivering", "Delivering"
    DELIVERED = "delivered", "Delivered"
    RETRYING = "retrying", "Retrying"
    FAILED = "failed", "Failed"


OPEN_STATES = (DeliveryState.PENDING, DeliveryState.DELIVERING, DeliveryState.RETRYING)


class Delivery(TenantOwnedModel):
    """One batch of events to one destination, and where it stands."""

    id = models.BigAutoField(primary_key=True)
    # Both indexed by the composite indexes below (delivery_tenant_time, delivery_dest_id...):
    # a delivery row is written on every batch, so it keeps no redundant index.
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False)
    destination = models.ForeignKey(
        Destination, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    state = models.CharField(
        max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    event_count = models.PositiveIntegerField(default=0)
    attempt_count = models.PositiveSmallIntegerField(default=0)
    attempt_limit = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error_kind = models.CharField(max_length=16, choices=ErrorKind.choices, blank=True)
    failure_reason = models.CharField(max_length=300, blank=True)
    is_test = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The attempt count when the retry schedule last (re)started: a resend starts it anew.
    schedule_start = models.PositiveSmallIntegerField(default=0)
    # The outbox position of the batch's first event: open batches go out in this order.
    first_item_id = models.BigIntegerField(default=0)

    # Not stored: set by the Integrations page's live fragment for display ("3 minutes ago").
    relative: str

    class Meta:
        indexes = [
            models.Index(fields=["destination", "-id"], name="delivery_dest_id"),
            models.Index(fields=["destination", "state", "-id"], name="delivery_dest_state_id"),
            models.Index(
                fields=["destination", "id"],
                name="delivery_open",
                condition=Q(state__in=["pending", "delivering", "retrying"]),
            ),
            models.Index(fields=["tenant", "-created_at"], name="delivery_tenant_time"),
            models.Index(fields=["destination", "finished_at"], name="delivery_dest_finished"),
            models.Index(fields=["destination", "created_at"], name="delivery_dest_created"),
        ]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"Delivery {self.pk} ({self.state})"

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def attempt_in_schedule(self) -> int:
        """This attempt's place in the retry schedule (1 after creation or a resend)."""
        return max(1, self.attempt_count - self.schedule_start)


class DeliveryEvent(models.Model):
    """An event waiting for (or carried by) a delivery to one destination: the outbox."""

    id = models.BigAutoField(primary_key=True)
    # Every published event writes a row here per destination, so each index counts: the
    # rows are indexed by one_item_per_event (event first: deleting events finds their rows),
    # outbox_waiting_order and outbox_delivery below, and by nothing else.
    # No database constraint on `destination` and `event`: the publisher inserts these rows in
    # the statement that inserts the events, for the destinations it has just locked and found
    # (integrations.events), and a destination is deleted only under that same lock. The
    # constraints' checks at commit (a row lock on each event and destination) cost more than
    # the inserts themselves. Django cascades deletes of events through `event`. A deleted
    # destination's rows go through its deliveries (delivered rows) and
    # outbox.delete_waiting_rows (the rest, by outbox_waiting_order): a cascade through
    # `destination` would scan the whole outbox, which has no index starting with it.
    destination = models.ForeignKey(
        Destination,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    event = models.ForeignKey(
        Event, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    delivery = models.ForeignKey(
        Delivery,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="items",
        db_index=False,
    )

    objects = TenantManager()  # scoped through its destination or delivery

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event", "destination"], name="one_item_per_event")
        ]
        indexes = [
            # Waiting events in outbox order (the order in which they were accepted).
            models.Index(
                fields=["destination", "id"],
                name="outbox_waiting_order",
                condition=Q(delivery__isnull=True),
            ),
            # Only rows given to a batch: waiting rows (most of the writes) skip this index.
            models.Index(
                fields=["delivery"],
                name="outbox_delivery",
                condition=Q(delivery__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"Event {self.event_id} for destination {self.destination_id}"


class Attempt(models.Model):
    """One HTTP attempt of a delivery."""

    id = models.BigAutoField(primary_key=True)
    # Indexed by attempt_delivery (its first column): no index of its own to maintain.
    delivery = models.ForeignKey(
        Delivery, on_delete=models.CASCADE, related_name="attempts", db_index=False
    )
    # Set for attempts of the stream (not for test sends): the health figures read it alone.
    destination = models.ForeignKey(
        Destination,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
    )
    number = models.PositiveSmallIntegerField()
    delivery_uuid = models.UUIDField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error_kind = models.CharField(max_length=16, choices=ErrorKind.choices, blank=True)
    error_detail = models.CharField(max_length=500, blank=True)
    response_excerpt = models.TextField(blank=True)
    request_headers = models.JSONField(default=dict)
    ok = models.BooleanField(default=False)

    objects = TenantManager()  # scoped through its destination or delivery

    class Meta:
        ordering = ["number"]
        indexes = [
            models.Index(fields=["delivery", "number"], name="attempt_delivery"),
            models.Index(
                fields=["destination", "started_at"],
                name="attempt_dest_time",
                include=["duration_ms", "ok"],
                condition=Q(destination__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"Attempt {self.number} of delivery {self.delivery_id}"


class ResendJobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"


class ResendJob(TenantOwnedModel):
    """ "Resend all failed" for one destination, run in the background with visible progress."""

    id = models.BigAutoField(primary_key=True)
    destination = models.ForeignKey(Destination, on_delete=models.CASCADE, related_name="+")
    state = models.CharField(
        max_length=16, choices=ResendJobState.choices, default=ResendJobState.QUEUED
    )
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    @property
    def percent(self) -> int:
        return 100 if not self.total else min(100, round(100 * self.done / self.total))


class DeliveryWorker(models.Model):
    """A delivery loop of the worker cluster, with its heartbeat (shown to staff)."""

    key = models.BigIntegerField(primary_key=True)  # also its advisory lock key
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    slot = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    in_flight = models.PositiveIntegerField(default=0)
    attempts = models.PositiveBigIntegerField(default=0)
    stopped_at = models.DateTimeField(null=True, blank=True)

    # Not stored: set by the staff page (integrations.ops) for display.
    live: bool
    age: float  # seconds since the last heartbeat

    class Meta:
        ordering = ["slot", "-started_at"]

    def __str__(self) -> str:
        return f"Delivery loop {self.slot} ({self.hostname}:{self.pid})"


class DeliveryCounter(models.Model):
    """Monotonic counters for /metrics, flushed by the delivery loops."""

    name = models.CharField(max_length=100, primary_key=True)
    value = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name}={self.value}"
