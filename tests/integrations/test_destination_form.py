"""The destination form: create (with the SSRF and validation errors) and edit."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from integrations.catalogue import EventType
from integrations.models import Destination
from integrations.url_safety import SSRF_ERROR
from tests.integrations.destination_helpers import (
    GIVEN_SECRET,
    HEADER_VALUE,
    ROLES_WITHOUT_MANAGE,
    actions,
    card,
    create,
    create_url,
    destination_entries,
    form_data,
    make_destination,
    url,
)

pytestmark = pytest.mark.usefixtures("no_network")


# Create ----------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_admin_creates_a_destination(tenant_a, client_for):
    response = create(client_for(tenant_a.admin), form_data())
    assert response.status_code == 200
    destination = Destination.objects.get()
    assert destination.tenant == tenant_a.tenant
    assert destination.name == "Tenant SOC webhook"
    assert destination.endpoint_url == "https://hooks.example.com/webhook"
    assert destination.active is True
    assert sorted(destination.event_types) == sorted(EventType.values)
    assert "Destination created." in card(response, "create-destination")
    listed = card(response, "destinations")
    assert f'<a href="{url("destination_detail", destination)}">Tenant SOC webhook</a>' in listed
    assert actions(tenant_a.tenant) == ["destination.created"]


@pytest.mark.django_db
def test_create_saves_every_option(tenant_a, client_for):
    data = form_data(
        secret=GIVEN_SECRET,
        provider="splunk_hec",
        event_types=["detection.alert"],
        min_severity="high",
        signature_header="X-Sig",
        header_name=["X-Api-Key", "X-Team"],
        header_value=[HEADER_VALUE, "soc"],
        timeout_seconds="12",
        rate_limit_per_second="2.5",
        skip_tls_verify="on",
        active="",
    )
    response = create(client_for(tenant_a.admin), data)
    destination = Destination.objects.get()
    assert destination.secret() == GIVEN_SECRET
    assert destination.provider == "splunk_hec"
    assert destination.event_types == ["detection.alert"]
    assert destination.min_severity == "high"
    assert destination.signature_header == "X-Sig"
    assert destination.custom_headers() == {"X-Api-Key": HEADER_VALUE, "X-Team": "soc"}
    assert destination.timeout_seconds == 12
    assert destination.rate_limit_per_second == 2.5
    assert destination.skip_tls_verify is True
    assert destination.active is False
    html = response.content.decode()
    assert GIVEN_SECRET not in html and HEADER_VALUE not in html
    assert "secret-once" not in html


@pytest.mark.django_db
def test_generated_secret_is_shown_once(tenant_a, client_for):
    client = client_for(tenant_a.admin)
    posted = client.post(create_url(), form_data())
    secret = Destination.objects.get().secret()
    assert secret not in posted.content.decode() and secret not in posted["Location"]
    assert secret not in str(dict(client.session))  # kept encrypted until shown
    response = client.get(posted["Location"])
    html = response.content.decode()
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    assert html.count(secret) == 1
    assert f'<code id="generated-secret">{secret}</code>' in html
    assert 'data-copy="generated-secret"' in html
    assert "Copy this secret now. It will not be shown again." in html
    assert "no-store" in response["Cache-Control"]
    assert secret not in response.get("Location", "")
    destination = Destination.objects.get()
    for page in (
        reverse("integrations:index"),
        url("destination_detail", destination),
        url("destination_edit", destination),
    ):
        assert secret not in client.get(page).content.decode()


@pytest.mark.django_db
def test_a_reload_after_create_neither_posts_again_nor_shows_the_secret(tenant_a, client_for):
    client = client_for(tenant_a.admin)
    first = create(client, form_data())
    secret = Destination.objects.get().secret()
    assert secret in first.content.decode()
    reload = client.get(reverse("integrations:index"))
    html = reload.content.decode()
    assert secret not in html and "Destination created." not in html
    assert Destination.objects.count() == 1


@pytest.mark.django_db
def test_create_offers_send_test_event_for_the_new_destination(tenant_a, client_for):
    response = create(client_for(tenant_a.admin), form_data())
    destination = Destination.objects.get()
    created = card(response, "create-destination")
    send = url("destination_send_test", destination)
    assert f'<form method="post" action="{send}" hx-post="{send}"' in created
    assert "Send test event</button>" in created and '<div id="test-result"' in created


@pytest.mark.django_db
def test_the_form_is_blank_again_after_a_create(tenant_a, client_for):
    response = create(client_for(tenant_a.admin), form_data())
    create_card = card(response, "create-destination")
    assert 'name="name" value="Tenant SOC webhook"' not in create_card


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES_WITHOUT_MANAGE)
def test_operator_and_auditor_cannot_create_destination(role, tenant_a, client_for):
    response = client_for(tenant_a.user(role)).post(create_url(), form_data())
    assert response.status_code == 403
    assert not Destination.objects.exists()


@pytest.mark.django_db
def test_create_takes_the_tenant_from_the_session_never_from_the_form(
    tenant_a, tenant_b, client_for
):
    data = form_data(tenant=str(tenant_b.tenant.pk), tenant_id=str(tenant_b.tenant.pk))
    client_for(tenant_a.admin).post(create_url(), data)
    assert Destination.objects.get().tenant == tenant_a.tenant


@pytest.mark.django_db
def test_create_requires_post(tenant_a, client_for):
    assert client_for(tenant_a.admin).get(create_url()).status_code == 405


# The customers' walkthrough (seed 001, step 5) enters these plain-http URLs and expects the SSRF
# message, with production settings (https only) as well as development ones.
WALKTHROUGH_HTTP_URLS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://127.0.0.1:9000/hook",
    "http://10.0.0.5/hook",
    "http://127.0.0.1/",
]
SSRF_URLS = [
    "https://169.254.169.254/latest/meta-data/",
    "https://127.0.0.1:9000/hook",
    "https://10.0.0.5/hook",
    "https://internal.example.com/hook",
    "https://localhost/hook",
    "https://2130706433/hook",
]


SSRF_CASES = [
    *(pytest.param(u, False, id=f"{u}-default") for u in WALKTHROUGH_HTTP_URLS),
    *(pytest.param(u, True, id=f"{u}-dev-settings") for u in WALKTHROUGH_HTTP_URLS),
    *(pytest.param(u, False, id=f"{u}-default") for u in SSRF_URLS),
    *(pytest.param(u, True, id=f"{u}-dev-settings") for u in SSRF_URLS),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint_url", "permissive"), SSRF_CASES)
def test_private_endpoints_are_refused_in_place(
    endpoint_url, permissive, tenant_a, client_for, settings
):
    if permissive:
        settings.WEBHOOK_ALLOW_HTTP = True
        settings.WEBHOOK_ALLOWED_PRIVATE_TARGETS = ["127.0.0.1:8765"]
    response = client_for(tenant_a.admin).post(
        create_url(), form_data(endpoint_url=endpoint_url, secret=GIVEN_SECRET)
    )
    assert response.status_code == 400
    create_card = card(response, "create-destination")
    assert f'<ul class="field-error" id="id_endpoint_url_error"><li>{SSRF_ERROR}</li>' in (
        create_card
    )
    assert "Destination created." not in create_card
    assert not Destination.objects.exists()
    assert not destination_entries(tenant_a.tenant).exists()
    # The typed values are kept, except the secret.
    assert 'value="Tenant SOC webhook"' in create_card
    assert f'value="{endpoint_url}"' in create_card
    assert GIVEN_SECRET not in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint_url", WALKTHROUGH_HTTP_URLS)
def test_walkthrough_urls_are_never_saved_with_default_settings(endpoint_url, tenant_a, client_for):
    response = client_for(tenant_a.admin).post(create_url(), form_data(endpoint_url=endpoint_url))
    assert response.status_code == 400
    assert 'id="id_endpoint_url_error"' in card(response, "create-destination")
    assert not Destination.objects.exists()


@pytest.mark.django_db
def test_plain_http_is_refused_by_default(tenant_a, client_for):
    response = client_for(tenant_a.admin).post(
        create_url(), form_data(endpoint_url="http://hooks.example.com/webhook")
    )
    assert response.status_code == 400
    assert "Use an https:// URL." in card(response, "create-destination")
    assert not Destination.objects.exists()


@pytest.mark.django_db
def test_allowed_private_target_is_accepted_in_development(tenant_a, client_for, settings):
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOWED_PRIVATE_TARGETS = ["127.0.0.1:8765"]
    response = client_for(tenant_a.admin).post(
        create_url(), form_data(endpoint_url="http://127.0.0.1:8765/hook")
    )
    assert response.status_code == 302
    assert Destination.objects.get().endpoint_url == "http://127.0.0.1:8765/hook"


INVALID_FORMS = [
    pytest.param(
        {"header_name": ["Content-Type"], "header_value": ["text/plain"]},
        "Content-Type is set by OneProtect and cannot be a custom header.",
        id="reserved-header",
    ),
    pytest.param(
        {"header_name": ["X-Signature-Copy", "X-OneProtect-Signature"], "header_value": ["a", "b"]},
        "X-OneProtect-Signature is set by OneProtect and cannot be a custom header.",
        id="signature-header-as-custom-header",
    ),
    pytest.param(
        {"header_name": ["X-Api-Key"], "header_value": ["abc\r\nX-Injected: 1"]},
        "The value of X-Api-Key must not contain line breaks.",
        id="crlf-in-value",
    ),
    pytest.param(
        {"header_name": ["Bad Header"], "header_value": ["x"]},
        "is not a valid header name",
        id="header-name-not-a-token",
    ),
    pytest.param(
        {"header_name": ["X-Api-Key"], "header_value": [""]},
        "Give X-Api-Key a value.",
        id="header-without-value",
    ),
    pytest.param(
        {"event_types": []}, "Select at least one event type to forward.", id="no-event-types"
    ),
    pytest.param(
        {"timeout_seconds": "0"}, "Use a timeout between 1 and 300 seconds.", id="timeout-0"
    ),
    pytest.param(
        {"timeout_seconds": "301"}, "Use a timeout between 1 and 300 seconds.", id="timeout-301"
    ),
    pytest.param({"name": ""}, "Give the destination a name", id="no-name"),
    pytest.param(
        {"endpoint_url": ""}, "Enter the https:// URL that should receive events.", id="no-url"
    ),
    pytest.param(
        {"secret": "short"},
        "Use at least 16 characters, or leave blank to generate.",
        id="short-secret",
    ),
    pytest.param(
        {"signature_header": "Bad Header"}, "Use a valid header name", id="bad-signature-header"
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("overrides", "message"), INVALID_FORMS)
def test_invalid_create_shows_errors_in_place(overrides, message, tenant_a, client_for):
    response = client_for(tenant_a.admin).post(create_url(), form_data(**overrides))
    assert response.status_code == 400
    create_card = card(response, "create-destination")
    assert message in create_card.replace("&#x27;", "'")
    assert "Check the fields marked below: nothing was saved." in create_card
    assert not Destination.objects.exists()


@pytest.mark.django_db
def test_errors_in_more_options_open_them(tenant_a, client_for):
    response = client_for(tenant_a.admin).post(create_url(), form_data(timeout_seconds="0"))
    assert '<details class="more" open>' in card(response, "create-destination")
    response = client_for(tenant_a.admin).post(create_url(), form_data(name=""))
    assert '<details class="more">' in card(response, "create-destination")


@pytest.mark.django_db
def test_duplicate_name_is_refused(tenant_a, client_for):
    make_destination(tenant_a, name="Tenant SOC webhook")
    response = client_for(tenant_a.admin).post(create_url(), form_data(name="tenant soc WEBHOOK"))
    assert response.status_code == 400
    assert "A destination with this name already exists. Choose another." in card(
        response, "create-destination"
    )
    assert Destination.objects.count() == 1


@pytest.mark.django_db
def test_the_same_name_is_fine_in_another_tenant(tenant_a, tenant_b, client_for):
    make_destination(tenant_b, name="Tenant SOC webhook")
    response = client_for(tenant_a.admin).post(create_url(), form_data())
    assert response.status_code == 302


@pytest.mark.django_db
def test_invalid_create_keeps_header_names_but_never_echoes_secrets(tenant_a, client_for):
    data = form_data(
        timeout_seconds="0",
        secret=GIVEN_SECRET,
        header_name=["X-Api-Key"],
        header_value=[HEADER_VALUE],
    )
    response = client_for(tenant_a.admin).post(create_url(), data)
    html = response.content.decode()
    assert response.status_code == 400
    assert 'name="header_name" value="X-Api-Key"' in html
    assert HEADER_VALUE not in html and GIVEN_SECRET not in html
    assert "Enter the secret and the custom header values again" in html


# Edit ------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_edit_page_shows_the_form_without_secrets(tenant_a, client_for):
    destination = make_destination(tenant_a)
    response = client_for(tenant_a.admin).get(url("destination_edit", destination))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="name" value="Existing hook"' in html
    assert 'value="https://hooks.example.com/existing"' in html
    assert 'name="header_name" value="X-Api-Key"' in html
    assert 'placeholder="(unchanged)"' in html
    assert re.search(r'<input type="password" name="secret"[^>]*>', html)
    assert GIVEN_SECRET not in html and HEADER_VALUE not in html
    assert "Leave blank to keep the current secret." in html


@pytest.mark.django_db
def test_admin_edits_a_destination_keeping_secret_and_header_values(tenant_a, client_for):
    destination = make_destination(tenant_a)
    client = client_for(tenant_a.admin)
    data = form_data(
        name="Renamed hook",
        endpoint_url="https://hooks.example.com/new",  # same origin: stored values are kept
        header_name=["X-Api-Key", "X-Team"],
        header_value=["", "blue"],
        timeout_seconds="60",
    )
    response = client.post(url("destination_edit", destination), data)
    assert response.status_code == 302
    assert response["Location"] == url("destination_detail", destination)
    destination.refresh_from_db()
    assert destination.name == "Renamed hook"
    assert destination.endpoint_url == "https://hooks.example.com/new"
    assert destination.timeout_seconds == 60
    assert destination.secret() == GIVEN_SECRET
    assert destination.custom_headers() == {"X-Api-Key": HEADER_VALUE, "X-Team": "blue"}
    page = client.get(response["Location"])
    assert "Destination updated." in page.content.decode()
    entry = AuditEntry.objects.filter(action="destination.updated").get()
    assert entry.before["name"] == "Existing hook" and entry.after["name"] == "Renamed hook"
    assert entry.after["custom_header_values"] == "changed"
    assert "secret" not in entry.after


@pytest.mark.django_db
def test_edit_replaces_and_removes_header_values(tenant_a, client_for):
    destination = make_destination(
        tenant_a, custom_headers={"X-Api-Key": HEADER_VALUE, "X-Old": "gone"}
    )
    data = form_data(name="Existing hook", header_name=["X-Api-Key"], header_value=["new-value"])
    client_for(tenant_a.admin).post(url("destination_edit", destination), data)
    destination.refresh_from_db()
    assert destination.custom_headers() == {"X-Api-Key": "new-value"}


@pytest.mark.django_db
def test_edit_with_a_new_secret_audits_it_only_as_changed(tenant_a, client_for):
    destination = make_destination(tenant_a)
    new_secret = "brand-new-secret-9876543210"
    data = form_data(
        name="Existing hook", secret=new_secret, header_name=["X-Api-Key"], header_value=[""]
    )
    client_for(tenant_a.admin).post(url("destination_edit", destination), data)
    destination.refresh_from_db()
    assert destination.secret() == new_secret
    entry = AuditEntry.objects.filter(action="destination.updated").get()
    assert entry.before["secret"] == entry.after["secret"] == "changed"
    assert new_secret not in str(entry.before) + str(entry.after)


@pytest.mark.django_db
def test_invalid_edit_shows_errors_and_saves_nothing(tenant_a, client_for):
    destination = make_destination(tenant_a)
    data = form_data(name="Existing hook", endpoint_url="https://10.0.0.5/hook")
    response = client_for(tenant_a.admin).post(url("destination_edit", destination), data)
    assert response.status_code == 400
    assert SSRF_ERROR in response.content.decode()
    destination.refresh_from_db()
    assert destination.endpoint_url == "https://hooks.example.com/existing"
    assert actions(tenant_a.tenant) == ["destination.created"]


@pytest.mark.django_db
def test_edit_refuses_a_name_used_by_another_destination(tenant_a, client_for):
    make_destination(tenant_a, name="Taken")
    destination = make_destination(tenant_a)
    response = client_for(tenant_a.admin).post(
        url("destination_edit", destination), form_data(name="Taken")
    )
    assert response.status_code == 400
    assert "A destination with this name already exists." in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES_WITHOUT_MANAGE)
def test_operator_and_auditor_cannot_edit_destination(role, tenant_a, client_for):
    destination = make_destination(tenant_a)
    client = client_for(tenant_a.user(role))
    assert client.get(url("destination_edit", destination)).status_code == 403
    response = client.post(url("destination_edit", destination), form_data(name="Hijacked"))
    assert response.status_code == 403
    destination.refresh_from_db()
    assert destination.name == "Existing hook"


@pytest.mark.django_db
def test_another_tenants_destination_cannot_be_edited(tenant_a, tenant_b, client_for):
    destination = make_destination(tenant_b)
    client = client_for(tenant_a.admin)
    assert client.get(url("destination_edit", destination)).status_code == 404
    response = client.post(url("destination_edit", destination), form_data(name="Hijacked"))
    assert response.status_code == 404
    destination.refresh_from_db()
    assert destination.name == "Existing hook"
