"""POST /api/v1/events (idempotent by event_id) and the event catalogue."""

from __future__ import annotations

import uuid

import pytest

from integrations.catalogue import EventType
from integrations.models import DeliveryEvent, Event
from tests.api import API, api_client, make_destination

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_network")]


EVENTS = f"{API}/events"


@pytest.fixture
def admin_api(tenant_a):
    return api_client(tenant_a.admin, tenant_a.tenant)


def event(**overrides) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "detection.alert",
        "severity": "high",
        "event_time": "2026-11-23T10:00:00Z",
        "event": {"detection": "Impossible travel", "match_count": 3},
        **overrides,
    }


def test_publish_is_201_then_200_with_the_same_event(admin_api, tenant_a):
    destination = make_destination(tenant_a.tenant)
    body = event()
    first = admin_api.post(EVENTS, body)
    assert first.status_code == 201, first.content
    assert first.json() == {
        "event_id": body["event_id"],
        "event_type": "detection.alert",
        "severity": "high",
        "event_time": "2026-11-23T10:00:00Z",
        "event": {"detection": "Impossible travel", "match_count": 3},
    }
    again = admin_api.post(EVENTS, {**body, "event": {"different": True}})
    assert again.status_code == 200
    assert again.json() == first.json()
    assert Event.objects.filter(tenant=tenant_a.tenant, event_id=body["event_id"]).count() == 1
    queued = DeliveryEvent.objects.filter(destination=destination, event__event_id=body["event_id"])
    assert queued.count() == 1


def test_event_id_and_time_are_optional(admin_api):
    response = admin_api.post(EVENTS, {"event_type": "audit_log", "event": {}})
    assert response.status_code == 201
    body = response.json()
    assert uuid.UUID(body["event_id"])
    assert body["severity"] == "info"


def test_unix_milliseconds(admin_api):
    response = admin_api.post(EVENTS, event(event_time=1795428000123))
    assert response.status_code == 201
    assert response.json()["event_time"] == "2026-11-23T10:00:00.123Z"


def test_same_event_id_in_another_tenant_is_another_event(admin_api, tenant_b):
    body = event()
    assert admin_api.post(EVENTS, body).status_code == 201
    other = api_client(tenant_b.admin, tenant_b.tenant)
    assert other.post(EVENTS, body).status_code == 201


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"event_id": "not-a-uuid"}, "event_id"),
        ({"event_type": "nope"}, "event_type"),
        ({"severity": "apocalyptic"}, "severity"),
        ({"event_time": "yesterday"}, "event_time"),
        ({"event_time": 10**30}, "event_time"),
        ({"event_time": [1]}, "event_time"),
        ({"event": "text"}, "event"),
        ({"event": [1, 2]}, "event"),
        ({"event": {"a": "b\u0000"}}, "event"),
        ({"event": {"k\u0000": 1}}, "event"),
        ({"event_type": "audit_log\u0000"}, "event_type"),
        ({"event": {"big": "x" * 300_000}}, "event"),
        ({"event_id": 5}, "event_id"),
    ],
)
def test_bad_events_are_400(admin_api, overrides, field):
    response = admin_api.post(EVENTS, event(**overrides))
    assert response.status_code == 400, response.content[:300]
    assert response.json()["detail"] == "Validation failed"
    assert list(response.json()["errors"]) == [field]
    assert not Event.objects.exclude(event_type="audit_log").exists()


def test_missing_fields_are_400(admin_api):
    response = admin_api.post(EVENTS, {})
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"event_type", "event"}


def test_malformed_json_is_400(admin_api):
    response = admin_api.post(EVENTS, '{"event_type": ')
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["body"]


@pytest.mark.parametrize("role", ["operator", "auditor"])
def test_event_types_for_every_role(tenant_a, role):
    response = api_client(tenant_a.user(role), tenant_a.tenant).get(f"{API}/event-types")
    assert response.status_code == 200
    catalogue = response.json()
    assert [item["event_type"] for item in catalogue] == list(EventType.values)
    alert = next(item for item in catalogue if item["event_type"] == "detection.alert")
    assert alert["label"] == "Detection alerts"
    assert alert["description"]
    assert alert["example_payload"]["detection"] == "Impossible travel sign-in"
