"""Portal pages for destinations: the Integrations page, a destination's page and its actions.

Views stay thin: find the object within the current tenant, validate a form, call a service.
A generated secret is shown once, in the response to the POST that created it: it is never put
in the session, the messages framework or a URL.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from integrations.catalogue import EventType
from integrations.forms import DestinationForm, RotateSecretForm, custom_headers_from_post
from integrations.models import Destination, Health
from integrations.services import (
    destination_create,
    destination_delete,
    destination_rotate_secret,
    destination_set_active,
    destination_update,
)
from portal.permissions import Capability, has_capability, require_capability

MASK = "••••••••"
FORM_FIELDS = (
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
)


@dataclass(frozen=True)
class HeaderRow:
    """One custom header row of the form; a stored value is never sent back to the browser."""

    name: str
    stored: bool = False


# Helpers --------------------------------------------------------------------------------------
def _get_destination(request: HttpRequest, destination_id) -> Destination:
    """The current tenant's destination, or 404 (another tenant's destination is not found)."""
    return get_object_or_404(Destination.objects.for_tenant(request.tenant), pk=destination_id)


def _destination_form(request: HttpRequest, instance: Destination | None = None, **kwargs):
    form = DestinationForm(tenant=request.tenant, instance=instance, **kwargs)
    form.fields["endpoint_url"].widget.attrs.update(
        {"inputmode": "url", "autocomplete": "off", "placeholder": "https://"}
    )
    return form


def _posted_destination_form(request: HttpRequest, instance: Destination | None = None):
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


def _can_manage(request: HttpRequest) -> bool:
    return has_capability(request.membership, Capability.MANAGE_DESTINATIONS)


def _health_summary(destinations: list[Destination]) -> list[dict]:
    """How many destinations are in each health state (computed from the rows: no query)."""
    order = {value: rank for rank, value in enumerate(Health.values)}
    summary: dict[str, dict] = {}
    for destination in destinations:
        health = str(destination.health)
        entry = summary.setdefault(
            health, {"health": health, "label": destination.health_label, "count": 0}
        )
        entry["count"] += 1
    return sorted(summary.values(), key=lambda entry: order.get(entry["health"], 0))


def _no_store(response: HttpResponse) -> HttpResponse:
    """A page that shows a secret must not be kept by the browser or a proxy."""
    add_never_cache_headers(response)
    return response


def _render_index(
    request: HttpRequest,
    *,
    form: DestinationForm | None = None,
    header_rows: list[HeaderRow] | None = None,
    created: Destination | None = None,
    generated_secret: str | None = None,
    status: int = 200,
) -> HttpResponse:
    if form is None and _can_manage(request):
        form = _destination_form(request)
    destinations = list(Destination.objects.for_tenant(request.tenant).order_by("name"))
    context = {
        "destinations": destinations,
        "health_summary": _health_summary(destinations),
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


def _render_detail(
    request: HttpRequest,
    destination: Destination,
    *,
    rotate_form: RotateSecretForm | None = None,
    generated_secret: str | None = None,
    delete_error: str = "",
    status: int = 200,
) -> HttpResponse:
    can_manage = _can_manage(request)
    if rotate_form is None and can_manage:
        rotate_form = RotateSecretForm()
    now = timezone.now()
    previous_secret_until = None
    if (
        destination.previous_secret_encrypted
        and destination.previous_secret_expires_at
        and destination.previous_secret_expires_at > now
    ):
        previous_secret_until = destination.previous_secret_expires_at
    labels = dict(EventType.choices)
    context = {
        "destination": destination,
        "event_type_labels": [labels.get(value, value) for value in destination.event_types],
        "custom_header_names": list(destination.custom_header_names),
        "mask": MASK,
        "previous_secret_until": previous_secret_until,
        "rotate_form": rotate_form if can_manage else None,
        "generated_secret": generated_secret,
        "delete_error": delete_error,
    }
    response = render(request, "integrations/destination_detail.html", context, status=status)
    return _no_store(response) if generated_secret else response


# Pages ----------------------------------------------------------------------------------------
@require_capability(Capability.VIEW_INTEGRATIONS)
def index(request: HttpRequest) -> HttpResponse:
    """Delivery health, the Create destination card (admins) and the Destinations list."""
    return _render_index(request)


@require_capability(Capability.MANAGE_DESTINATIONS, post_only=True)
def destination_create_view(request: HttpRequest) -> HttpResponse:
    """Create a destination; the Integrations page is the response, so a generated secret is
    shown once, here, and never stored anywhere it could be shown again."""
    form = _posted_destination_form(request)
    if not form.is_valid():
        return _render_index(
            request, form=form, header_rows=_posted_header_rows(request), status=400
        )
    destination, generated = destination_create(
        tenant=request.tenant, actor=request.user, data={**form.cleaned_data}
    )
    return _render_index(
        request,
        form=_destination_form(request),
        created=destination,
        generated_secret=generated,
        status=201,
    )


@require_capability(Capability.VIEW_DELIVERIES)
def destination_detail(request: HttpRequest, destination_id) -> HttpResponse:
    """A destination's configuration (secrets never shown) and, for admins, its actions."""
    return _render_detail(request, _get_destination(request, destination_id))


@require_capability(Capability.MANAGE_DESTINATIONS)
def destination_edit(request: HttpRequest, destination_id) -> HttpResponse:
    """Edit a destination: blank secret and blank header values keep what is stored."""
    destination = _get_destination(request, destination_id)
    stored_names = list(destination.custom_header_names)
    if request.method == "POST":
        form = _posted_destination_form(request, destination)
        if form.is_valid():
            destination_update(
                destination=destination, actor=request.user, data={**form.cleaned_data}
            )
            messages.success(request, "Destination updated.")
            return redirect("integrations:destination_detail", destination_id=destination.pk)
        header_rows = _posted_header_rows(request, stored_names)
        status = 400
    else:
        form = _destination_form(request, destination, initial=_initial_from(destination))
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


@require_capability(Capability.MANAGE_DESTINATIONS, post_only=True)
def destination_pause(request: HttpRequest, destination_id) -> HttpResponse:
    destination = _get_destination(request, destination_id)
    destination_set_active(destination=destination, actor=request.user, active=False)
    messages.success(request, "Destination paused.")
    return redirect("integrations:destination_detail", destination_id=destination.pk)


@require_capability(Capability.MANAGE_DESTINATIONS, post_only=True)
def destination_activate(request: HttpRequest, destination_id) -> HttpResponse:
    destination = _get_destination(request, destination_id)
    destination_set_active(destination=destination, actor=request.user, active=True)
    messages.success(request, "Destination activated.")
    return redirect("integrations:destination_detail", destination_id=destination.pk)


@require_capability(Capability.MANAGE_DESTINATIONS, post_only=True)
def destination_rotate_secret_view(request: HttpRequest, destination_id) -> HttpResponse:
    """Rotate the signing secret; a generated one is shown once on this response."""
    destination = _get_destination(request, destination_id)
    form = RotateSecretForm(request.POST)
    if not form.is_valid():
        return _render_detail(request, destination, rotate_form=form, status=400)
    destination, generated = destination_rotate_secret(
        destination=destination,
        actor=request.user,
        new_secret=form.cleaned_data["secret"] or None,
        overlap_hours=form.cleaned_data["overlap_hours"],
    )
    messages.success(request, "Secret rotated.")
    if generated is None:
        return redirect("integrations:destination_detail", destination_id=destination.pk)
    return _render_detail(request, destination, generated_secret=generated)


@require_capability(Capability.MANAGE_DESTINATIONS, post_only=True)
def destination_delete_view(request: HttpRequest, destination_id) -> HttpResponse:
    """Delete after an explicit confirmation (a checkbox, and a prompt when JS runs)."""
    destination = _get_destination(request, destination_id)
    if request.POST.get("confirm") != "yes":
        error = "Tick the confirmation box to delete this destination."
        return _render_detail(request, destination, delete_error=error, status=400)
    destination_delete(destination=destination, actor=request.user)
    messages.success(request, "Destination deleted.")
    return redirect("integrations:index")
