"""Security sweep over every portal URL (found from the URL configuration): no page shows a
stored secret or custom header value, and no state change is possible without a CSRF token."""

import pytest
from django.test import Client
from django.urls import reverse

from integrations.models import Destination
from portal.models import Role
from tests.sweep import OBJECT_BUILDERS, portal_routes

ROUTES = portal_routes()
SECRET = "sweep-secret-value-0123456789abcdef"
HEADER_VALUE = "sweep-header-value-fedcba9876543210"


def _url(route, setup):
    return reverse(route.name, kwargs={k: OBJECT_BUILDERS[k](setup) for k in route.kwargs})


def _plant_secrets(tenant) -> None:
    for destination in Destination.objects.for_tenant(tenant):
        destination.set_secret(SECRET)
        destination.set_custom_headers({"X-Api-Key": HEADER_VALUE})
        destination.save()


@pytest.mark.django_db
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
@pytest.mark.parametrize("role", Role.values)
def test_no_page_shows_a_stored_secret_or_header_value(route, role, tenant_a, client_for):
    url = _url(route, tenant_a)
    OBJECT_BUILDERS["destination_id"](tenant_a)  # at least one destination on every page
    _plant_secrets(tenant_a.tenant)
    response = client_for(tenant_a.user(role)).get(url)
    raw = b"".join(response.streaming_content) if response.streaming else response.content
    body = raw.decode(errors="replace")
    assert SECRET not in body
    assert HEADER_VALUE not in body


@pytest.mark.django_db
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_every_post_needs_a_csrf_token(route, tenant_a):
    client = Client(enforce_csrf_checks=True)
    client.force_login(tenant_a.admin)
    url = _url(route, tenant_a)
    before = Destination.objects.count()
    response = client.post(url, {"name": "csrf-test", "confirm": "on"})
    assert response.status_code == 403
    assert Destination.objects.count() == before


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["switch_tenant", "logout"])
def test_session_posts_need_a_csrf_token(name, tenant_a):
    client = Client(enforce_csrf_checks=True)
    client.force_login(tenant_a.admin)
    assert client.post(reverse(name), {"tenant": "tenant-a"}).status_code == 403
