"""Request and response shapes of the API (`/api/v1/`), with the JSON names customers use.

Request schemas check types only (and document the fields for Swagger); the rules of a
destination live in DestinationForm and those of an event in events.validate_event, so that
the portal and the API share one validation.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from django import forms
from django.conf import settings
from ninja import Field, Schema
from pydantic import Discriminator, SkipValidation, StrictInt, Tag

from integrations.catalogue import EventType, Severity
from integrations.forms import MAX_CUSTOM_HEADERS, DestinationForm, RotateSecretForm
from integrations.models import Batching, DeliveryState, Provider, SignatureScheme
from portal.api_common import ApiInput, ApiQuery

MASK = "••••••••"


def _documented_limits(form_class: type[forms.Form], name: str) -> dict[str, Any]:
    """A form field's limits for the OpenAPI document; the form enforces them, not pydantic."""
    field = form_class.base_fields[name]
    keywords = {
        "min_length": "minLength",
        "max_length": "maxLength",
        "min_value": "minimum",
        "max_value": "maximum",
    }
    limits = {
        keyword: getattr(field, attribute)
        for attribute, keyword in keywords.items()
        if getattr(field, attribute, None) is not None
    }
    if not field.required:
        limits.pop("minLength", None)  # blank is allowed (it means "generate" or "keep")
    elif isinstance(field, forms.CharField):
        limits.setdefault("minLength", 1)
    return limits


def _destination(name: str, **extra: Any) -> dict[str, Any]:
    return {**_documented_limits(DestinationForm, name), **extra}


AT_LEAST_ONE: dict[str, Any] = {"minItems": 1}
HEADER_LIMIT: dict[str, Any] = {"maxProperties": MAX_CUSTOM_HEADERS}


class DestinationIn(ApiInput):
    name: str = Field(
        ..., description="Unique in the tenant.", json_schema_extra=_destination("name")
    )
    endpoint_url: str = Field(
        ...,
        description="The https:// URL that receives events. Private, loopback, link-local and "
        "reserved addresses are refused.",
        examples=["https://hooks.example.com/oneprotect"],
        json_schema_extra=_destination("endpoint_url"),
    )
    secret: str | None = Field(
        None,
        description="Write-only signing secret, at least 16 characters. Leave it out to have "
        "a strong one generated: it is returned once, in this response only.",
        json_schema_extra=_destination("secret"),
    )
    provider: Provider = Field(
        Provider.CUSTOM,
        description="`splunk_hec`: Splunk HTTP Event Collector. Its `secret` is the HEC token "
        "(required, sent as `Authorization: Splunk <token>`; no custom header may replace "
        "Authorization); the body is in HEC event format; the endpoint is "
        "`https://<splunk-host>:8088/services/collector/event`.",
    )
    splunk_index: str = Field(
        "", description="Splunk only: the HEC `index` of every event; blank for the token's."
    )
    batching: Batching = Field(
        Batching.BATCHED,
        description='`batched`: up to 100 events per request, body `{"events": [...]}`. '
        "`single`: one event per request, body the single event object. Signed the same way.",
    )
    event_types: list[EventType] | None = Field(
        None,
        description="Event types to forward; all of them when left out.",
        json_schema_extra=AT_LEAST_ONE,
    )
    min_severity: Severity | None = Field(None, description="Only events at least this severe.")
    include_child_tenants: bool = Field(
        False, description="Also forward the child accounts' events (tenants with children)."
    )
    signature_header: str = Field(
        "X-OneProtect-Signature", json_schema_extra=_destination("signature_header")
    )
    custom_headers: dict[str, str] | None = Field(
        None,
        description="Header name → value sent with every request. Values are write-only: "
        f"they are shown as {MASK}.",
        json_schema_extra=HEADER_LIMIT,
    )
    timeout_seconds: int = Field(30, json_schema_extra=_destination("timeout_seconds"))
    skip_tls_verify: bool = False
    active: bool = True
    signature_scheme: SignatureScheme = Field(
        SignatureScheme.ONEPROTECT,
        description="`oneprotect`: `sha256=<hex HMAC-SHA256 of the body>` in the signature header "
        "(the default). `standard_webhooks`: `webhook-id`, `webhook-timestamp` and "
        "`webhook-signature: v1,<base64>` as published at standardwebhooks.com "
        "(replay-protected; its secret is `whsec_<base64>`).",
    )


class DestinationPatch(ApiInput):
    """Every field is optional: the ones left out keep their current values."""

    name: str | None = Field(None, json_schema_extra=_destination("name"))
    endpoint_url: str | None = Field(None, json_schema_extra=_destination("endpoint_url"))
    secret: str | None = Field(
        None,
        description="Write-only; left out keeps the current one.",
        json_schema_extra=_destination("secret"),
    )
    provider: Provider | None = None
    splunk_index: str | None = Field(None, description="Splunk only; blank for the token's.")
    batching: Batching | None = Field(None, description="`batched` or `single`.")
    event_types: list[EventType] | None = Field(None, json_schema_extra=AT_LEAST_ONE)
    min_severity: Severity | None = Field(None, description="null forwards every severity.")
    include_child_tenants: bool | None = None
    signature_header: str | None = Field(None, json_schema_extra=_destination("signature_header"))
    custom_headers: dict[str, str] | None = Field(
        None,
        description="Replaces the custom headers. A value left blank (or sent back as "
        f"{MASK}) keeps the stored value of that header.",
        json_schema_extra=HEADER_LIMIT,
    )
    timeout_seconds: int | None = Field(None, json_schema_extra=_destination("timeout_seconds"))
    skip_tls_verify: bool | None = None
    active: bool | None = None
    signature_scheme: SignatureScheme | None = Field(
        None,
        description="Changing it without a `secret` generates a new secret in the new "
        "scheme's format, returned once in this response.",
    )


class DestinationOut(Schema):
    id: uuid.UUID
    name: str
    endpoint_url: str
    provider: str
    splunk_index: str = Field(..., description="Splunk only; blank for the token's index.")
    batching: str = Field(..., examples=["batched"], description="`batched` or `single`.")
    event_types: list[str]
    min_severity: str | None
    include_child_tenants: bool
    signature_header: str
    custom_headers: dict[str, str] = Field(..., description=f"Values are masked ({MASK}).")
    timeout_seconds: int
    skip_tls_verify: bool
    active: bool
    health: str = Field(..., examples=["healthy"])
    health_label: str = Field(..., examples=["Healthy"])
    secret_set_at: datetime
    created_at: datetime
    updated_at: datetime
    signature_scheme: str = Field(..., examples=["oneprotect"])


class DestinationWithSecretOut(DestinationOut):
    secret: str | None = Field(
        None,
        description="The generated signing secret: present only when one was generated, and "
        "only in this response. Store it now; it is never shown again.",
    )


class RotateSecretIn(ApiInput):
    # default= by keyword, the only way mypy sees it: rotate_secret builds RotateSecretIn().
    secret: str | None = Field(
        default=None,
        description="The new secret, at least 16 characters; left out, one is generated.",
        json_schema_extra=_documented_limits(RotateSecretForm, "secret"),
    )
    overlap_hours: int | None = Field(
        default=None,
        description="How long the previous secret keeps signing too (hours; default 24).",
        json_schema_extra=_documented_limits(RotateSecretForm, "overlap_hours"),
    )


class ExplanationOut(Schema):
    title: str
    fix: str


class TestResultOut(Schema):
    delivery_id: int
    ok: bool
    status_code: int | None
    duration_ms: int
    error_kind: str
    response_excerpt: str
    explanation: ExplanationOut | None


# Deliveries -------------------------------------------------------------------------------------
class DeliveryFilters(ApiQuery):
    state: DeliveryState | None = None
    since: datetime | None = Field(None, description="Created at or after (ISO 8601).")
    until: datetime | None = Field(None, description="Created before (ISO 8601).")
    cursor: str | None = Field(None, description="`next_cursor` of the previous page.")
    limit: int = Field(50, ge=1, le=200)


class DeliveryOut(Schema):
    id: int
    destination_id: uuid.UUID
    state: str
    event_count: int
    attempt_count: int
    attempt_limit: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error_kind: str
    failure_reason: str
    is_test: bool
    created_at: datetime
    finished_at: datetime | None


class DeliveryPage(Schema):
    items: list[DeliveryOut]
    next_cursor: str | None = Field(..., description="Pass as `cursor` for the next page.")


class AttemptOut(Schema):
    number: int
    delivery_uuid: uuid.UUID
    started_at: datetime
    duration_ms: int
    status_code: int | None
    ok: bool
    error_kind: str
    error_detail: str
    response_excerpt: str = Field(..., description="The first 4 KiB of the response body.")
    request_headers: dict[str, str] = Field(
        ..., description="Headers sent, with the signature and custom header values masked."
    )
    explanation: ExplanationOut | None


class DeliveryDetailOut(DeliveryOut):
    attempts: list[AttemptOut]


# Events -----------------------------------------------------------------------------------------
class EventIn(ApiInput):
    event_id: uuid.UUID | None = Field(
        None,
        description="The idempotency key. Publishing the same id again returns the stored "
        "event with 200. Generated when left out.",
    )
    event_type: str = Field(..., json_schema_extra={"enum": list(EventType.values)})
    severity: Severity = Severity.INFO
    event_time: str | StrictInt | None = Field(
        None,
        description="ISO 8601 text or Unix milliseconds; now when left out.",
        examples=["2026-11-23T10:00:00Z"],
    )
    event: dict[str, Any] = Field(..., description="The event payload (a JSON object).")


class EventOut(Schema):
    event_id: uuid.UUID
    event_type: str
    severity: str
    event_time: datetime
    event: dict[str, Any]


class EventBatchIn(Schema):
    # Items are documented as EventIn but checked one by one by the operation, so that a 400
    # names every bad item (index and field), not only the first one pydantic meets.
    events: list[SkipValidation[EventIn]] = Field(
        ...,
        description="Up to EVENTS_BATCH_MAX_COUNT events (1,000 by default), stored all or "
        "nothing; each as in the single-event body.",
        json_schema_extra={"minItems": 1, "maxItems": settings.EVENTS_BATCH_MAX_COUNT},
    )


def _body_kind(value: Any) -> str:
    """A body with `events` is a batch; any other body is one event."""
    return "batch" if isinstance(value, dict) and "events" in value else "single"


# POST /events takes one event or a batch. Errors are located by field, without the tag.
BODY_TAGS = frozenset({"single", "batch"})
EventPublishIn = Annotated[
    Annotated[EventIn, Tag("single")] | Annotated[EventBatchIn, Tag("batch")],
    Discriminator(_body_kind),
]


class EventBatchItemOut(Schema):
    event_id: uuid.UUID
    status: Literal["created", "duplicate"] = Field(
        ...,
        description="`duplicate`: this event_id was published before (or earlier in the "
        "batch); the stored event is kept.",
    )


class EventBatchOut(Schema):
    created: int = Field(..., description="How many events this batch stored.")
    duplicates: int = Field(..., description="How many were already published.")
    events: list[EventBatchItemOut] = Field(..., description="One per item, in order.")


class EventTypeOut(Schema):
    event_type: str
    label: str
    description: str
    example_payload: dict[str, Any]
