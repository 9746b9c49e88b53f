"""POST /api/v1/events with {"events": [...]}: all or nothing, idempotent, bounded."""

from __future__ import annotations

import json
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


def event(n: int = 0, **overrides) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "detection.alert",
        "severity": "high",
        "event_time": "2026-11-23T10:00:00Z",
        "event": {"detection": "Impossible travel", "n": n},
        **overrides,
    }


def published() -> list[Event]:
    """Events published by the tests (creating a destination publishes audit_log events)."""
    return list(Event.objects.filter(event_type=EventType.DETECTION_ALERT).order_by("id"))


def test_a_batch_is_201_with_each_event_and_its_status(admin_api, tenant_a):
    destination = make_destination(tenant_a.tenant, event_types=[EventType.DETECTION_ALERT])
    batch = [event(n) for n in range(3)]
    response = admin_api.post(EVENTS, {"events": batch})
    assert response.status_code == 201, response.content
    assert response.json() == {
        "created": 3,
        "duplicates": 0,
        "events": [{"event_id": item["event_id"], "status": "created"} for item in batch],
    }
    stored = published()
    assert [str(e.event_id) for e in stored] == [item["event_id"] for item in batch]
    assert stored[2].payload == {"detection": "Impossible travel", "n": 2}
    assert DeliveryEvent.objects.filter(destination=destination).count() == 3


def test_batches_are_idempotent_within_and_across_batches(admin_api):
    first, second, third = event(1), event(2), event(3)
    response = admin_api.post(EVENTS, {"events": [first, second, first]})
    assert response.status_code == 201
    assert [item["status"] for item in response.json()["events"]] == [
        "created",
        "created",
        "duplicate",
    ]
    again = admin_api.post(EVENTS, {"events": [second, third]})
    assert again.status_code == 201
    assert again.json()["created"] == 1 and again.json()["duplicates"] == 1
    assert again.json()["events"][0] == {"event_id": second["event_id"], "status": "duplicate"}
    replay = admin_api.post(EVENTS, {"events": [first, second, third]})
    assert replay.status_code == 200
    assert replay.json()["created"] == 0 and replay.json()["duplicates"] == 3
    assert len(published()) == 3
    # The single-event body sees the same events.
    assert admin_api.post(EVENTS, first).status_code == 200


def test_items_without_an_event_id_get_one(admin_api):
    response = admin_api.post(EVENTS, {"events": [{"event_type": "audit_log", "event": {}}]})
    assert response.status_code == 201
    uuid.UUID(response.json()["events"][0]["event_id"])


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"event_id": "not-a-uuid"}, "event_id"),
        ({"event_id": 5}, "event_id"),
        ({"event_type": "nope"}, "event_type"),
        ({"event_type": "audit_log\u0000"}, "event_type"),
        ({"severity": "apocalyptic"}, "severity"),
        ({"event_time": "yesterday"}, "event_time"),
        ({"event_time": 10**30}, "event_time"),
        ({"event_time": [1]}, "event_time"),
        ({"event": "text"}, "event"),
        ({"event": {"a": "b\u0000"}}, "event"),
        ({"event": {"a": "\ud800"}}, "event"),
        ({"event": {"big": "x" * 300_000}}, "event"),
    ],
)
def test_a_bad_item_is_named_and_nothing_is_stored(admin_api, tenant_a, overrides, field):
    make_destination(tenant_a.tenant)
    before = DeliveryEvent.objects.count()
    response = admin_api.post(EVENTS, {"events": [event(0), event(1), event(2, **overrides)]})
    assert response.status_code == 400, response.content[:300]
    assert response.json()["detail"] == "Validation failed"
    assert list(response.json()["errors"]) == [f"events[2].{field}"]
    assert published() == []
    assert DeliveryEvent.objects.count() == before


def test_missing_fields_and_non_objects_are_named(admin_api):
    batch = [event(0), {}, "text", event(3), {"event_type": "nope", "event": []}]
    response = admin_api.post(EVENTS, {"events": batch})
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert list(errors) == [
        "events[1].event",
        "events[1].event_type",
        "events[2]",
        "events[4].event",
        "events[4].event_type",
    ]
    assert errors["events[1].event_type"] == ["This field is required."]
    assert errors["events[2]"] == ["Each event must be a JSON object."]
    assert published() == []


def test_type_errors_and_rule_errors_are_reported_together(admin_api):
    batch = [event(0, severity="nope"), event(1, event_time="yesterday")]
    response = admin_api.post(EVENTS, {"events": batch})
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["events[0].severity", "events[1].event_time"]


def test_errors_are_in_item_order(admin_api):
    batch = [event(n, event_type="nope" if n in (2, 10) else "audit_log") for n in range(12)]
    response = admin_api.post(EVENTS, {"events": batch})
    assert list(response.json()["errors"]) == ["events[2].event_type", "events[10].event_type"]


@pytest.mark.parametrize("body", [{"events": []}, {"events": "x"}, {"events": {"a": 1}}])
def test_events_must_be_a_non_empty_list(admin_api, body):
    response = admin_api.post(EVENTS, body)
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["events"]


def test_more_events_than_the_limit_is_400(admin_api, settings):
    settings.EVENTS_BATCH_MAX_COUNT = 5
    response = admin_api.post(EVENTS, {"events": [event(n) for n in range(6)]})
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "events": ["A batch holds at most 5 events; this one has 6."]
    }
    assert published() == []
    assert admin_api.post(EVENTS, {"events": [event(n) for n in range(5)]}).status_code == 201


def test_a_body_over_the_byte_limit_is_413(admin_api, settings):
    settings.EVENTS_BATCH_MAX_BYTES = 2_000
    batch = [event(n) for n in range(20)]
    assert len(json.dumps({"events": batch})) > 2_000
    response = admin_api.post(EVENTS, {"events": batch})
    assert response.status_code == 413
    assert response.json() == {"detail": "The request body is too large: the limit is 2000 bytes."}
    assert published() == []


def test_a_full_batch_of_the_default_limit_is_accepted(admin_api, settings):
    assert settings.EVENTS_BATCH_MAX_COUNT == 1000
    response = admin_api.post(EVENTS, {"events": [event(n) for n in range(1000)]})
    assert response.status_code == 201
    assert response.json()["created"] == 1000


@pytest.mark.parametrize("role", ["operator", "auditor"])
def test_only_admins_publish_batches(tenant_a, role):
    client = api_client(tenant_a.user(role), tenant_a.tenant)
    response = client.post(EVENTS, {"events": [event()]})
    assert response.status_code == 403
    assert published() == []


def test_a_batch_publishes_into_the_tokens_tenant_only(admin_api, tenant_a, tenant_b):
    outsider = make_destination(tenant_b.tenant, event_types=[EventType.DETECTION_ALERT])
    assert admin_api.post(EVENTS, {"events": [event()]}).status_code == 201
    assert {e.tenant_id for e in published()} == {tenant_a.tenant.pk}
    assert not DeliveryEvent.objects.filter(destination=outsider).exists()


def test_the_openapi_document_shows_both_bodies(client):
    schema = client.get("/api/openapi.json").json()
    body = schema["paths"][f"{API}/events"]["post"]["requestBody"]["content"]["application/json"]
    refs = [branch["$ref"].rsplit("/", 1)[-1] for branch in body["schema"]["oneOf"]]
    assert refs == ["EventIn", "EventBatchIn"]
    events = schema["components"]["schemas"]["EventBatchIn"]["properties"]["events"]
    assert events["minItems"] == 1 and events["maxItems"] == 1000
    assert events["items"]["required"] == ["event_type", "event"]


def test_the_documented_examples_are_accepted(admin_api, client):
    schema = client.get("/api/openapi.json").json()
    body = schema["paths"][f"{API}/events"]["post"]["requestBody"]["content"]["application/json"]
    assert set(body["examples"]) == {"one", "batch"}
    batch = body["examples"]["batch"]["value"]
    response = admin_api.post(EVENTS, batch)
    assert response.status_code == 201, response.content
    assert response.json()["created"] == len(batch["events"]) == 2
    assert admin_api.post(EVENTS, body["examples"]["one"]["value"]).status_code == 201


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_numbers_that_json_cannot_store_are_400(admin_api, number):
    item = json.dumps(event(0))[:-1] + f', "extra": 1, "event": {{"score": {number}}}}}'
    single = admin_api.post(EVENTS, item)
    assert single.status_code == 400, single.content
    assert list(single.json()["errors"]) == ["event"]
    batch = admin_api.post(EVENTS, '{"events": [' + json.dumps(event(1)) + ", " + item + "]}")
    assert batch.status_code == 400
    assert list(batch.json()["errors"]) == ["events[1].event"]
    assert published() == []
