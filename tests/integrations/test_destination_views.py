"""Portal pages for destinations: the Integrations page, the destination page and its actions.

Every view that changes data is tested for STYLE §10's four cases: it works for an admin; it is
403 for an operator and an auditor; another tenant's destination is 404; a GET is 405 where the
view is POST-only. No test touches the network: names resolve through a stub and sockets refuse
to connect.
"""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import AuditEntry
from integrations.catalogue import EventType
from integrations.models import Destination
from integrations.services import destination_create, destination_set_active
from integrations.url_safety import SSRF_ERROR
from tests.factories import TenantFactory

GIVEN_SECRET = "given-secret-0123456789abcdef"
HEADER_VALUE = "header-value-Zx81-do-not-show"
ROLES_WITHOUT_MANAGE = ["operator", "auditor"]


pytestmark = pytest.mark.usefixtures("no_network")


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


def main_html(response) -> str:
    """The page's own content, without the layout (which has the sign-out form)."""
    html = response.content.decode()
    match = re.search(r'<main class="content">(.*)</main>', html, re.S)
    assert match, html[:500]
    return match.group(1)


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


# Integrations page -----------------------------------------------------------------------------
@pytest.mark.django_db
def test_admin_sees_the_create_destination_card(tenant_a, client_for):
    response = client_for(tenant_a.admin).get(reverse("integrations:index"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "<h1>Integrations</h1>" in html
    assert ">Create destination</h2>" in html
    assert '<label for="id_name">Name</label>' in html
    assert '<label for="id_endpoint_url">Endpoint URL (https)</label>' in html
    assert '<button type="submit" class="btn btn-primary">Create</button>' in html
    assert "<summary>More options</summary>" in html
    # Name and Endpoint URL come before the advanced options.
    assert (
        html.index('id="id_name"')
        < html.index('id="id_endpoint_url"')
        < html.index("More options")
        < html.index('id="id_secret"')
    )
    assert "Only for testing against self-signed certificates" in html
    assert 'data-add-row="header-rows"' in html and '<template id="header-row-template">' in html


@pytest.mark.django_db
def test_create_form_defaults(tenant_a, client_for):
    html = client_for(tenant_a.admin).get(reverse("integrations:index")).content.decode()
    for value in EventType.values:
        assert re.search(
            rf'<input type="checkbox" name="event_types" value="{re.escape(value)}"'
            r"[^>]*checked",
            html,
        ), value
    assert re.search(r'<input type="checkbox" name="active"[^>]*checked', html)
    assert not re.search(r'<input type="checkbox" name="skip_tls_verify"[^>]*checked', html)
    assert 'value="X-OneProtect-Signature"' in html
    assert 'name="timeout_seconds" value="30"' in html


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES_WITHOUT_MANAGE)
def test_operator_and_auditor_see_no_create_card_and_no_actions(role, tenant_a, client_for):
    make_destination(tenant_a)
    response = client_for(tenant_a.user(role)).get(reverse("integrations:index"))
    assert response.status_code == 200
    main = main_html(response)
    assert "Create destination" not in main
    assert "<form" not in main
    # Copy buttons (egress IPs, when configured) are the only buttons: nothing changes data.
    assert set(re.findall(r"<button[^>]*>([^<]*)</button>", main)) <= {"Copy"}
    assert ">Destinations</h2>" in main
    assert "Existing hook" in main


@pytest.mark.django_db
def test_empty_state_invites_admins_to_create(tenant_a, client_for):
    admin_html = main_html(client_for(tenant_a.admin).get(reverse("integrations:index")))
    operator_html = main_html(client_for(tenant_a.operator).get(reverse("integrations:index")))
    assert "No destinations yet. Create one above to start receiving events." in admin_html
    assert "No destinations yet." in operator_html
    assert "Create one above" not in operator_html


@pytest.mark.django_db
def test_list_shows_each_destinations_state(tenant_a, client_for):
    hook = make_destination(tenant_a, event_types=["detection.alert", "inbound_protection.spam"])
    paused = make_destination(tenant_a, name="Paused hook")
    destination_set_active(destination=paused, actor=tenant_a.admin, active=False)
    response = client_for(tenant_a.operator).get(reverse("integrations:index"))
    destinations = card(response, "destinations")
    assert f'<a href="{url("destination_detail", hook)}">Existing hook</a>' in destinations
    assert "https://hooks.example.com/existing" in destinations
    assert '<span class="badge health-no_events">No events yet</span>' in destinations
    assert '<span class="badge health-paused">Paused</span>' in destinations
    assert re.search(r"<td>2</td>", destinations)
    assert ">Active</td>" in destinations and ">Paused</td>" in destinations
    health = card(response, "delivery-health")
    assert "No events yet" in health and "Paused" in health


@pytest.mark.django_db
def test_list_shows_only_the_current_tenants_destinations(tenant_a, tenant_b, client_for):
    make_destination(tenant_b, name="Tenant B secret hook")
    html = client_for(tenant_a.admin).get(reverse("integrations:index")).content.decode()
    assert "Tenant B secret hook" not in html


@pytest.mark.django_db
def test_page_query_count_does_not_grow_with_destinations(tenant_a, client_for):
    client = client_for(tenant_a.admin)
    make_destination(tenant_a, name="Hook 0")
    client.get(reverse("integrations:index"))  # warm the session and caches
    with CaptureQueriesContext(connection) as one:
        client.get(reverse("integrations:index"))
    for number in range(1, 8):
        make_destination(tenant_a, name=f"Hook {number}")
    with CaptureQueriesContext(connection) as many:
        response = client.get(reverse("integrations:index"))
    assert response.content.decode().count("/integrations/destinations/") >= 8
    assert len(many) == len(one), [q["sql"] for q in many.captured_queries]


@pytest.mark.django_db
def test_include_child_accounts_is_offered_only_when_the_tenant_has_children(tenant_a, client_for):
    client = client_for(tenant_a.admin)
    assert (
        'name="include_child_tenants"'
        not in client.get(reverse("integrations:index")).content.decode()
    )
    TenantFactory(slug="tenant-a-emea", name="Tenant A EMEA", parent=tenant_a.tenant)
    html = client.get(reverse("integrations:index")).content.decode()
    assert '<input type="checkbox" name="include_child_tenants"' in html
    assert "Include child accounts&#x27; events</label>" in html


@pytest.mark.django_db
def test_include_child_accounts_is_ignored_without_children(tenant_a, client_for):
    client_for(tenant_a.admin).post(create_url(), form_data(include_child_tenants="on"))
    assert Destination.objects.get().include_child_tenants is False


@pytest.mark.django_db
def test_include_child_accounts_is_saved_when_the_tenant_has_children(tenant_a, client_for):
    TenantFactory(slug="tenant-a-emea", name="Tenant A EMEA", parent=tenant_a.tenant)
    client_for(tenant_a.admin).post(create_url(), form_data(include_child_tenants="on"))
    assert Destination.objects.get().include_child_tenants is True


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


# Destination page ------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("role", ["admin", "operator", "auditor"])
def test_every_role_sees_the_configuration(role, tenant_a, client_for):
    destination = make_destination(
        tenant_a, min_severity="medium", rate_limit_per_second=3.0, timeout_seconds=45
    )
    response = client_for(tenant_a.user(role)).get(url("destination_detail", destination))
    assert response.status_code == 200
    config = card(response, "configuration")
    assert '<dl class="config">' in config
    assert "https://hooks.example.com/existing" in config
    assert "Custom webhook" in config
    assert "Detection alerts" in config
    assert "Medium" in config
    assert "<code>X-Api-Key: ••••••••</code>" in config
    assert "45 seconds" in config and "3 requests per second" in config
    assert "set on " in config
    assert HEADER_VALUE not in response.content.decode()
    assert GIVEN_SECRET not in response.content.decode()
    assert ">Deliveries</h2>" in response.content.decode()


@pytest.mark.django_db
def test_admin_sees_the_actions(tenant_a, client_for):
    destination = make_destination(tenant_a)
    html = main_html(client_for(tenant_a.admin).get(url("destination_detail", destination)))
    assert f'href="{url("destination_edit", destination)}">Edit</a>' in html
    assert f'action="{url("destination_pause", destination)}"' in html
    assert f'action="{url("destination_activate", destination)}"' not in html
    assert f'action="{url("destination_rotate_secret", destination)}"' in html
    assert f'action="{url("destination_delete", destination)}"' in html
    assert 'data-confirm="Delete this destination? This cannot be undone."' in html
    assert 'name="confirm" value="yes" required' in html
    assert 'name="overlap_hours" value="24"' in html


@pytest.mark.django_db
def test_a_paused_destination_offers_activate(tenant_a, client_for):
    destination = make_destination(tenant_a)
    destination_set_active(destination=destination, actor=tenant_a.admin, active=False)
    html = main_html(client_for(tenant_a.admin).get(url("destination_detail", destination)))
    assert f'action="{url("destination_activate", destination)}"' in html
    assert f'action="{url("destination_pause", destination)}"' not in html


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES_WITHOUT_MANAGE)
def test_operator_and_auditor_see_no_action_buttons_or_forms(role, tenant_a, client_for):
    destination = make_destination(tenant_a)
    html = main_html(client_for(tenant_a.user(role)).get(url("destination_detail", destination)))
    # Read-only tools are for everyone: the deliveries filter (GET), the signature check (a POST
    # that only computes) and copy buttons. Nothing that changes data is offered.
    post_actions = re.findall(r'<form method="post" action="([^"]+)"', html)
    assert post_actions == [url("destination_verify_signature", destination)]
    buttons = re.findall(r"<button[^>]*>([^<]*)</button>", html)
    assert set(buttons) <= {"Filter", "Check signature", "Copy"}, buttons
    assert ">Edit</a>" not in html
    assert "Rotate secret" not in html and "Delete destination" not in html


@pytest.mark.django_db
def test_another_tenants_destination_page_is_404(tenant_a, tenant_b, client_for):
    destination = make_destination(tenant_b)
    response = client_for(tenant_a.admin).get(url("destination_detail", destination))
    assert response.status_code == 404


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


# Pause and activate ----------------------------------------------------------------------------
@pytest.mark.django_db
def test_admin_pauses_and_activates_a_destination(tenant_a, client_for):
    destination = make_destination(tenant_a)
    client = client_for(tenant_a.admin)
    response = client.post(url("destination_pause", destination), follow=True)
    assert response.redirect_chain[-1][0] == url("destination_detail", destination)
    assert "Destination paused." in response.content.decode()
    destination.refresh_from_db()
    assert destination.active is False
    response = client.post(url("destination_activate", destination), follow=True)
    assert "Destination activated." in response.content.decode()
    destination.refresh_from_db()
    assert destination.active is True
    assert actions(tenant_a.tenant) == [
        "destination.created",
        "destination.paused",
        "destination.activated",
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["destination_pause", "destination_activate"])
@pytest.mark.parametrize("role", ROLES_WITHOUT_MANAGE)
def test_operator_and_auditor_cannot_pause_or_activate(name, role, tenant_a, client_for):
    destination = make_destination(tenant_a)
    if name == "destination_activate":
        destination_set_active(destination=destination, actor=tenant_a.admin, active=False)
    response = client_for(tenant_a.user(role)).post(url(name, destination))
    assert response.status_code == 403
    destination.refresh_from_db()
    assert destination.active is (name == "destination_pause")


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["destination_pause", "destination_activate"])
def test_another_tenants_destination_cannot_be_paused_or_activated(
    name, tenant_a, tenant_b, client_for
):
    destination = make_destination(tenant_b)
    assert client_for(tenant_a.admin).post(url(name, destination)).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["destination_pause", "destination_activate"])
def test_pause_and_activate_require_post(name, tenant_a, client_for):
    destination = make_destination(tenant_a)
    assert client_for(tenant_a.admin).get(url(name, destination)).status_code == 405
    destination.refresh_from_db()
    assert destination.active is True


# Rotate secret ---------------------------------------------------------------------------------
@pytest.mark.django_db
def test_admin_rotates_the_secret_and_sees_the_new_one_once(tenant_a, client_for):
    destination = make_destination(tenant_a)
    client = client_for(tenant_a.admin)
    response = client.post(
        url("destination_rotate_secret", destination), {"secret": "", "overlap_hours": "24"}
    )
    assert response.status_code == 200
    destination.refresh_from_db()
    new_secret = destination.secret()
    assert new_secret != GIVEN_SECRET
    html = response.content.decode()
    assert html.count(new_secret) == 1
    assert 'data-copy="generated-secret"' in html
    assert "Copy this secret now. It will not be shown again." in html
    assert "Secret rotated." in html
    assert "no-store" in response["Cache-Control"]
    assert destination.previous_secret() == GIVEN_SECRET
    assert "previous secret valid until" in html
    page = client.get(url("destination_detail", destination)).content.decode()
    assert new_secret not in page and GIVEN_SECRET not in page
    assert "previous secret valid until" in page
    entry = AuditEntry.objects.filter(action="destination.secret_rotated").get()
    assert entry.before["secret"] == entry.after["secret"] == "changed"


@pytest.mark.django_db
def test_rotate_to_a_given_secret_redirects_without_showing_it(tenant_a, client_for):
    destination = make_destination(tenant_a)
    new_secret = "rotated-secret-abcdefghijkl"
    response = client_for(tenant_a.admin).post(
        url("destination_rotate_secret", destination),
        {"secret": new_secret, "overlap_hours": "0"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == url("destination_detail", destination)
    html = response.content.decode()
    assert "Secret rotated." in html and new_secret not in html
    destination.refresh_from_db()
    assert destination.secret() == new_secret
    assert destination.previous_secret() is None


@pytest.mark.django_db
def test_invalid_rotation_changes_nothing(tenant_a, client_for):
    destination = make_destination(tenant_a)
    response = client_for(tenant_a.admin).post(
        url("destination_rotate_secret", destination), {"secret": "short", "overlap_hours": "999"}
    )
    assert response.status_code == 400
    assert (
        "short"
        not in card(response, "rotate-secret")
        .split("</form>")[0]
        .split('name="secret"')[1]
        .split(">")[0]
    )
    destination.refresh_from_db()
    assert destination.secret() == GIVEN_SECRET


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES_WITHOUT_MANAGE)
def test_operator_and_auditor_cannot_rotate_the_secret(role, tenant_a, client_for):
    destination = make_destination(tenant_a)
    response = client_for(tenant_a.user(role)).post(
        url("destination_rotate_secret", destination), {"secret": "", "overlap_hours": "24"}
    )
    assert response.status_code == 403
    destination.refresh_from_db()
    assert destination.secret() == GIVEN_SECRET


@pytest.mark.django_db
def test_another_tenants_secret_cannot_be_rotated(tenant_a, tenant_b, client_for):
    destination = make_destination(tenant_b)
    response = client_for(tenant_a.admin).post(
        url("destination_rotate_secret", destination), {"secret": "", "overlap_hours": "24"}
    )
    assert response.status_code == 404
    destination.refresh_from_db()
    assert destination.secret() == GIVEN_SECRET


@pytest.mark.django_db
def test_rotate_requires_post(tenant_a, client_for):
    destination = make_destination(tenant_a)
    response = client_for(tenant_a.admin).get(url("destination_rotate_secret", destination))
    assert response.status_code == 405


# Delete ----------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_admin_deletes_a_destination(tenant_a, client_for):
    destination = make_destination(tenant_a)
    response = client_for(tenant_a.admin).post(
        url("destination_delete", destination), {"confirm": "yes"}, follow=True
    )
    assert response.redirect_chain[-1][0] == reverse("integrations:index")
    assert "Destination deleted." in response.content.decode()
    assert not Destination.objects.exists()
    entry = AuditEntry.objects.filter(action="destination.deleted").get()
    assert entry.before["name"] == "Existing hook"


@pytest.mark.django_db
def test_delete_needs_the_confirmation(tenant_a, client_for):
    destination = make_destination(tenant_a)
    response = client_for(tenant_a.admin).post(url("destination_delete", destination))
    assert response.status_code == 400
    assert "Tick the confirmation box to delete this destination." in response.content.decode()
    assert Destination.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES_WITHOUT_MANAGE)
def test_operator_and_auditor_cannot_delete_destination(role, tenant_a, client_for):
    destination = make_destination(tenant_a)
    response = client_for(tenant_a.user(role)).post(
        url("destination_delete", destination), {"confirm": "yes"}
    )
    assert response.status_code == 403
    assert Destination.objects.exists()


@pytest.mark.django_db
def test_another_tenants_destination_cannot_be_deleted(tenant_a, tenant_b, client_for):
    destination = make_destination(tenant_b)
    response = client_for(tenant_a.admin).post(
        url("destination_delete", destination), {"confirm": "yes"}
    )
    assert response.status_code == 404
    assert Destination.objects.exists()


@pytest.mark.django_db
def test_delete_requires_post(tenant_a, client_for):
    destination = make_destination(tenant_a)
    assert client_for(tenant_a.admin).get(url("destination_delete", destination)).status_code == 405
    assert Destination.objects.exists()


# Audit -----------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_every_change_is_audited_without_secrets(tenant_a, client_for):
    client = client_for(tenant_a.admin)
    client.post(
        create_url(),
        form_data(secret=GIVEN_SECRET, header_name=["X-Api-Key"], header_value=[HEADER_VALUE]),
    )
    destination = Destination.objects.get()
    client.post(
        url("destination_edit", destination),
        form_data(name="Renamed", header_name=["X-Api-Key"], header_value=["second-value-77"]),
    )
    client.post(url("destination_pause", destination))
    client.post(url("destination_activate", destination))
    client.post(url("destination_rotate_secret", destination), {"overlap_hours": "24"})
    client.post(url("destination_delete", destination), {"confirm": "yes"})
    assert actions(tenant_a.tenant) == [
        "destination.created",
        "destination.updated",
        "destination.paused",
        "destination.activated",
        "destination.secret_rotated",
        "destination.deleted",
    ]
    for entry in destination_entries(tenant_a.tenant):
        assert entry.actor == tenant_a.admin
        assert entry.target_id == str(destination.pk)
        recorded = str(entry.before) + str(entry.after)
        for secret in (GIVEN_SECRET, HEADER_VALUE, "second-value-77"):
            assert secret not in recorded
