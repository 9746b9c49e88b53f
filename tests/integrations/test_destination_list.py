"""The Integrations page for destinations: the list and the Create destination card."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from integrations.catalogue import EventType
from integrations.models import Destination
from integrations.services import destination_set_active
from tests.factories import TenantFactory
from tests.integrations.destination_helpers import (
    ROLES_WITHOUT_MANAGE,
    card,
    create_url,
    form_data,
    make_destination,
    url,
)
from tests.integrations.page_helpers import main_html

pytestmark = pytest.mark.usefixtures("no_network")


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
