"""Helpers shared by the destination page tests (list, form, page, actions)."""

from __future__ import annotations

import re

from django.urls import reverse

from audit.models import AuditEntry
from integrations.catalogue import EventType
from integrations.models import Destination
from integrations.services import destination_create
from tests.api import GIVEN_SECRET, HEADER_VALUE

ROLES_WITHOUT_MANAGE = ["operator", "auditor"]


def form_data(**overrides) -> dict:
    """A valid Create destination form, as the browser posts it."""
    data = {
        "name": "Tenant SOC webhook",
        "endpoint_url": "https://hooks.example.com/webhook",
        "secret": "",
        "provider": "custom",
        "event_types": list(EventType.values),
        "min_severity": "",
        "signature_header": "X-OneProtect-Signature",
        "header_name": [],
        "header_value": [],
        "timeout_seconds": "30",
        "rate_limit_per_second": "",
        "active": "on",
    }
    data.update(overrides)
    return data


def make_destination(setup, name: str = "Existing hook", **data) -> Destination:
    values = {
        "name": name,
        "endpoint_url": "https://hooks.example.com/existing",
        "event_types": list(EventType.values),
        "secret": GIVEN_SECRET,
        "custom_headers": {"X-Api-Key": HEADER_VALUE},
        **data,
    }
    destination, _ = destination_create(tenant=setup.tenant, actor=setup.admin, data=values)
    return destination


def card(response, section_id: str) -> str:
    html = response.content.decode()
    match = re.search(rf'<section class="card" id="{section_id}".*?</section>', html, re.S)
    assert match, f"no section #{section_id}"
    return match.group(0)


def create_url() -> str:
    return reverse("integrations:destination_create")


def create(client, data: dict):
    """Post the Create destination form (post/redirect/get) and follow to the page it shows."""
    response = client.post(create_url(), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert response["Location"] == reverse("integrations:index") + "#create-destination"
    return client.get(response["Location"])


def url(name: str, destination: Destination) -> str:
    return reverse(f"integrations:{name}", kwargs={"destination_id": destination.pk})


def destination_entries(tenant):
    """Audit entries about destinations (signing in writes entries of its own)."""
    return AuditEntry.objects.filter(tenant=tenant, action__startswith="destination.")


def actions(tenant) -> list[str]:
    return list(destination_entries(tenant).order_by("sequence").values_list("action", flat=True))
