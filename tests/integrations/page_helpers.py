"""Helpers shared by the delivery page tests (overview, deliveries, delivery, test send,
resend, signature check, receiver guide); their fixtures are in conftest.py."""

from __future__ import annotations

import re
from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from integrations.catalogue import EventType
from integrations.events import event_publish
from integrations.models import (
    Attempt,
    Delivery,
    DeliveryState,
    Destination,
)
from integrations.services import destination_create
from tests.integrations.engine_helpers import SECRET

HEADER_VALUE = "header-value-Qm42-never-shown"
ROLES = ["admin", "operator", "auditor"]
READ_ONLY_ROLES = ["operator", "auditor"]
XSS_RESPONSE = "<script>alert(1)</script>"
XSS_PAYLOAD = "<img src=x onerror=alert(1)>"


def publish(tenant, n: int = 1, **payload) -> list:
    return [
        event_publish(
            tenant=tenant,
            event_type=EventType.DETECTION_ALERT,
            severity="high",
            payload={"n": i, **payload},
        ).event
        for i in range(n)
    ]


def other_destination(tenant, name: str = "Other hook", **data) -> Destination:
    """A destination that is never sent to (no DNS lookup: the service skips the form)."""
    values = {
        "name": name,
        "endpoint_url": "https://hooks.example.com/other",
        "event_types": [EventType.AUDIT_LOG],
        "secret": SECRET,
        **data,
    }
    return destination_create(tenant=tenant, actor=None, data=values)[0]


def add_delivery(destination, state=DeliveryState.DELIVERED, **fields) -> Delivery:
    values = {
        "tenant_id": destination.tenant_id,
        "destination": destination,
        "state": state,
        "event_count": 1,
        "attempt_count": 1,
        "attempt_limit": 10,
        **fields,
    }
    if state in (DeliveryState.DELIVERED, DeliveryState.FAILED):
        values.setdefault("finished_at", timezone.now())
    return Delivery.objects.create(**values)


def add_attempt(delivery, *, ok=True, duration_ms=100, started_at=None, number=1, **fields):
    fields.setdefault("destination_id", None if delivery.is_test else delivery.destination_id)
    return Attempt.objects.create(
        delivery=delivery,
        number=number,
        delivery_uuid="00000000-0000-4000-8000-000000000001",
        started_at=started_at or timezone.now() - timedelta(minutes=5),
        duration_ms=duration_ms,
        status_code=200 if ok else 500,
        error_kind="" if ok else "http",
        ok=ok,
        **fields,
    )


def page(client, name: str, **kwargs):
    return client.get(reverse(f"integrations:{name}", kwargs=kwargs))


def detail_url(destination, **query) -> str:
    url = reverse("integrations:destination_detail", kwargs={"destination_id": destination.pk})
    if query:
        url += "?" + "&".join(f"{key}={value}" for key, value in query.items())
    return url


def action_url(name: str, obj) -> str:
    kwarg = {"destination": "destination_id", "delivery": "delivery_id"}[obj._meta.model_name]
    return reverse(f"integrations:{name}", kwargs={kwarg: obj.pk})


def main_html(response) -> str:
    html = response.content.decode()
    match = re.search(r'<main class="content">(.*)</main>', html, re.S)
    assert match, html[:500]
    return match.group(1)


def section(html: str, section_id: str) -> str:
    match = re.search(rf'<section class="card" id="{section_id}".*?</section>', html, re.S)
    assert match, f"no section #{section_id}"
    return match.group(0)


def health_cards(html: str) -> dict[str, str]:
    """Health card HTML by destination name."""
    cards = re.findall(r'<article class="health-card".*?</article>', html, re.S)
    return {re.search(r">Delivery to (.*?)</h3>", card).group(1): card for card in cards}


def delivery_rows(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr id="delivery-(\d+)">', html)]


def queued_test(destination) -> Delivery:
    return Delivery.objects.get(destination=destination, is_test=True)


def check(client, destination, body: str, signature: str, **extra):
    return client.post(
        action_url("destination_verify_signature", destination),
        {"body": body, "signature": signature},
        **extra,
    )


def result_of(response) -> str:
    html = response.content.decode()
    match = re.search(r'<div class="result[^"]*" role="status">(.*?)</div>', html, re.S)
    assert match, html[-2000:]
    return " ".join(match.group(1).split())
