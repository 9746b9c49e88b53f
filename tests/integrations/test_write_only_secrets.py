"""Issue 13 §2: secrets stay write-only. A new endpoint origin does not inherit the stored
header values or the Splunk token; echoed secrets are stored masked; query strings of endpoint
URLs are masked for operators and auditors, in audit entries and in `audit_log` events."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from integrations.catalogue import EventType
from integrations.delivery import drain
from integrations.events import event_publish
from integrations.models import Attempt, Destination, Event
from integrations.redaction import mask_echoed_secrets, mask_query
from integrations.services import destination_create, destination_send_test
from tests.api import API, api_client
from tests.integrations.engine_helpers import SECRET, allow_receiver, make_destination

pytestmark = pytest.mark.django_db

HEADER_VALUE = "hdr-value-9f8e7d6c5b4a"
SPLUNK_TOKEN = "splunk-token-0123456789abcdef"
KEYED_URL = "https://hooks.example.com/in?key=api-key-in-query-77&region=eu"


def _destination(tenant, **data) -> Destination:
    values = {
        "name": "hook",
        "endpoint_url": "https://hooks.example.com/in",
        "event_types": list(EventType.values),
        "secret": SPLUNK_TOKEN,
        "custom_headers": {"X-Api-Key": HEADER_VALUE},
        **data,
    }
    return destination_create(tenant=tenant, actor=None, data=values)[0]


def _edit(client, destination, **overrides):
    data = {
        "name": destination.name,
        "endpoint_url": destination.endpoint_url,
        "provider": destination.provider,
        "event_types": list(destination.event_types),
        "signature_header": destination.signature_header,
        "timeout_seconds": "30",
        "active": "on",
        "header_name": list(destination.custom_header_names),
        "header_value": [""] * len(destination.custom_header_names),
        **overrides,
    }
    url = reverse("integrations:destination_edit", kwargs={"destination_id": destination.pk})
    return client.post(url, data, follow=True)


# Origin changes -----------------------------------------------------------------------------
def test_a_new_host_in_the_portal_clears_header_values_not_entered_again(
    no_network, tenant_a, client_for
):
    destination = _destination(tenant_a.tenant)
    response = _edit(
        client_for(tenant_a.admin), destination, endpoint_url="https://other.example.com/in"
    )
    assert response.status_code == 200
    assert "custom header values not entered again in this change were cleared" in response.text
    destination.refresh_from_db()
    assert destination.custom_headers() == {}


def test_a_new_host_keeps_header_values_entered_again(no_network, tenant_a, client_for):
    destination = _destination(tenant_a.tenant)
    _edit(
        client_for(tenant_a.admin),
        destination,
        endpoint_url="https://other.example.com/in",
        header_value=["new-value-for-new-host"],
    )
    destination.refresh_from_db()
    assert destination.custom_headers() == {"X-Api-Key": "new-value-for-new-host"}


def test_the_same_origin_keeps_stored_header_values(no_network, tenant_a, client_for):
    destination = _destination(tenant_a.tenant)
    _edit(client_for(tenant_a.admin), destination, endpoint_url="https://hooks.example.com/v2")
    destination.refresh_from_db()
    assert destination.custom_headers() == {"X-Api-Key": HEADER_VALUE}


def test_the_edit_form_says_what_an_origin_change_clears(no_network, tenant_a, client_for):
    destination = _destination(tenant_a.tenant)
    url = reverse("integrations:destination_edit", kwargs={"destination_id": destination.pk})
    html = client_for(tenant_a.admin).get(url).text
    assert "Changing the scheme, host or port clears the custom header values" in html


@pytest.mark.parametrize(
    "new_url", ["https://other.example.com/in", "https://hooks.example.com:8443/in"]
)
def test_a_new_origin_in_the_api_clears_headers_and_the_splunk_token(no_network, tenant_a, new_url):
    destination = _destination(tenant_a.tenant, provider="splunk_hec")
    api = api_client(tenant_a.admin, tenant_a.tenant)
    response = api.patch(
        f"{API}/integrations/destinations/{destination.pk}", {"endpoint_url": new_url}
    )
    assert response.status_code == 200, response.content
    destination.refresh_from_db()
    assert destination.custom_headers() == {}
    assert destination.secret() != SPLUNK_TOKEN
    assert "secret" not in response.json()


def test_the_api_keeps_a_splunk_token_entered_again(no_network, tenant_a):
    destination = _destination(tenant_a.tenant, provider="splunk_hec")
    api = api_client(tenant_a.admin, tenant_a.tenant)
    api.patch(
        f"{API}/integrations/destinations/{destination.pk}",
        {"endpoint_url": "https://other.example.com/in", "secret": "the-new-hec-token-1234"},
    )
    destination.refresh_from_db()
    assert destination.secret() == "the-new-hec-token-1234"


# Echoed secrets -----------------------------------------------------------------------------
def test_mask_echoed_secrets_masks_plain_and_json_escaped_values():
    text = 'got {"X-Api-Key": "a\\"b-secret"} and a"b-secret; short 1 kept'
    masked = mask_echoed_secrets(text, ['a"b-secret', "1"])
    assert 'a"b-secret' not in masked and 'a\\"b-secret' not in masked
    assert "short 1 kept" in masked


def test_a_response_echoing_secrets_is_stored_masked(tenant_a, receiver, settings):
    allow_receiver(settings, receiver)
    destination = make_destination(
        tenant_a.tenant, receiver, custom_headers={"X-Api-Key": HEADER_VALUE}
    )
    receiver.script([(400, {}, f"bad request: X-Api-Key={HEADER_VALUE} secret={SECRET}")])
    event_publish(
        tenant=tenant_a.tenant, event_type=EventType.DETECTION_ALERT, severity="high", payload={}
    )
    drain.deliver_one(destination.pk)
    receiver.script([(401, {}, f"echo {HEADER_VALUE}")])
    result = destination_send_test(destination=destination, actor=tenant_a.admin)
    assert HEADER_VALUE not in result.outcome.response_excerpt
    excerpts = list(
        Attempt.objects.filter(delivery__destination=destination).values_list(
            "response_excerpt", flat=True
        )
    )
    assert len(excerpts) == 2
    for excerpt in excerpts:
        assert HEADER_VALUE not in excerpt and SECRET not in excerpt
        assert "••••••••" in excerpt


# Query strings ------------------------------------------------------------------------------
def test_mask_query_keeps_names_and_masks_values():
    assert mask_query(KEYED_URL) == "https://hooks.example.com/in?key=••••&region=••••"
    assert mask_query("https://h.example.com/p") == "https://h.example.com/p"


@pytest.mark.parametrize("role", ["operator", "auditor", "admin"])
def test_pages_mask_the_query_and_only_the_edit_form_shows_it(
    role, no_network, tenant_a, client_for
):
    destination = _destination(tenant_a.tenant, endpoint_url=KEYED_URL)
    client = client_for(tenant_a.user(role))
    for url in (
        reverse("integrations:index"),
        reverse("integrations:destination_detail", kwargs={"destination_id": destination.pk}),
        reverse("audit:index"),
    ):
        html = client.get(url).text
        assert "api-key-in-query-77" not in html, url
    if role == "admin":
        edit = reverse("integrations:destination_edit", kwargs={"destination_id": destination.pk})
        assert "api-key-in-query-77" in client.get(edit).text


def test_the_api_masks_the_query_for_roles_that_cannot_edit(no_network, tenant_a):
    destination = _destination(tenant_a.tenant, endpoint_url=KEYED_URL)
    path = f"{API}/integrations/destinations/{destination.pk}"
    shown = api_client(tenant_a.operator, tenant_a.tenant).get(path).json()["endpoint_url"]
    assert shown == "https://hooks.example.com/in?key=••••&region=••••"
    listed = api_client(tenant_a.auditor, tenant_a.tenant).get(f"{API}/integrations/destinations")
    assert "api-key-in-query-77" not in listed.text
    assert api_client(tenant_a.admin, tenant_a.tenant).get(path).json()["endpoint_url"] == KEYED_URL


def test_audit_entries_and_audit_log_events_mask_the_query(no_network, tenant_a, client_for):
    destination = _destination(tenant_a.tenant, endpoint_url=KEYED_URL)
    _edit(
        client_for(tenant_a.admin),
        destination,
        endpoint_url="https://hooks.example.com/in?key=rotated-key-88&region=eu",
        header_value=[HEADER_VALUE],
    )
    entries = AuditEntry.objects.filter(tenant=tenant_a.tenant, action__startswith="destination.")
    text = " ".join(str((e.before, e.after)) for e in entries)
    assert "api-key-in-query-77" not in text and "rotated-key-88" not in text
    updated = entries.get(action="destination.updated")
    assert updated.after["endpoint_query"] == "changed"
    payloads = " ".join(
        str(p) for p in Event.objects.filter(tenant=tenant_a.tenant).values_list("payload")
    )
    assert "destination.updated" in payloads
    assert "api-key-in-query-77" not in payloads and "rotated-key-88" not in payloads
