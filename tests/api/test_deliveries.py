"""Deliveries through the API: filters, cursor pagination, attempts and resend."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from integrations.models import Delivery, DeliveryState
from tests.api import API, api_client, make_delivery, make_destination

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_network")]


@pytest.fixture
def destination(tenant_a):
    return make_destination(tenant_a.tenant, custom_headers={"X-Api-Key": "very-secret-key-1"})


@pytest.fixture
def operator_api(tenant_a):
    return api_client(tenant_a.operator, tenant_a.tenant)


def deliveries_url(destination) -> str:
    return f"{API}/integrations/destinations/{destination.pk}/deliveries"


def test_list_newest_first_with_cursor_pagination(operator_api, destination):
    made = [make_delivery(destination, state=DeliveryState.DELIVERED) for _ in range(5)]
    first = operator_api.get(deliveries_url(destination), {"limit": 2}).json()
    assert [item["id"] for item in first["items"]] == [made[4].pk, made[3].pk]
    second = operator_api.get(
        deliveries_url(destination), {"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert [item["id"] for item in second["items"]] == [made[2].pk, made[1].pk]
    third = operator_api.get(
        deliveries_url(destination), {"limit": 2, "cursor": second["next_cursor"]}
    ).json()
    assert [item["id"] for item in third["items"]] == [made[0].pk]
    assert third["next_cursor"] is None


def test_filter_by_state_and_time(operator_api, destination):
    failed = make_delivery(destination, state=DeliveryState.FAILED)
    make_delivery(destination, state=DeliveryState.DELIVERED)
    old = make_delivery(destination, state=DeliveryState.FAILED)
    Delivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))

    items = operator_api.get(deliveries_url(destination), {"state": "failed"}).json()["items"]
    assert [item["id"] for item in items] == [old.pk, failed.pk]

    since = (timezone.now() - timedelta(days=1)).isoformat()
    items = operator_api.get(
        deliveries_url(destination), {"state": "failed", "since": since}
    ).json()["items"]
    assert [item["id"] for item in items] == [failed.pk]

    until = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")  # no offset: UTC
    items = operator_api.get(deliveries_url(destination), {"until": until}).json()["items"]
    assert [item["id"] for item in items] == [old.pk]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "exploded"}, "state"),
        ({"since": "last tuesday"}, "since"),
        ({"limit": 0}, "limit"),
        ({"limit": 100000}, "limit"),
        ({"cursor": "garbage!!"}, "cursor"),
        ({"cursor": "aWQ6LTE"}, "cursor"),
        ({"cursor": "x\u0000"}, "cursor"),
    ],
)
def test_bad_filters_are_400(operator_api, destination, params, field):
    response = operator_api.get(deliveries_url(destination), params)
    assert response.status_code == 400
    assert list(response.json()["errors"]) == [field]


def test_delivery_with_attempts(operator_api, destination):
    delivery = make_delivery(destination, attempts=2)
    response = operator_api.get(f"{API}/integrations/deliveries/{delivery.pk}")
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "failed"
    assert body["destination_id"] == str(destination.pk)
    assert [a["number"] for a in body["attempts"]] == [1, 2]
    attempt = body["attempts"][0]
    assert set(attempt) >= {
        "delivery_uuid",
        "started_at",
        "duration_ms",
        "status_code",
        "error_kind",
        "response_excerpt",
        "request_headers",
        "explanation",
    }
    assert attempt["status_code"] == 500
    assert attempt["request_headers"]["X-Api-Key"] == "••••••••"
    assert attempt["explanation"]["title"].startswith("500")
    assert "very-secret-key-1" not in response.content.decode()


def test_resend_a_failed_delivery(tenant_a, destination):
    delivery = make_delivery(destination, state=DeliveryState.FAILED)
    admin_api = api_client(tenant_a.admin, tenant_a.tenant)
    response = admin_api.post(f"{API}/integrations/deliveries/{delivery.pk}/resend")
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "pending"
    assert AuditEntry.objects.filter(action="delivery.resend").count() == 1


def test_resend_of_a_delivered_delivery_is_409(tenant_a, destination):
    delivery = make_delivery(destination, state=DeliveryState.DELIVERED)
    admin_api = api_client(tenant_a.admin, tenant_a.tenant)
    response = admin_api.post(f"{API}/integrations/deliveries/{delivery.pk}/resend")
    assert response.status_code == 409
    assert response.json() == {"detail": "Only failed deliveries can be resent."}
