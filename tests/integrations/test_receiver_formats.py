"""What receivers get: Splunk HEC as Splunk documents it, one event per request, and health
that names the problem. Pure helpers and the portal/API pages around them."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from integrations import verification
from integrations.delivery.signing import event_envelope, prepare, serialize_body, sign
from integrations.explain import explain
from integrations.forms import DestinationForm, RotateSecretForm
from integrations.models import Batching, Destination, Health, Provider
from integrations.services import destination_create, destination_rotate_secret
from tests.api import API, api_client
from tests.integrations.engine_helpers import SECRET

pytestmark = pytest.mark.django_db

HEC_TOKEN = "6a3b1f0e-8c2d-4e5f-9a7b-1c2d3e4f5a6b"
WHEN = datetime(2026, 11, 23, 10, 0, 0, 250000, tzinfo=UTC)


@pytest.fixture(autouse=True)
def loopback(settings):
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOWED_PRIVATE_TARGETS = ["127.0.0.1:9"]
    settings.WEBHOOK_ENQUEUE = False


def envelope(n: int = 1) -> dict:
    return event_envelope(
        event_id=f"00000000-0000-0000-0000-00000000000{n}",
        event_type="detection.alert",
        event_time=WHEN,
        severity="high",
        tenant_slug="acme",
        payload={"detection": f"d{n}"},
    )


def destination(tenant, **data) -> Destination:
    values = {
        "name": f"hook {Destination.objects.count()}",
        "endpoint_url": "http://127.0.0.1:9/services/collector/event",
        "event_types": ["detection.alert"],
        "secret": SECRET,
        **data,
    }
    created, _ = destination_create(tenant=tenant, actor=None, data=values)
    return created


def form(tenant, instance=None, headers=None, **data) -> DestinationForm:
    values = {
        "name": "Splunk",
        "endpoint_url": "http://127.0.0.1:9/services/collector/event",
        "provider": "splunk_hec",
        "event_types": ["detection.alert"],
        "signature_header": "X-OneProtect-Signature",
        "timeout_seconds": "30",
        "batching": "batched",
        **data,
    }
    return DestinationForm(values, tenant=tenant, instance=instance, custom_headers=headers)


# Bodies -----------------------------------------------------------------------------------------
def test_batched_body_is_the_events_array(tenant_a):
    hook = destination(tenant_a.tenant)
    body = serialize_body(hook, [envelope(1), envelope(2)])
    assert json.loads(body) == {"events": [envelope(1), envelope(2)]}
    assert hook.max_batch_events() == 100


def test_one_event_per_request_body_is_the_event_object(tenant_a, settings):
    hook = destination(tenant_a.tenant, batching=Batching.SINGLE)
    body = serialize_body(hook, [envelope()])
    assert json.loads(body) == envelope()
    assert hook.max_batch_events() == 1  # what the engine puts in one batch
    with pytest.raises(ValueError):
        serialize_body(hook, [envelope(1), envelope(2)])
    settings.WEBHOOK_BATCH_SIZE = 7
    assert destination(tenant_a.tenant).max_batch_events() == 7


def test_splunk_body_follows_the_hec_event_format(tenant_a):
    splunk = destination(tenant_a.tenant, provider=Provider.SPLUNK_HEC, splunk_index="security")
    lines = serialize_body(splunk, [envelope(1), envelope(2)]).decode().split("\n")
    events = [json.loads(line) for line in lines]
    assert events[0] == {
        "time": WHEN.timestamp(),
        "host": "oneprotect",
        "source": "oneprotect",
        "sourcetype": "oneprotect:detection.alert",
        "index": "security",
        "event": envelope(1),
    }
    assert events[1]["event"] == envelope(2)


def test_splunk_without_an_index_leaves_it_to_the_token(tenant_a):
    splunk = destination(tenant_a.tenant, provider=Provider.SPLUNK_HEC, batching="single")
    event = json.loads(serialize_body(splunk, [envelope()]))
    assert "index" not in event and event["event"] == envelope()


def test_splunk_authorization_is_the_hec_token_whatever_is_stored(tenant_a):
    splunk = destination(
        tenant_a.tenant,
        provider=Provider.SPLUNK_HEC,
        secret=HEC_TOKEN,
        custom_headers={"Authorization": "Bearer stored-before-the-rule", "X-Team": "soc"},
    )
    prepared = prepare(splunk, b"{}")
    assert prepared.headers["Authorization"] == f"Splunk {HEC_TOKEN}"
    assert prepared.headers["X-Team"] == "soc"
    assert prepared.shown_headers["Authorization"] == "Splunk ••••••••"


# The form ---------------------------------------------------------------------------------------
def test_splunk_requires_the_hec_token(tenant_a):
    empty = form(tenant_a.tenant, hec_token="")
    assert not empty.is_valid()
    assert empty.errors["hec_token"] == [
        "Enter the HEC token of your Splunk HTTP Event Collector input."
    ]
    given = form(tenant_a.tenant, hec_token=HEC_TOKEN, splunk_index="main")
    assert given.is_valid(), given.errors
    assert given.cleaned_data["secret"] == HEC_TOKEN  # never a generated random token
    assert given.cleaned_data["splunk_index"] == "main"


def test_editing_a_splunk_destination_keeps_its_token_when_left_blank(tenant_a):
    splunk = destination(tenant_a.tenant, provider=Provider.SPLUNK_HEC, secret=HEC_TOKEN)
    edit = form(tenant_a.tenant, instance=splunk, name=splunk.name, hec_token="")
    assert edit.is_valid(), edit.errors
    assert edit.cleaned_data["secret"] == ""  # blank keeps the stored token
    custom = destination(tenant_a.tenant)
    switch = form(tenant_a.tenant, instance=custom, name=custom.name, hec_token="")
    assert "hec_token" in switch.errors  # becoming Splunk needs the token


@pytest.mark.parametrize("name", ["Authorization", "authorization"])
def test_no_custom_header_replaces_authorization_on_splunk(name, tenant_a):
    splunk = form(tenant_a.tenant, hec_token=HEC_TOKEN, headers={name: "Bearer x"})
    assert not splunk.is_valid()
    assert "Authorization carries the HEC token" in splunk.errors["__all__"][0]
    custom = form(
        tenant_a.tenant, provider="custom", hec_token="", headers={name: "Bearer x"}, secret=""
    )
    assert custom.is_valid(), custom.errors  # a custom webhook may use Authorization


@pytest.mark.parametrize("index", ["Main", "_internal", "-x", "has space", "a" * 81])
def test_splunk_index_names_are_checked(index, tenant_a):
    bad = form(tenant_a.tenant, hec_token=HEC_TOKEN, splunk_index=index)
    assert "splunk_index" in bad.errors


def test_a_custom_webhook_keeps_no_splunk_index(tenant_a):
    custom = form(tenant_a.tenant, provider="custom", splunk_index="main")
    assert custom.is_valid(), custom.errors
    assert custom.cleaned_data["splunk_index"] == ""


def test_the_form_shows_the_fields_of_the_chosen_provider_without_javascript(tenant_a, client_for):
    admin = client_for(tenant_a.admin)
    custom = admin.get(reverse("integrations:index")).content.decode()
    splunk = admin.get(reverse("integrations:index") + "?provider=splunk_hec").content.decode()
    splunk_row = re.compile(r'<div class="field-row" data-provider-only="splunk_hec"( hidden)?>')
    assert splunk_row.search(custom).group(1) == " hidden"
    assert splunk_row.search(splunk).group(1) is None
    assert '<option value="splunk_hec" selected>' in splunk
    assert '<label for="id_hec_token">HEC token</label>' in splunk
    assert '<label for="id_splunk_index">Index</label>' in splunk
    assert "/services/collector/event" in splunk
    assert re.search(
        r'data-provider-only="custom" hidden>\s*<div class="field">\s*<label '
        r'for="id_secret">',
        splunk,
    )
    assert "?provider=splunk_hec#create-destination" in custom  # the no-JS links


def test_portal_creates_a_splunk_destination_with_its_token(tenant_a, client_for):
    data = {
        "name": "Splunk",
        "endpoint_url": "http://127.0.0.1:9/services/collector/event",
        "provider": "splunk_hec",
        "hec_token": HEC_TOKEN,
        "splunk_index": "security",
        "event_types": ["detection.alert"],
        "signature_header": "X-OneProtect-Signature",
        "timeout_seconds": "30",
        "batching": "single",
        "active": "on",
    }
    response = client_for(tenant_a.admin).post(reverse("integrations:destination_create"), data)
    assert response.status_code == 302
    splunk = Destination.objects.get()
    assert splunk.secret() == HEC_TOKEN and splunk.splunk_index == "security"
    assert splunk.batching == Batching.SINGLE
    page = client_for(tenant_a.admin).get(response["Location"]).content.decode()
    assert HEC_TOKEN not in page and "secret-once" not in page  # a given token is never shown


# Rotation ---------------------------------------------------------------------------------------
def test_splunk_rotation_replaces_the_token_without_overlap(tenant_a, client_for):
    splunk = destination(tenant_a.tenant, provider=Provider.SPLUNK_HEC, secret=HEC_TOKEN)
    admin = client_for(tenant_a.admin)
    detail = reverse("integrations:destination_detail", kwargs={"destination_id": splunk.pk})
    page = admin.get(detail).content.decode()
    assert "Replace HEC token</h2>" in page and "there is no overlap" in page
    assert 'name="overlap_hours"' not in page
    rotate = reverse("integrations:destination_rotate_secret", kwargs={"destination_id": splunk.pk})
    refused = admin.post(rotate, {"secret": ""})
    assert refused.status_code == 400
    assert "Enter the HEC token of your Splunk HTTP Event Collector input." in (
        refused.content.decode()
    )
    new_token = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    assert admin.post(rotate, {"secret": new_token, "overlap_hours": "24"}).status_code == 302
    splunk.refresh_from_db()
    assert splunk.secret() == new_token and splunk.previous_secret() is None
    assert prepare(splunk, b"{}").headers["Authorization"] == f"Splunk {new_token}"


def test_a_custom_webhook_still_rotates_with_overlap(tenant_a):
    assert "overlap_hours" in RotateSecretForm().fields
    hook = destination(tenant_a.tenant)
    rotated, _ = destination_rotate_secret(destination=hook, actor=None, overlap_hours=2)
    assert rotated.previous_secret() == SECRET


# API --------------------------------------------------------------------------------------------
def test_api_creates_splunk_and_single_destinations(tenant_a):
    api = api_client(tenant_a.admin, tenant_a.tenant)
    url = f"{API}/integrations/destinations"
    base = {"endpoint_url": "http://127.0.0.1:9/services/collector/event"}
    missing = api.post(url, {**base, "name": "s1", "provider": "splunk_hec"})
    assert missing.status_code == 400
    assert missing.json()["errors"]["secret"] == [
        "Enter the HEC token of your Splunk HTTP Event Collector input."
    ]
    created = api.post(
        url,
        {
            **base,
            "name": "s2",
            "provider": "splunk_hec",
            "secret": HEC_TOKEN,
            "splunk_index": "security",
            "batching": "single",
        },
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["batching"] == "single" and body["splunk_index"] == "security"
    assert "secret" not in body  # a given token is never echoed
    patched = api.patch(f"{url}/{body['id']}", {"batching": "batched"})
    assert patched.status_code == 200 and patched.json()["batching"] == "batched"
    bad = api.patch(f"{url}/{body['id']}", {"batching": "sometimes"})
    assert bad.status_code == 400


def test_openapi_documents_batching_and_the_splunk_fields(client):
    schema = client.get("/api/openapi.json").json()
    text = json.dumps(schema)
    assert '"batched"' in text and '"single"' in text
    assert "splunk_index" in text and "/services/collector/event" in text


# Receiver guide and signature checker ------------------------------------------------------------
def test_guide_and_snippets_follow_the_batching(tenant_a, client_for):
    single = destination(tenant_a.tenant, batching=Batching.SINGLE)
    batched = destination(tenant_a.tenant)
    assert 'json.loads(raw_body)["events"]' not in verification.receiver_snippets(single)["python"]
    assert "event = json.loads(raw_body)" in verification.receiver_snippets(single)["python"]
    assert "const event = JSON.parse(req.body);" in verification.receiver_snippets(single)["node"]
    assert 'json.loads(raw_body)["events"]' in verification.receiver_snippets(batched)["python"]
    admin = client_for(tenant_a.admin)
    page = admin.get(
        reverse("integrations:destination_detail", kwargs={"destination_id": single.pk})
    ).content.decode()
    assert "carrying <strong>one event</strong>" in page
    assert "One event per request" in page  # the configuration says so


def test_signature_checker_verifies_one_event_bodies(tenant_a):
    single = destination(tenant_a.tenant, batching=Batching.SINGLE)
    body = serialize_body(single, [envelope()])
    check = verification.check_signature(
        destination=single, body=body.decode(), signature=sign(body, SECRET)
    )
    assert check.ok
    reserialized = json.dumps(json.loads(body), indent=2)
    check = verification.check_signature(
        destination=single, body=reserialized, signature=sign(body, SECRET)
    )
    assert not check.ok and check.cause == verification.CAUSE_RESERIALIZED


# Health -----------------------------------------------------------------------------------------
HEALTH_CASES = [
    (401, Health.AUTH_DENIED, "Authentication / Permission denied"),
    (403, Health.AUTH_DENIED, "Authentication / Permission denied"),
    (404, Health.NOT_FOUND, "Endpoint not found"),
    (410, Health.NOT_FOUND, "Endpoint not found"),
    (400, Health.REJECTED, "Rejected by the receiver (HTTP 400)"),
    (422, Health.REJECTED, "Rejected by the receiver (HTTP 422)"),
    (429, Health.RATE_LIMITED, "Rate limited"),
    (500, Health.FAILING, "Failing"),
]


@pytest.mark.parametrize(("status", "health", "label"), HEALTH_CASES)
def test_health_names_the_problem_with_its_fix(status, health, label, tenant_a):
    hook = destination(tenant_a.tenant)
    hook.last_attempt_at = WHEN
    hook.last_outcome_ok = False
    hook.last_status_code = status
    hook.last_error_kind = "http"
    assert hook.health == health
    assert hook.health_label == label
    explanation = explain(status_code=status, error_kind="http")
    assert explanation.fix
    if health in (Health.AUTH_DENIED, Health.NOT_FOUND, Health.REJECTED):
        assert explanation.title.startswith(label.split(" (")[0])


def test_the_destination_page_shows_the_health_fix(tenant_a, client_for):
    hook = destination(tenant_a.tenant)
    Destination.objects.filter(pk=hook.pk).update(
        last_attempt_at=WHEN, last_outcome_ok=False, last_status_code=404, last_error_kind="http"
    )
    page = client_for(tenant_a.auditor).get(
        reverse("integrations:destination_detail", kwargs={"destination_id": hook.pk})
    )
    html = page.content.decode()
    assert "Endpoint not found</span>" in html
    assert "Endpoint not found (HTTP 404)" in html and "Check the path in the Endpoint URL" in html
    index = client_for(tenant_a.auditor).get(reverse("integrations:index")).content.decode()
    assert "Check the path in the Endpoint URL" in index  # on the health card too
