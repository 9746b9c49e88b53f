"""Portal pages for destinations and deliveries: the Integrations page (delivery health, the
Create destination card, the Destinations list), a destination's page with its deliveries, a
delivery's page with its events and attempts, and the admin actions.

Views stay thin: find the object within the current tenant, validate a form, call a service.
Create uses post/redirect/get: the created destination's id and its generated secret
(encrypted) wait in the session for the next page, which takes them out, so the secret is shown
once and a reload never submits twice. A rotated secret is shown in the response to the POST.
Fragment views serve htmx polling: they render the same templates as the pages, only the part
that refreshes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from integrations import crypto, selectors, verification
from integrations.catalogue import EventType
from integrations.explain import Explanation, explain, explain_destination
from integrations.forms import (
    DeliveryFilterForm,
    DestinationForm,
    RotateSecretForm,
    SignatureCheckForm,
    custom_headers_from_post,
)
from integrations.models import (
    Attempt,
    Delivery,
    DeliveryState,
    Destination,
    Health,
    Provider,
    ResendJob,
    ResendJobState,
)
from integrations.services import (
    CONFIG_FIELDS,
    NotResendable,
    TestResult,
    delivery_resend,
    destination_create,
    destination_delete,
    destination_resend_all_failed,
    destination_rotate_secret,
    destination_set_active,
    destination_test_queue,
    destination_update,
    shown_test_result,
)
from portal import ratelimits
from portal.filters import keyset_page
from portal.http import TenantRequest
from portal.permissions import Capability, has_capability, require_capability
from portal.redirects import redirect_to_next

MASK = "••••••••"
CREATED_KEY = "integrations.created"  # session: {"id": ..., "secret": encrypted or ""}
OFFER_TEST_KEY = "integrations.offer_test"  # session: the id of a destination just saved
FORM_FIELDS = CONFIG_FIELDS


@dataclass(frozen=True)
class HeaderRow:
    """One custom header row of the form; a stored value is never sent back to the browser."""

    name: str
    stored: bool = False


PAGE_SIZE = 25
EVENTS_SHOWN = 100
ATTEMPTS_SHOWN = 100
PAYLOAD_SHOWN_CHARS = 64 * 1024
RESEND_JOB_SHOWN_FOR = timedelta(minutes=10)


# Page data --------------------------------------------------------------------------------------
@dataclass
class DeliveryPage:
    """One page of deliveries and the ids to page from (None: no page that way)."""

    rows: list[Delivery]
    newer_cursor: int | None = None
    older_cursor: int | None = None

    @property
    def is_newest(self) -> bool:
        return self.newer_cursor is None


@dataclass
class ShownEvent:
    event_id: str
    event_type: str
    severity: str
    event_time: datetime
    payload: str
    truncated: bool


@dataclass
class ShownAttempt:
    attempt: Attempt
    explanation: Explanation | None
    headers: list[tuple[str, str]]


# Helpers --------------------------------------------------------------------------------------
def _get_destination(request: TenantRequest, destination_id) -> Destination:
    """The current tenant's destination, or 404 (another tenant's destination is not found)."""
    return selectors.destination_get(tenant=request.tenant, pk=destination_id)


def _destination_form(request: TenantRequest, instance: Destination | None = None, **kwargs):
    form = DestinationForm(tenant=request.tenant, instance=instance, **kwargs)
    form.fields["endpoint_url"].widget.attrs.update(
        {"inputmode": "url", "autocomplete": "off", "placeholder": "https://"}
    )
    return form


def _posted_destination_form(request: TenantRequest, instance: Destination | None = None):
    return _destination_form(
        request,
        instance,
        data=request.POST,
        custom_headers=custom_headers_from_post(request.POST),
    )


def _initial_from(destination: Destination) -> dict:
    return {field: getattr(destination, field) for field in FORM_FIELDS}


def _posted_header_rows(request: HttpRequest, stored_names=()) -> list[HeaderRow]:
    """Re-show the typed header names after an error; values are never echoed back."""
    stored = set(stored_names)
    return [
        HeaderRow(name=name.strip(), stored=name.strip() in stored)
        for name in request.POST.getlist("header_name")
        if name.strip()
    ]


def _typed_secrets(request: HttpRequest) -> bool:
    """Whether a secret or header values were typed: never echoed back, they must be retyped."""
    values = [request.POST.get("secret", ""), *request.POST.getlist("header_value")]
    return any(value.strip() for value in values)


def _can_manage(request: TenantRequest) -> bool:
    return has_capability(request.membership, Capability.MANAGE_DESTINATIONS)


def _health_summary(destinations: list[Destination]) -> list[dict]:
    """How many destinations are in each health state (computed from the rows: no query)."""
    order = {value: rank for rank, value in enumerate(Health.values)}
    summary: dict[str, dict] = {}
    for destination in destinations:
        value = str(destination.health)
        entry = summary.setdefault(
            value, {"health": value, "label": Health(value).label, "count": 0}
        )
        entry["count"] += 1
    return sorted(summary.values(), key=lambda entry: order.get(entry["health"], 0))


def _no_store(response: HttpResponse) -> HttpResponse:
    """A page that shows a secret must not be kept by the browser or a proxy."""
    add_never_cache_headers(response)
    return response


def _render_index(
    request: TenantRequest,
    *,
    form: DestinationForm | None = None,
    header_rows: list[HeaderRow] | None = None,
    created: Destination | None = None,
    generated_secret: str | None = None,
    status: int = 200,
) -> HttpResponse:
    if form is None and _can_manage(request):
        form = _destination_form(request)
    destinations = list(selectors.destination_list(tenant=request.tenant))
    context = {
        **_health_context(request, destinations),
        "destinations": destinations,
        "egress_ips": list(settings.WEBHOOK_EGRESS_IPS),
        "form": form,
        "header_rows": header_rows or [],
        "more_open": form is not None and bool(set(form.errors) - {"name", "endpoint_url"}),
        "retype_secrets": form is not None and form.is_bound and _typed_secrets(request),
        "created": created,
        "generated_secret": generated_secret,
        "event_type_count": len(EventType.values),
    }
    response = render(request, "integrations/index.html", context, status=status)
    return _no_store(response) if generated_secret else response


def _health_context(request: TenantRequest, destinations: list[Destination]) -> dict[str, Any]:
    """The live part of the Integrations page: a fixed number of queries (see selectors)."""
    now = timezone.now()
    recent = selectors.delivery_recent_list(tenant=request.tenant)
    for delivery in recent:
        delivery.relative = selectors.relative_time(delivery.created_at, now)
    return {
        "health_summary": _health_summary(destinations),
        "health_cards": selectors.destinations_health(destinations, now=now),
        "disabled_destinations": [
            {"destination": d, "reason": d.disabled_reason.rstrip(". ") or "no successful delivery"}
            for d in destinations
            if d.disabled_at is not None
        ],
        "recent_deliveries": recent,
    }


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _get_delivery(request: TenantRequest, delivery_id) -> Delivery:
    """The current tenant's delivery with its destination, or 404."""
    return selectors.delivery_get(tenant=request.tenant, pk=delivery_id)


def _redirect_back(request: HttpRequest, default: str, **kwargs) -> HttpResponse:
    """Back to the page the form was on (a local `next`), else to the default page."""
    return redirect_to_next(request, reverse(default, kwargs=kwargs))


def _deliveries_page(
    deliveries: QuerySet, *, before: int | None, after: int | None
) -> DeliveryPage:
    rows, newer, older = keyset_page(deliveries, before=before, after=after, size=PAGE_SIZE)
    return DeliveryPage(rows, newer_cursor=newer, older_cursor=older)


def _deliveries_context(request: TenantRequest, destination: Destination) -> dict[str, Any]:
    """The Deliveries list of the destination page, filtered from the query string."""
    form = DeliveryFilterForm(request.GET)
    context: dict[str, Any] = {"filter_form": form, "page": DeliveryPage([]), "filter_query": ""}
    if not form.is_valid():
        return context
    deliveries = form.apply(selectors.delivery_list(tenant=request.tenant, destination=destination))
    page = _deliveries_page(
        deliveries, before=form.cleaned_data["before"], after=form.cleaned_data["after"]
    )
    context.update(
        page=page,
        filtered=form.has_filters(),
        paged=form.cleaned_data["before"] is not None or form.cleaned_data["after"] is not None,
        filter_query=urlencode(form.filter_params()),
    )
    return context


def _latest_resend_job(request: TenantRequest, destination: Destination) -> ResendJob | None:
    """The destination's resend job while it runs, and for a while after it finished."""
    job = selectors.resend_job_latest(tenant=request.tenant, destination=destination)
    if job is None or job.state != ResendJobState.DONE:
        return job
    if job.finished_at and timezone.now() - job.finished_at < RESEND_JOB_SHOWN_FOR:
        return job
    return None


def _render_detail(
    request: TenantRequest,
    destination: Destination,
    *,
    rotate_form: RotateSecretForm | None = None,
    generated_secret: str | None = None,
    delete_error: str = "",
    test_result: TestResult | None = None,
    offer_test: bool = False,
    signature_form: SignatureCheckForm | None = None,
    signature_check: verification.SignatureCheck | None = None,
    status: int = 200,
) -> HttpResponse:
    can_manage = _can_manage(request)
    if rotate_form is None and can_manage:
        rotate_form = RotateSecretForm(
            scheme=destination.signature_scheme, provider=destination.provider
        )
    now = timezone.now()
    previous_secret_until = None
    if (
        destination.previous_secret_encrypted
        and destination.previous_secret_expires_at
        and destination.previous_secret_expires_at > now
    ):
        previous_secret_until = destination.previous_secret_expires_at
    labels = dict(EventType.choices)
    deliveries = _deliveries_context(request, destination)
    if deliveries["filter_form"].errors and status == 200:
        status = 400
    has_failed = can_manage and selectors.delivery_has_failed(
        tenant=request.tenant, destination=destination
    )
    context = {
        "destination": destination,
        "health_explanation": explain_destination(destination),
        "event_type_labels": [labels.get(value, value) for value in destination.event_types],
        "custom_header_names": list(destination.custom_header_names),
        "mask": MASK,
        "previous_secret_until": previous_secret_until,
        "rotate_form": rotate_form if can_manage else None,
        "generated_secret": generated_secret,
        "delete_error": delete_error,
        **deliveries,
        "has_failed": has_failed,
        "resend_job": _latest_resend_job(request, destination),
        "test_result": test_result,
        "offer_test": offer_test and can_manage,
        "signature_form": signature_form or SignatureCheckForm(),
        "signature_check": signature_check,
        "sent_headers": verification.sent_headers(destination),
        "snippets": verification.receiver_snippets(destination),
    }
    response = render(request, "integrations/destination_detail.html", context, status=status)
    # A pasted body is the customer's data: keep it out of caches like a secret.
    return _no_store(response) if generated_secret or signature_form else response


# Pages ----------------------------------------------------------------------------------------
@require_capability(Capability.VIEW_INTEGRATIONS)
def index(request: TenantRequest) -> HttpResponse:
    """Delivery health, the Create destination card (admins) and the Destinations list; right
    after a Create, the new destination's secret (once) and Send test event."""
    created, secret = _pop_created(request)
    form = None
    if _can_manage(request) and request.GET.get("provider") in Provider.values:
        # Without JavaScript the provider links re-render the form for that provider.
        form = _destination_form(request, initial={"provider": request.GET["provider"]})
    return _render_index(request, form=form, created=created, generated_secret=secret)


def _pop_created(request: TenantRequest) -> tuple[Destination | None, str | None]:
    """The destination this session just created and its generated secret, taken out of the
    session so that they show once."""
    data = request.session.pop(CREATED_KEY, None)
    if not isinstance(data, dict):
        return None, None
    created = selectors.destination_find(tenant=request.tenant, pk=data.get("id"))
    if created is None:
        return None, None
    return created, crypto.decrypt(data["secret"]) if data.get("secret") else None


@require_capability(Capability.VIEW_INTEGRATIONS)
def live_fragment(request: TenantRequest) -> HttpResponse:
    """The live part of the Integrations page (health, banners, recent deliveries), for polling;
    it never touches the Create destination card, so what a user typed there survives."""
    destinations = list(selectors.destination_list(tenant=request.tenant))
    context = {**_health_context(request, destinations), "oob": True}
    return render(request, "integrations/_health.html", context)


@require_capability(Capability.MANAGE_DESTINATIONS, post_only=True)
def destination_create_view(request: TenantRequest) -> HttpResponse:
    """Create a destination, then redirect to the Integrations page, which shows the generated
    secret once and offers Send test event (post/redirect/get: a reload never posts again)."""
    form = _posted_destination_form(request)
    if not form.is_valid():
        return _render_index(
            request, form=form, header_rows=_posted_header_rows(request), status=400
        )
    destination, generated = destination_create(
        tenant=request.tenant, actor=request.user, data={**form.cleaned_data}
    )
    request.session[CREATED_KEY] = {
        "id": str(destination.pk),
        "secret": crypto.encrypt(generated) if generated else "",
    }
    return redirect(reverse("integrations:index") + "#create-destination")


@require_capability(Capability.VIEW_DELIVERIES)
def destination_detail(request: TenantRequest, destination_id) -> HttpResponse:
    """A destination's configuration (secrets never shown), its deliveries, the receiver guide
    and the signature check; for admins, its actions (after Save, Send test event first)."""
    destination = _get_destination(request, destination_id)
    offer_test = request.session.pop(OFFER_TEST_KEY, None) == str(destination.pk)
    result = None
    if _can_manage(request) and request.GET.get("test", "").isdigit():
        test = selectors.delivery_find_test(
            tenant=request.tenant, destination=destination, pk=request.GET["test"]
        )
        result = shown_test_result(test) if test is not None else None
    return _render_detail(request, destination, test_result=result, offer_test=offer_test)


@require_capability(Capability.VIEW_DELIVERIES)
def destination_deliveries_fragment(request: TenantRequest, destination_id) -> HttpResponse:
    """The Deliveries list alone, with the page's filters, for live refresh of the first page."""
    destination = _get_destination(request, destination_id)
    context = {"destination": destination, **_deliveries_context(request, destination)}
    status = 400 if context["filter_form"].errors else 200
    return render(request, "integrations/_delivery_list.html", context, status=status)


@require_capability(Capability.MANAGE_DESTINATIONS)
def destination_edit(request: TenantRequest, destination_id) -> HttpResponse:
    """Edit a destination: blank secret and blank header values keep what is stored."""
    destination = _get_destination(request, destination_id)
    stored_names = list(destination.custom_header_names)
    if request.method == "POST":
        form = _posted_destination_form(request, destination)
        if form.is_valid():
            destination = destination_update(
                destination=destination, actor=request.user, data={**form.cleaned_data}
            )
            messages.success(request, "Destination updated.")
            if form.cleared_on_origin_change:
                messages.warning(
                    request,
                    "The endpoint moved to another origin: "
                    + " and ".join(form.cleared_on_origin_change)
                    + " not entered again in this change were cleared. Enter them again.",
                )
            if destination.generated_secret:
                return _render_detail(
                    request, destination, generated_secret=destination.generated_secret
                )
            request.session[OFFER_TEST_KEY] = str(destination.pk)
            return redirect("integrations:destination_detail", destination_id=destination.pk)
        header_rows = _posted_header_rows(request, stored_names)
        status = 400
    else:
        initial = _initial_from(destination)
        if request.GET.get("provider") in Provider.values:
            initial["provider"] = request.GET["provider"]  # the provider links, without JS
        form = _destination_form(request, destination, initial=initial)
        header_rows = [HeaderRow(name=name, stored=True) for name in stored_names]
        status = 200
    context = {
        "destination": destination,
        "form": form,
        "header_rows": header_rows,
        "more_open": True,
        "retype_secrets": form.is_bound and _typed_secrets(request),
    }
    return render(request, "integrations/destination_edit.html", context, status=status)


def _set_active(request: TenantRequest, destination_id, *, active: bool) -> HttpResponse:
    destination = _get_destination(request, destination_id)
    destination_set_active(destination=destination, actor=request.user, active=active)
    messages.success(request, "Destination activated." if active else "Destination paused.")
    return redirect("integrations:destination_detail", destination_id=destination.pk)


@require_capability(Capability.MANAGE_DESTINATIONS, post_only=True)
def destination_pause(request: TenantRequest, destination_id) -> HttpResponse:
    return _set_active(request, destination_id, active=False)


@require_capability(Capability.MANAGE_DESTINATIONS, post_only=True)
def destination_activate(request: TenantRequest, destination_id) -> HttpResponse:
    return _set_active(request, destination_id, active=True)


@require_capability(Capability.MANAGE_DESTINATIONS, post_only=True)
def destination_rotate_secret_view(request: TenantRequest, destination_id) -> HttpResponse:
    """Rotate the signing secret; a generated one is shown once on this response."""
    destination = _get_destination(request, destination_id)
    form = RotateSecretForm(
        request.POST, scheme=destination.signature_scheme, provider=destination.provider
    )
    if not form.is_valid():
        return _render_detail(request, destination, rotate_form=form, status=400)
    destination, generated = destination_rotate_secret(
        destination=destination,
        actor=request.user,
        new_secret=form.cleaned_data["secret"] or None,
        overlap_hours=form.cleaned_data["overlap_hours"],
    )
    messages.success(request, "HEC token replaced." if destination.is_splunk else "Secret rotated.")
    if generated is None:
        return redirect("integrations:destination_detail", destination_id=destination.pk)
    return _render_detail(request, destination, generated_secret=generated)


@require_capability(Capability.MANAGE_DESTINATIONS, post_only=True)
def destination_delete_view(request: TenantRequest, destination_id) -> HttpResponse:
    """Delete after an explicit confirmation (a checkbox, and a prompt when JS runs)."""
    destination = _get_destination(request, destination_id)
    if request.POST.get("confirm") != "yes":
        error = "Tick the confirmation box to delete this destination."
        return _render_detail(request, destination, delete_error=error, status=400)
    destination_delete(destination=destination, actor=request.user)
    messages.success(request, "Destination deleted.")
    return redirect("integrations:index")


# Delivery actions and pages --------------------------------------------------------------------
@require_capability(Capability.MANAGE_DESTINATIONS, post_only=True)
def destination_send_test_view(request: TenantRequest, destination_id) -> HttpResponse:
    """Queue one test event for a worker; the result appears in place when it is known (htmx
    polls it), or on the destination's page (without JavaScript)."""
    destination = _get_destination(request, destination_id)
    try:
        ratelimits.check(request, ratelimits.TEST_SEND, user_id=request.user.pk)
    except ratelimits.RateLimited as error:
        return ratelimits.too_many_requests(error)
    delivery = destination_test_queue(destination=destination, actor=request.user)
    if _is_htmx(request):
        context = {"destination": destination, "test_result": shown_test_result(delivery)}
        return render(request, "integrations/_test_result.html", context)
    url = reverse("integrations:destination_detail", kwargs={"destination_id": destination.pk})
    return redirect(f"{url}?{urlencode({'test': delivery.pk})}#test-result")


@require_capability(Capability.MANAGE_DESTINATIONS)
def destination_test_result(request: TenantRequest, test_delivery_id: int):
    """A test event's result, polled while the worker sends it."""
    delivery = selectors.delivery_get(tenant=request.tenant, pk=test_delivery_id, test_only=True)
    result = shown_test_result(delivery)
    context = {"destination": delivery.destination, "test_result": result}
    response = render(request, "integrations/_test_result.html", context)
    if not result.pending:
        response["HX-Trigger"] = "deliveries-changed"  # the list shows the test delivery now
    return response


@require_capability(Capability.MANAGE_DESTINATIONS, post_only=True)
def destination_resend_failed_view(request: TenantRequest, destination_id) -> HttpResponse:
    """Queue every failed delivery again in the background; the page shows the progress."""
    destination = _get_destination(request, destination_id)
    job = destination_resend_all_failed(destination=destination, actor=request.user)
    if job.total:
        messages.success(
            request, f"Resending {job.total} failed deliver{'y' if job.total == 1 else 'ies'}."
        )
    else:
        messages.info(request, "There are no failed deliveries to resend.")
    url = reverse("integrations:destination_detail", kwargs={"destination_id": destination.pk})
    return redirect(f"{url}#resend-job")


@require_capability(Capability.VIEW_DELIVERIES, post_only=True)
def destination_verify_signature(request: TenantRequest, destination_id) -> HttpResponse:
    """Check a pasted body and signature against the destination's secrets. It only computes:
    no state changes, and the secret is never shown (POST because a body can be 1 MiB)."""
    destination = _get_destination(request, destination_id)
    try:
        ratelimits.check(request, ratelimits.SIGNATURE_CHECK, user_id=request.user.pk)
    except ratelimits.RateLimited as error:
        return ratelimits.too_many_requests(error)
    form = SignatureCheckForm(request.POST)
    check = None
    if form.is_valid():
        try:
            check = verification.check_signature(
                destination=destination,
                body=form.cleaned_data["body"],
                signature=form.cleaned_data["signature"],
                message_id=form.cleaned_data["webhook_id"],
                timestamp=form.cleaned_data["webhook_timestamp"],
            )
        except verification.SignatureInputError as error:
            form.add_error(error.field, str(error))
    status = 200 if check is not None else 400
    if _is_htmx(request):
        context = {"destination": destination, "signature_form": form, "signature_check": check}
        response = render(request, "integrations/_signature_check.html", context, status=status)
        return _no_store(response)
    return _render_detail(
        request, destination, signature_form=form, signature_check=check, status=status
    )


@require_capability(Capability.VIEW_DELIVERIES)
def resend_job_status(request: TenantRequest, job_id: int) -> HttpResponse:
    """The progress of a "Resend all failed" job, polled by the destination page."""
    job = selectors.resend_job_get(tenant=request.tenant, pk=job_id)
    return render(request, "integrations/_resend_job.html", {"job": job})


@require_capability(Capability.VIEW_DELIVERIES)
def delivery_detail(request: TenantRequest, delivery_id: int) -> HttpResponse:
    """A delivery: its events (payloads escaped) and every attempt with what to do about it."""
    delivery = _get_delivery(request, delivery_id)
    events = [
        _shown_event(event)
        for event in selectors.delivery_event_list(delivery=delivery, limit=EVENTS_SHOWN)
    ]
    attempts = [
        ShownAttempt(
            attempt,
            explain(status_code=attempt.status_code, error_kind=attempt.error_kind, ok=attempt.ok),
            sorted((str(k), str(v)) for k, v in (attempt.request_headers or {}).items()),
        )
        for attempt in selectors.attempt_list(delivery=delivery, limit=ATTEMPTS_SHOWN)
    ]
    context = {
        "delivery": delivery,
        "destination": delivery.destination,
        "events": events,
        "events_capped": delivery.event_count > len(events) and not delivery.is_test,
        "attempts": attempts,
        "attempts_capped": len(attempts) == ATTEMPTS_SHOWN
        and delivery.attempt_count > ATTEMPTS_SHOWN,
        "last_explanation": explain(
            status_code=delivery.last_status_code, error_kind=delivery.last_error_kind
        )
        if delivery.state in (DeliveryState.RETRYING, DeliveryState.FAILED)
        else None,
        "resendable": delivery.state == DeliveryState.FAILED and not delivery.is_test,
        "events_shown": EVENTS_SHOWN,
        "attempts_shown": ATTEMPTS_SHOWN,
    }
    return render(request, "integrations/delivery_detail.html", context)


@require_capability(Capability.MANAGE_DESTINATIONS, post_only=True)
def delivery_resend_view(request: TenantRequest, delivery_id: int) -> HttpResponse:
    """Send a failed delivery again (same events, new attempts), ahead of newer events."""
    delivery = _get_delivery(request, delivery_id)
    try:
        delivery_resend(delivery=delivery, actor=request.user)
    except NotResendable as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Delivery {delivery.pk} will be sent again.")
    return _redirect_back(request, "integrations:delivery_detail", delivery_id=delivery.pk)


def _shown_event(event) -> ShownEvent:
    """An event for display: its payload pretty-printed (escaped by the template), bounded."""
    text = json.dumps(event.payload, indent=2, ensure_ascii=False)
    truncated = len(text) > PAYLOAD_SHOWN_CHARS
    return ShownEvent(
        event_id=str(event.event_id),
        event_type=event.event_type,
        severity=event.severity,
        event_time=event.event_time,
        payload=text[:PAYLOAD_SHOWN_CHARS] if truncated else text,
        truncated=truncated,
    )
