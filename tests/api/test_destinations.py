"""Destinations through the API: walkthrough table 1, the JSON names, partial updates, secrets
shown once, and bad input answered with 400 in one shape (never a 500)."""

from __future__ import annotations

import pytest

from audit.models import AuditEntry
from integrations.catalogue import EventType
from integrations.models import Destination
from integrations.url_safety import SSRF_ERROR
from tests.api import (
    API,
    GIVEN_SECRET,
    HEADER_VALUE,
    api_client,
    make_destination,
)
from tests.factories import TenantFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fake_sender")]


DESTINATIONS = f"{API}/integrations/destinations"
DESTINATION_FIELDS = {
    "id",
    "name",
    "endpoint_url",
    "provider",
    "splunk_index",
    "batching",
    "event_types",
    "min_severity",
    "include_child_tenants",
    "signature_header",
    "custom_headers",
    "timeout_seconds",
    "skip_tls_verify",
    "active",
    "health",
    "health_label",
    "secret_set_at",
    "created_at",
    "updated_at",
    "signature_scheme",
}


@pytest.fixture
def admin_api(tenant_a):
    return api_client(tenant_a.admin, tenant_a.tenant)


def test_walkthrough_create_then_list_without_the_secret(admin_api, tenant_a):
    response = admin_api.post(
        DESTINATIONS,
        {"name": "Tenant SOC webhook", "endpoint_url": "https://hooks.example.com/x"},
    )
    assert response.status_code == 201, response.content
    created = response.json()
    assert set(created) == DESTINATION_FIELDS | {"secret"}
    assert len(created["secret"]) == 64  # generated: 32 random bytes, hex, shown once
    assert created["event_types"] == list(EventType.values)
    assert created["provider"] == "custom"
    assert created["active"] is True
    assert created["health"] == "no_events"

    listed = admin_api.get(DESTINATIONS)
    assert listed.status_code == 200
    [item] = listed.json()
    assert item["id"] == created["id"]
    assert item["endpoint_url"] == "https://hooks.example.com/x"
    assert "secret" not in item
    assert created["secret"] not in listed.content.decode()
    assert Destination.objects.get(pk=created["id"]).tenant == tenant_a.tenant


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.1/", "http://10.0.0.5/"]
)
def test_walkthrough_ssrf_urls_are_400_and_not_created(admin_api, url):
    response = admin_api.post(DESTINATIONS, {"name": "Sneaky", "endpoint_url": url})
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Validation failed",
        "errors": {"endpoint_url": [SSRF_ERROR]},
    }
    assert not Destination.objects.exists()


def test_ssrf_message_also_when_http_is_allowed(admin_api, settings):
    settings.WEBHOOK_ALLOW_HTTP = True
    response = admin_api.post(
        DESTINATIONS, {"name": "Metadata", "endpoint_url": "http://169.254.169.254/latest/"}
    )
    assert response.json()["errors"]["endpoint_url"] == [SSRF_ERROR]


def test_name_resolving_to_a_private_address_is_refused(admin_api):
    response = admin_api.post(
        DESTINATIONS, {"name": "Internal", "endpoint_url": "https://internal.example.com/hook"}
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {"endpoint_url": [SSRF_ERROR]}


def test_create_with_every_field(admin_api):
    response = admin_api.post(
        DESTINATIONS,
        {
            "name": "Splunk",
            "endpoint_url": "https://hooks.example.com/services/collector",
            "secret": GIVEN_SECRET,
            "provider": "splunk_hec",
            "event_types": ["detection.alert", "audit_log"],
            "min_severity": "high",
            "signature_header": "X-Signature",
            "custom_headers": {"X-Api-Key": HEADER_VALUE},
            "timeout_seconds": 10,
            "skip_tls_verify": True,
            "active": False,
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert "secret" not in body  # given, not generated: never echoed
    assert body["custom_headers"] == {"X-Api-Key": "••••••••"}
    assert body["min_severity"] == "high"
    assert body["event_types"] == ["detection.alert", "audit_log"]
    assert body["health"] == "paused"
    destination = Destination.objects.get(pk=body["id"])
    assert destination.secret() == GIVEN_SECRET
    assert destination.custom_headers() == {"X-Api-Key": HEADER_VALUE}
    assert GIVEN_SECRET not in response.content.decode()
    assert HEADER_VALUE not in response.content.decode()


def test_create_is_audited_without_secrets(admin_api, tenant_a):
    admin_api.post(
        DESTINATIONS,
        {
            "name": "Audited",
            "endpoint_url": "https://hooks.example.com/a",
            "secret": GIVEN_SECRET,
            "custom_headers": {"X-Api-Key": HEADER_VALUE},
        },
    )
    entry = AuditEntry.objects.get(action="destination.created")
    assert entry.actor == tenant_a.admin
    text = str(entry.after)
    assert GIVEN_SECRET not in text and HEADER_VALUE not in text


def test_field_errors_come_from_the_destination_form(admin_api, tenant_a):
    make_destination(tenant_a.tenant, name="Taken")
    response = admin_api.post(
        DESTINATIONS,
        {
            "name": "Taken",
            "endpoint_url": "https://hooks.example.com/x",
            "timeout_seconds": 0,
            "secret": "short",
            "event_types": [],
            "custom_headers": {"Content-Type": "text/plain"},
        },
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == {"name", "timeout_seconds", "secret", "event_types", "custom_headers"}
    assert errors["timeout_seconds"] == ["Use a timeout between 1 and 300 seconds."]
    assert "cannot be a custom header" in errors["custom_headers"][0]


def test_missing_fields_are_named(admin_api):
    response = admin_api.post(DESTINATIONS, {})
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "name": ["This field is required."],
        "endpoint_url": ["This field is required."],
    }


def test_include_child_tenants_needs_child_accounts(admin_api, tenant_a):
    body = {"name": "Rollup", "endpoint_url": "https://hooks.example.com/r"}
    response = admin_api.post(DESTINATIONS, {**body, "include_child_tenants": True})
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["include_child_tenants"]

    TenantFactory(slug="tenant-a-eu", parent=tenant_a.tenant)
    response = admin_api.post(DESTINATIONS, {**body, "include_child_tenants": True})
    assert response.status_code == 201
    assert response.json()["include_child_tenants"] is True


def test_get_one(admin_api, tenant_a):
    destination = make_destination(tenant_a.tenant, custom_headers={"X-Api-Key": HEADER_VALUE})
    response = admin_api.get(f"{DESTINATIONS}/{destination.pk}")
    assert response.status_code == 200
    assert set(response.json()) == DESTINATION_FIELDS
    assert response.json()["custom_headers"] == {"X-Api-Key": "••••••••"}
    assert HEADER_VALUE not in response.content.decode()


def test_patch_changes_only_the_given_fields(admin_api, tenant_a):
    destination = make_destination(
        tenant_a.tenant,
        name="Before",
        min_severity="high",
        timeout_seconds=12,
        custom_headers={"X-Api-Key": HEADER_VALUE},
    )
    secret = destination.secret()
    response = admin_api.patch(f"{DESTINATIONS}/{destination.pk}", {"name": "After"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["name"] == "After"
    assert body["min_severity"] == "high"
    assert body["timeout_seconds"] == 12
    assert body["active"] is True
    destination.refresh_from_db()
    assert destination.secret() == secret
    assert destination.custom_headers() == {"X-Api-Key": HEADER_VALUE}
    entry = AuditEntry.objects.get(action="destination.updated")
    assert entry.before == {"name": "Before"} and entry.after == {"name": "After"}


def test_patch_null_min_severity_forwards_everything(admin_api, tenant_a):
    destination = make_destination(tenant_a.tenant, min_severity="high")
    response = admin_api.patch(f"{DESTINATIONS}/{destination.pk}", {"min_severity": None})
    assert response.json()["min_severity"] is None
    destination.refresh_from_db()
    assert destination.min_severity == ""


def test_patch_custom_headers_keeps_masked_values(admin_api, tenant_a):
    destination = make_destination(tenant_a.tenant, custom_headers={"X-Api-Key": HEADER_VALUE})
    shown = admin_api.get(f"{DESTINATIONS}/{destination.pk}").json()
    response = admin_api.patch(
        f"{DESTINATIONS}/{destination.pk}",
        {"custom_headers": {**shown["custom_headers"], "X-Team": "soc"}},
    )
    assert response.status_code == 200, response.content
    destination.refresh_from_db()
    assert destination.custom_headers() == {"X-Api-Key": HEADER_VALUE, "X-Team": "soc"}


def test_patch_blank_required_field_is_400(admin_api, tenant_a):
    destination = make_destination(tenant_a.tenant, name="Keep me")
    response = admin_api.patch(f"{DESTINATIONS}/{destination.pk}", {"name": "", "endpoint_url": ""})
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"name", "endpoint_url"}
    destination.refresh_from_db()
    assert destination.name == "Keep me"


def test_patch_ssrf_is_400(admin_api, tenant_a):
    destination = make_destination(tenant_a.tenant)
    response = admin_api.patch(
        f"{DESTINATIONS}/{destination.pk}", {"endpoint_url": "http://10.0.0.5/hook"}
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {"endpoint_url": [SSRF_ERROR]}


def test_delete(admin_api, tenant_a):
    destination = make_destination(tenant_a.tenant)
    response = admin_api.delete(f"{DESTINATIONS}/{destination.pk}")
    assert response.status_code == 204
    assert not Destination.objects.filter(pk=destination.pk).exists()
    assert AuditEntry.objects.filter(action="destination.deleted").count() == 1


def test_rotate_secret_generates_and_shows_it_once(admin_api, tenant_a):
    destination = make_destination(tenant_a.tenant, secret=GIVEN_SECRET)
    response = admin_api.post(f"{DESTINATIONS}/{destination.pk}/rotate-secret")
    assert response.status_code == 200, response.content
    generated = response.json()["secret"]
    destination.refresh_from_db()
    assert destination.secret() == generated
    assert destination.previous_secret() == GIVEN_SECRET
    assert generated not in admin_api.get(f"{DESTINATIONS}/{destination.pk}").content.decode()


def test_rotate_secret_with_a_given_secret_and_no_overlap(admin_api, tenant_a):
    destination = make_destination(tenant_a.tenant)
    new_secret = "another-secret-0123456789"
    response = admin_api.post(
        f"{DESTINATIONS}/{destination.pk}/rotate-secret",
        {"secret": new_secret, "overlap_hours": 0},
    )
    assert response.status_code == 200
    assert "secret" not in response.json()
    destination.refresh_from_db()
    assert destination.secret() == new_secret
    assert destination.previous_secret() is None


def test_rotate_secret_validates(admin_api, tenant_a):
    destination = make_destination(tenant_a.tenant)
    response = admin_api.post(
        f"{DESTINATIONS}/{destination.pk}/rotate-secret", {"secret": "short", "overlap_hours": 999}
    )
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"secret", "overlap_hours"}


def test_send_test_reports_the_outcome(admin_api, tenant_a, fake_sender):
    destination = make_destination(tenant_a.tenant)
    fake_sender.status = 401
    fake_sender.body = "bad key"
    response = admin_api.post(f"{DESTINATIONS}/{destination.pk}/test")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is False
    assert body["status_code"] == 401
    assert body["response_excerpt"] == "bad key"
    assert body["explanation"]["title"].startswith("Authentication / Permission denied (HTTP 401)")
    assert len(fake_sender.sent) == 1


# Bad input: always the 400 shape, never a 500 -----------------------------------------------
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": 5, "endpoint_url": "https://hooks.example.com/x"}, "name"),
        ({"name": "A", "endpoint_url": ["x"]}, "endpoint_url"),
        (
            {"name": "A", "endpoint_url": "https://hooks.example.com/x", "timeout_seconds": "x"},
            "timeout_seconds",
        ),
        (
            {"name": "A", "endpoint_url": "https://hooks.example.com/x", "timeout_seconds": 1.5},
            "timeout_seconds",
        ),
        (
            {"name": "A", "endpoint_url": "https://hooks.example.com/x", "provider": "jira"},
            "provider",
        ),
        (
            {"name": "A", "endpoint_url": "https://hooks.example.com/x", "event_types": ["nope"]},
            "event_types",
        ),
        (
            {"name": "A", "endpoint_url": "https://hooks.example.com/x", "custom_headers": []},
            "custom_headers",
        ),
        (
            {
                "name": "A",
                "endpoint_url": "https://hooks.example.com/x",
                "custom_headers": {"X-A": 1},
            },
            "custom_headers",
        ),
        ({"name": "A\u0000B", "endpoint_url": "https://hooks.example.com/x"}, "name"),
        ({"name": "A", "endpoint_url": "https://hooks.example.com/\u0000"}, "endpoint_url"),
        (
            {"name": "A", "endpoint_url": "https://hooks.example.com/x", "secret": "s\u0000" * 10},
            "secret",
        ),
        (
            {
                "name": "A",
                "endpoint_url": "https://hooks.example.com/x",
                "custom_headers": {"X-\u0000": "v"},
            },
            "custom_headers",
        ),
        ({"name": "A" * 100_000, "endpoint_url": "https://hooks.example.com/x"}, "name"),
        (
            {"name": "A", "endpoint_url": "https://hooks.example.com/" + "x" * 100_000},
            "endpoint_url",
        ),
        (
            {"name": "A", "endpoint_url": "https://hooks.example.com/x", "timeout_seconds": 10**40},
            "timeout_seconds",
        ),
    ],
)
def test_bad_values_are_400_with_the_field_named(admin_api, body, field):
    response = admin_api.post(DESTINATIONS, body)
    assert response.status_code == 400, response.content[:300]
    payload = response.json()
    assert payload["detail"] == "Validation failed"
    assert list(payload["errors"]) == [field]
    assert all(isinstance(message, str) for message in payload["errors"][field])
    assert not Destination.objects.exists()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("{not json", "application/json"),
        ("", "application/json"),
        ("[1, 2]", "application/json"),
        ('"text"', "application/json"),
        ("name=A&endpoint_url=https://hooks.example.com/x", "application/x-www-form-urlencoded"),
        ("plain words", "text/plain"),
        (b"\xff\xfe\x00garbage", "application/json"),
    ],
)
def test_unreadable_bodies_are_400(admin_api, body, content_type):
    response = admin_api.post(DESTINATIONS, body, content_type=content_type)
    assert response.status_code == 400, response.content[:300]
    payload = response.json()
    assert set(payload) == {"detail", "errors"}
    assert list(payload["errors"]) == ["body"]


def test_a_null_body_is_an_empty_one(admin_api):
    response = admin_api.post(DESTINATIONS, "null")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"name", "endpoint_url"}


def test_huge_body_is_413(admin_api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = {"name": "A", "endpoint_url": "https://hooks.example.com/x", "pad": "x" * 20_000}
    response = admin_api.post(DESTINATIONS, body)
    assert response.status_code == 413
    assert response.json() == {"detail": "The request body is too large: the limit is 10000 bytes."}


def test_bad_ids_are_400_or_404(admin_api, tenant_a):
    response = admin_api.get(f"{DESTINATIONS}/not-a-uuid")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["destination_id"]
    response = admin_api.get(f"{DESTINATIONS}/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
    assert admin_api.get(f"{API}/integrations/deliveries/99999999999999999999").status_code == 400
    assert admin_api.get(f"{API}/integrations/deliveries/0").status_code == 400


def test_unknown_api_paths_are_json_404(admin_api):
    response = admin_api.get(f"{API}/nothing-here")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
