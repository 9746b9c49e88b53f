"""The v1 API (`/api/v1/`): destinations, deliveries, events and the event catalogue.

Operations are thin, like the portal's views: the token gives the tenant and the role
(`requires(...)` checks the permission table before anything else runs), objects are found
within the tenant (another tenant's object is 404), DestinationForm and events.validate_event
validate, selectors read and the same services as the portal write, with their audit entries.
Mounted by portal/api.py (beside audit/api.py).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone
from ninja import Body, Path, Query, Router, Status
from ninja.errors import HttpError
from pydantic import ValidationError as PydanticValidationError

from integrations import selectors
from integrations.api_schemas import (
    MASK,
    DeliveryDetailOut,
    DeliveryFilters,
    DeliveryOut,
    DeliveryPage,
    DestinationIn,
    DestinationOut,
    DestinationPatch,
    DestinationWithSecretOut,
    EventBatchIn,
    EventBatchOut,
    EventIn,
    EventOut,
    EventPublishIn,
    EventTypeOut,
    RotateSecretIn,
    TestResultOut,
)
from integrations.catalogue import EVENT_TYPE_DESCRIPTIONS, EXAMPLE_PAYLOADS, EventType
from integrations.events import (
    BatchPublishError,
    PublishError,
    event_publish,
    event_publish_many,
    validate_event,
    validate_events,
)
from integrations.explain import Explanation, explain
from integrations.forms import DestinationForm, RotateSecretForm
from integrations.models import Attempt, Delivery, Destination, Event
from integrations.services import (
    CONFIG_FIELDS,
    NotResendable,
    delivery_resend,
    destination_create,
    destination_delete,
    destination_rotate_secret,
    destination_send_test,
    destination_update,
)
from portal import ratelimits
from portal.api_common import (
    BODY,
    DENIED,
    INVALID,
    LIMITED,
    NOT_FOUND,
    ErrorOut,
    invalid,
    paginate,
    request_principal,
)
from portal.permissions import Capability, has_capability
from portal.tokens import ApiPrincipal, requires

router = Router()

# Form fields the API exposes, in the form's terms; rate_limit_per_second stays portal-only.
FORM_FIELDS = tuple(field for field in CONFIG_FIELDS if field != "rate_limit_per_second")


def _rate_limit(request: HttpRequest, principal: ApiPrincipal, action: str) -> None:
    """429 with Retry-After (portal/api.py) when the token or its user is over the limit."""
    ratelimits.check(request, action, user_id=principal.user.pk, token_id=principal.token.pk)


def _may_edit(principal: ApiPrincipal) -> bool:
    return has_capability(principal.membership, Capability.MANAGE_DESTINATIONS)


def _form_errors(form, *, non_field: str = "non_field_errors") -> dict[str, list[str]]:
    """A form's errors by field name; errors of the whole form under `non_field`."""
    return {
        (non_field if field == "__all__" else field): [error["message"] for error in errors]
        for field, errors in form.errors.get_json_data().items()
    }


# Path parameters: a delivery id fits PostgreSQL's bigint.
DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1)]


# Representations --------------------------------------------------------------------------------
def _destination_out(destination: Destination, *, full_url: bool = True) -> dict[str, Any]:
    """A destination as the API shows it: no secret, custom header values masked, and for
    roles that cannot edit it the endpoint's query values masked (they often hold API keys)."""
    return {
        "id": destination.pk,
        "name": destination.name,
        "endpoint_url": destination.endpoint_url if full_url else destination.endpoint_url_masked,
        "provider": destination.provider,
        "splunk_index": destination.splunk_index,
        "batching": destination.batching,
        "event_types": list(destination.event_types),
        "min_severity": destination.min_severity or None,
        "include_child_tenants": destination.include_child_tenants,
        "signature_header": destination.signature_header,
        "custom_headers": {name: MASK for name in destination.custom_header_names},
        "timeout_seconds": destination.timeout_seconds,
        "skip_tls_verify": destination.skip_tls_verify,
        "active": destination.active,
        "health": str(destination.health),
        "health_label": destination.health_label,
        "secret_set_at": destination.secret_set_at,
        "created_at": destination.created_at,
        "updated_at": destination.updated_at,
        "signature_scheme": destination.signature_scheme,
    }


def _explanation_out(explanation: Explanation | None) -> dict[str, str] | None:
    return None if explanation is None else {"title": explanation.title, "fix": explanation.fix}


def _delivery_out(delivery: Delivery) -> dict[str, Any]:
    fields = (
        "id",
        "destination_id",
        "state",
        "event_count",
        "attempt_count",
        "attempt_limit",
        "next_attempt_at",
        "last_status_code",
        "last_error_kind",
        "failure_reason",
        "is_test",
        "created_at",
        "finished_at",
    )
    return {field: getattr(delivery, field) for field in fields}


def _attempt_out(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "delivery_uuid": attempt.delivery_uuid,
        "started_at": attempt.started_at,
        "duration_ms": attempt.duration_ms,
        "status_code": attempt.status_code,
        "ok": attempt.ok,
        "error_kind": attempt.error_kind,
        "error_detail": attempt.error_detail,
        "response_excerpt": attempt.response_excerpt,
        "request_headers": {str(k): str(v) for k, v in (attempt.request_headers or {}).items()},
        "explanation": _explanation_out(
            explain(status_code=attempt.status_code, error_kind=attempt.error_kind, ok=attempt.ok)
        ),
    }


def _event_out(event: Event) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "severity": event.severity,
        "event_time": event.event_time,
        "event": event.payload,
    }


# Destination input → DestinationForm ------------------------------------------------------------
def _form_value(field: str, value: Any) -> Any:
    """A JSON value as the form reads it (null means blank; enums are their values)."""
    if value is None:
        return [] if field == "event_types" else ""
    if field == "event_types":
        return [str(item) for item in value]
    return (
        str(value)
        if field in ("provider", "min_severity", "signature_scheme", "batching")
        else value
    )


def _custom_headers_input(headers: dict[str, str] | None) -> dict[str, str] | None:
    """Header values sent back masked mean "keep the stored value", as a blank one does."""
    if headers is None:
        return None
    return {name: "" if value == MASK else value for name, value in headers.items()}


def _validated_form(
    principal: ApiPrincipal,
    values: dict[str, Any],
    *,
    given: set[str],
    instance: Destination | None = None,
    custom_headers: dict[str, str] | None = None,
) -> DestinationForm:
    """Run the one validation of destinations; raise a 400 with its field errors."""
    form = DestinationForm(
        values, tenant=principal.tenant, instance=instance, custom_headers=custom_headers
    )
    errors = {} if form.is_valid() else _form_errors(form, non_field="custom_headers")
    if "include_child_tenants" in given and values.get("include_child_tenants"):
        if "include_child_tenants" not in form.fields:
            errors["include_child_tenants"] = ["This tenant has no child accounts."]
    if errors:
        raise invalid(errors)
    return form


def _get_destination(caller: ApiPrincipal, destination_id) -> Destination:
    return selectors.destination_get(tenant=caller.tenant, pk=destination_id)


def _get_delivery(caller: ApiPrincipal, delivery_id: DeliveryId) -> Delivery:
    return selectors.delivery_get(tenant=caller.tenant, pk=delivery_id)


# Destinations -----------------------------------------------------------------------------------
DESTINATIONS = ["Destinations"]


@router.get(
    "/integrations/destinations",
    response={200: list[DestinationOut], **DENIED},
    tags=DESTINATIONS,
    summary="List destinations",
    **requires(Capability.VIEW_INTEGRATIONS),
)
def list_destinations(request: HttpRequest):
    """The tenant's destinations by name. Secrets are never returned."""
    principal = request_principal(request)
    destinations = selectors.destination_list(tenant=principal.tenant)
    full_url = _may_edit(principal)
    return [_destination_out(destination, full_url=full_url) for destination in destinations]


@router.post(
    "/integrations/destinations",
    response={201: DestinationWithSecretOut, **BODY, **DENIED},
    exclude_unset=True,
    tags=DESTINATIONS,
    summary="Create a destination",
    **requires(Capability.MANAGE_DESTINATIONS),
)
def create_destination(request: HttpRequest, payload: DestinationIn):
    """Admins only. Answers 201; a generated `secret` is in this response only."""
    principal = request_principal(request)
    values = {field: _form_value(field, getattr(payload, field)) for field in FORM_FIELDS}
    if payload.event_types is None:
        values["event_types"] = list(EventType.values)
    values["secret"] = payload.secret or ""
    form = _validated_form(
        principal,
        values,
        given=payload.model_fields_set,
        custom_headers=_custom_headers_input(payload.custom_headers),
    )
    destination, generated = destination_create(
        tenant=principal.tenant, actor=principal.user, data={**form.cleaned_data}
    )
    body = _destination_out(destination)
    if generated:
        body["secret"] = generated
    return Status(201, body)


@router.get(
    "/integrations/destinations/{destination_id}",
    response={200: DestinationOut, **INVALID, **DENIED, **NOT_FOUND},
    tags=DESTINATIONS,
    summary="Get a destination",
    **requires(Capability.VIEW_INTEGRATIONS),
)
def get_destination(request: HttpRequest, destination_id: uuid.UUID):
    principal = request_principal(request)
    destination = _get_destination(principal, destination_id)
    return _destination_out(destination, full_url=_may_edit(principal))


@router.patch(
    "/integrations/destinations/{destination_id}",
    response={200: DestinationWithSecretOut, **BODY, **DENIED, **NOT_FOUND},
    exclude_unset=True,
    tags=DESTINATIONS,
    summary="Update a destination",
    **requires(Capability.MANAGE_DESTINATIONS),
)
def update_destination(request: HttpRequest, destination_id: uuid.UUID, payload: DestinationPatch):
    """Admins only. Fields left out keep their values; the whole result is validated again."""
    principal = request_principal(request)
    destination = _get_destination(principal, destination_id)
    given = payload.model_fields_set
    values = {field: getattr(destination, field) for field in FORM_FIELDS}
    values["rate_limit_per_second"] = destination.rate_limit_per_second
    values.update(
        {field: _form_value(field, getattr(payload, field)) for field in given & set(FORM_FIELDS)}
    )
    values["secret"] = payload.secret or ""
    custom_headers = None
    if "custom_headers" in given and payload.custom_headers is not None:
        custom_headers = _custom_headers_input(payload.custom_headers)
    form = _validated_form(
        principal, values, given=given, instance=destination, custom_headers=custom_headers
    )
    destination = destination_update(
        destination=destination, actor=principal.user, data={**form.cleaned_data}
    )
    body = _destination_out(destination)
    if destination.generated_secret:
        body["secret"] = destination.generated_secret
    return body


@router.delete(
    "/integrations/destinations/{destination_id}",
    response={204: None, **INVALID, **DENIED, **NOT_FOUND},
    tags=DESTINATIONS,
    summary="Delete a destination",
    **requires(Capability.MANAGE_DESTINATIONS),
)
def delete_destination(request: HttpRequest, destination_id: uuid.UUID):
    """Admins only. Deletes the destination with its deliveries."""
    principal = request_principal(request)
    destination_delete(
        destination=_get_destination(principal, destination_id), actor=principal.user
    )
    return Status(204, None)


@router.post(
    "/integrations/destinations/{destination_id}/test",
    response={200: TestResultOut, **INVALID, **DENIED, **NOT_FOUND, **LIMITED},
    tags=DESTINATIONS,
    summary="Send a test event",
    **requires(Capability.MANAGE_DESTINATIONS),
)
def send_test(request: HttpRequest, destination_id: uuid.UUID):
    """Admins only. Sends one test event now and reports the outcome (200 whatever it was)."""
    principal = request_principal(request)
    _rate_limit(request, principal, ratelimits.TEST_SEND)
    result = destination_send_test(
        destination=_get_destination(principal, destination_id), actor=principal.user
    )
    outcome = result.outcome
    # Sent in this request: the test delivery is new and never queued, so it has its attempt.
    assert outcome is not None
    return {
        "delivery_id": result.delivery.pk,
        "ok": outcome.ok,
        "status_code": outcome.status_code,
        "duration_ms": outcome.duration_ms,
        "error_kind": outcome.error_kind,
        "response_excerpt": outcome.response_excerpt,
        "explanation": _explanation_out(result.explanation),
    }


@router.post(
    "/integrations/destinations/{destination_id}/rotate-secret",
    response={200: DestinationWithSecretOut, **BODY, **DENIED, **NOT_FOUND},
    exclude_unset=True,
    tags=DESTINATIONS,
    summary="Rotate the signing secret",
    **requires(Capability.MANAGE_DESTINATIONS),
)
def rotate_secret(
    request: HttpRequest, destination_id: uuid.UUID, payload: RotateSecretIn | None = None
):
    """Admins only. The previous secret keeps signing for `overlap_hours`; a generated
    `secret` is in this response only. A Splunk destination's `secret` is its HEC token:
    required here, and it replaces the old one at once (HEC has one token; no overlap)."""
    principal = request_principal(request)
    destination = _get_destination(principal, destination_id)
    payload = payload or RotateSecretIn()
    overlap = payload.overlap_hours
    form = RotateSecretForm(
        {
            "secret": payload.secret or "",
            "overlap_hours": settings.WEBHOOK_SECRET_OVERLAP_HOURS if overlap is None else overlap,
        },
        scheme=destination.signature_scheme,
        provider=destination.provider,
    )
    if not form.is_valid():
        raise invalid(_form_errors(form))
    destination, generated = destination_rotate_secret(
        destination=destination,
        actor=principal.user,
        new_secret=form.cleaned_data["secret"] or None,
        overlap_hours=form.cleaned_data["overlap_hours"],
    )
    body = _destination_out(destination)
    if generated:
        body["secret"] = generated
    return body


# Deliveries -------------------------------------------------------------------------------------
DELIVERIES = ["Deliveries"]


@router.get(
    "/integrations/destinations/{destination_id}/deliveries",
    response={200: DeliveryPage, **INVALID, **DENIED, **NOT_FOUND},
    tags=DELIVERIES,
    summary="List a destination's deliveries",
    **requires(Capability.VIEW_DELIVERIES),
)
def list_deliveries(
    request: HttpRequest, destination_id: uuid.UUID, filters: Query[DeliveryFilters]
):
    """Newest first, filtered by state and creation time; follow `next_cursor` for more."""
    principal = request_principal(request)
    destination = _get_destination(principal, destination_id)
    deliveries = selectors.delivery_list(
        tenant=principal.tenant,
        destination=destination,
        state=filters.state,
        since=_aware(filters.since) if filters.since else None,
        until=_aware(filters.until) if filters.until else None,
    )
    rows, next_cursor = paginate(deliveries, cursor=filters.cursor, limit=filters.limit)
    return {"items": [_delivery_out(row) for row in rows], "next_cursor": next_cursor}


def _aware(moment: datetime) -> datetime:
    """Times without an offset are UTC."""
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


@router.get(
    "/integrations/deliveries/{delivery_id}",
    response={200: DeliveryDetailOut, **INVALID, **DENIED, **NOT_FOUND},
    tags=DELIVERIES,
    summary="Get a delivery with its attempts",
    **requires(Capability.VIEW_DELIVERIES),
)
def get_delivery(request: HttpRequest, delivery_id: DeliveryId):
    """Attempts carry the response excerpt, the (masked) request headers and what to do."""
    delivery = _get_delivery(request_principal(request), delivery_id)
    return {
        **_delivery_out(delivery),
        "attempts": [
            _attempt_out(attempt) for attempt in selectors.attempt_list(delivery=delivery)
        ],
    }


@router.post(
    "/integrations/deliveries/{delivery_id}/resend",
    response={200: DeliveryOut, 409: ErrorOut, **INVALID, **DENIED, **NOT_FOUND},
    tags=DELIVERIES,
    summary="Resend a failed delivery",
    **requires(Capability.MANAGE_DESTINATIONS),
)
def resend_delivery(request: HttpRequest, delivery_id: DeliveryId):
    """Admins only. Only a failed delivery can be resent (409 otherwise)."""
    principal = request_principal(request)
    delivery = _get_delivery(principal, delivery_id)
    try:
        delivery = delivery_resend(delivery=delivery, actor=principal.user)
    except NotResendable as error:
        raise HttpError(409, str(error)) from None
    return _delivery_out(delivery)


# Events -----------------------------------------------------------------------------------------
EVENTS = ["Events"]


def _with_examples(options: dict[str, Any], examples: dict[str, Any]) -> dict[str, Any]:
    """Route options plus request body examples for Swagger (a choice of bodies to try)."""
    body = {"requestBody": {"content": {"application/json": {"examples": examples}}}}
    return {**options, "openapi_extra": {**options["openapi_extra"], **body}}


PUBLISH_EXAMPLES = {
    "one": {
        "summary": "One event",
        "value": {
            "event_id": "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
            "event_type": "detection.alert",
            "severity": "high",
            "event_time": "2026-11-23T10:00:00Z",
            "event": {"detection": "Impossible travel sign-in", "match_count": 3},
        },
    },
    "batch": {
        "summary": "A batch (all or nothing)",
        "value": {
            "events": [
                {
                    "event_id": "6b0c1c5e-7a43-4a8e-9d55-2f5a0c1b8e01",
                    "event_type": "inbound_protection.malicious",
                    "severity": "critical",
                    "event": {"subject": "Overdue invoice #48213", "action": "quarantined"},
                },
                {
                    "event_id": "6b0c1c5e-7a43-4a8e-9d55-2f5a0c1b8e02",
                    "event_type": "ai_response.quarantine_release",
                    "severity": "low",
                    "event_time": 1795428000123,
                    "event": {"reason": "false positive"},
                },
            ]
        },
    },
}


@router.post(
    "/events",
    response={
        201: EventOut | EventBatchOut,
        200: EventOut | EventBatchOut,
        **BODY,
        **DENIED,
        **LIMITED,
    },
    tags=EVENTS,
    summary="Publish an event, or a batch of events",
    **_with_examples(requires(Capability.MANAGE_DESTINATIONS), PUBLISH_EXAMPLES),
)
def publish_event(request: HttpRequest, payload: Body[EventPublishIn]):
    """Admins only (publishing makes deliveries happen). One event: 201 when stored; 200 with
    the stored event when this `event_id` was published before (idempotent).

    A batch, `{"events": [...]}` (up to EVENTS_BATCH_MAX_COUNT events, a body of at most
    EVENTS_BATCH_MAX_BYTES): all or nothing; a 400 names each bad item as
    `events[<index>].<field>` and stores nothing. The answer lists every item's `event_id`
    with `created` or `duplicate`; 201 when the batch stored any event, 200 when none."""
    principal = request_principal(request)
    _rate_limit(request, principal, ratelimits.PUBLISH)
    if isinstance(payload, EventBatchIn):
        return _publish_batch(principal, payload.events)
    try:
        published = event_publish(
            tenant=principal.tenant,
            event_type=payload.event_type,
            payload=payload.event,
            severity=payload.severity.value,
            event_id=payload.event_id,
            event_time=payload.event_time,
        )
    except PublishError as error:
        raise invalid({field: [message] for field, message in error.errors.items()}) from None
    return Status(201 if published.created else 200, _event_out(published.event))


def _type_errors(error: PydanticValidationError) -> dict[str, list[str]]:
    """Pydantic's errors of one item by top-level field, in the API's words."""
    errors: dict[str, list[str]] = {}
    for item in error.errors():
        location = item.get("loc") or ("event",)
        field = str(location[0])
        if item.get("type") == "missing":
            message = "This field is required."
        else:
            message = str(item.get("msg", "Invalid value.")).removeprefix("Value error, ")
        if message not in errors.setdefault(field, []):
            errors[field].append(message)
    return errors


def _service_item(item: EventIn) -> dict[str, Any]:
    return {
        "event_id": item.event_id,
        "event_type": item.event_type,
        "severity": item.severity.value,
        "event_time": item.event_time,
        "payload": item.event,
    }


def _publish_batch(principal: ApiPrincipal, items: list[Any]):
    """Check every item (types, then the rules of events), then store all or nothing."""
    limit = settings.EVENTS_BATCH_MAX_COUNT
    if not items:
        raise invalid({"events": ["Send at least one event."]})
    if len(items) > limit:
        raise invalid(
            {"events": [f"A batch holds at most {limit} events; this one has {len(items)}."]}
        )
    errors: dict[str, list[str]] = {}
    positions: list[int] = []
    checked: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors[f"events[{index}]"] = ["Each event must be a JSON object."]
            continue
        try:
            checked.append(_service_item(EventIn.model_validate(item)))
            positions.append(index)
        except PydanticValidationError as error:
            found = _type_errors(error)
            try:  # the rules too, for the fields whose type was right
                validate_event({**item, "payload": item.get("event")})
            except PublishError as rules:
                for field, message in rules.errors.items():
                    found.setdefault(field, [message])
            for field, messages in found.items():
                errors[f"events[{index}].{field}"] = messages
    try:
        if errors:
            validate_events(checked)  # to name the other bad items too
        else:
            answers = event_publish_many(tenant=principal.tenant, events=checked)
    except BatchPublishError as error:
        for position, item_errors in error.item_errors.items():
            for field, message in item_errors.items():
                errors[f"events[{positions[position]}].{field}"] = [message]
    if errors:
        raise invalid(dict(sorted(errors.items(), key=lambda pair: _error_order(pair[0]))))
    created = sum(answer.created for answer in answers)
    body = {
        "created": created,
        "duplicates": len(answers) - created,
        "events": [
            {"event_id": answer.event_id, "status": "created" if answer.created else "duplicate"}
            for answer in answers
        ],
    }
    return Status(201 if created else 200, body)


def _error_order(key: str) -> tuple[int, str]:
    """`events[10].x` after `events[9].y`: by item index, then field."""
    index, _, field = key.removeprefix("events[").partition("]")
    return int(index), field


@router.get(
    "/event-types",
    response={200: list[EventTypeOut], **DENIED},
    tags=EVENTS,
    summary="The event catalogue",
    **requires(Capability.VIEW_INTEGRATIONS),
)
def list_event_types(request: HttpRequest):
    """Every event type with its label, description and an example payload."""
    return [
        {
            "event_type": event_type.value,
            "label": event_type.label,
            "description": EVENT_TYPE_DESCRIPTIONS.get(event_type, ""),
            "example_payload": EXAMPLE_PAYLOADS.get(event_type, {}),
        }
        for event_type in EventType
    ]
