"""Tenant scoping by default (portal/scoping.py): during a request, a query on tenant-owned rows
that names no tenant raises before it reaches the database; every view and API handler runs
under that guard, and the sweeps below drive each of them as an admin, reading and writing."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db.models import Q
from django.test import Client, RequestFactory
from django.urls import reverse

from integrations.models import Delivery, DeliveryEvent, Destination, Event
from portal import scoping
from portal.models import ApiToken, Membership
from tests.api import API, api_client, make_destination
from tests.api.test_permissions import OPERATIONS, _call
from tests.api.test_permissions import _url as api_url
from tests.sweep import OBJECT_BUILDERS, portal_routes

pytestmark = pytest.mark.django_db

ROUTES = portal_routes()


@pytest.fixture
def destination(tenant_a):
    return make_destination(tenant_a.tenant)


def test_an_unscoped_read_or_write_raises_under_the_guard(destination):
    with scoping.guard():
        for attempt in (
            lambda: Destination.objects.count(),
            lambda: list(Destination.objects.filter(pk=destination.pk)),
            lambda: Destination.objects.get(pk=destination.pk),
            lambda: Destination.objects.filter(name="x").exists(),
            lambda: Event.objects.first(),
            lambda: DeliveryEvent.objects.filter(destination=destination).count(),
            lambda: ApiToken.objects.count(),
            lambda: Membership.objects.count(),
            lambda: Destination.objects.filter(pk=destination.pk).update(name="changed"),
            lambda: Delivery.objects.filter(destination=destination).delete(),
            lambda: Destination.objects.exclude(tenant=destination.tenant).count(),
            # An OR scopes only when every branch names a tenant.
            lambda: Destination.objects.filter(Q(tenant=destination.tenant) | Q(name="x")).count(),
        ):
            with pytest.raises(scoping.UnscopedQuery):
                attempt()
    destination.refresh_from_db()
    assert destination.name != "changed"


def test_the_scoped_ways_pass_under_the_guard(destination, tenant_a, tenant_b):
    with scoping.guard():
        assert Destination.objects.for_tenant(tenant_a.tenant).get() == destination
        assert Destination.objects.for_tenant(tenant_b.tenant).count() == 0
        assert Destination.objects.for_tenant(None).count() == 0
        assert Destination.objects.filter(tenant_id__in=[tenant_a.tenant.pk]).count() == 1
        either = Q(tenant=tenant_a.tenant) | Q(tenant=tenant_b.tenant)
        assert Destination.objects.filter(either).count() == 1
        assert Delivery.objects.filter(destination__tenant=tenant_a.tenant).count() == 0
        assert destination.deliveries.count() == 0  # a related manager: its parent scopes it
        assert Destination.objects.unscoped("this test").count() == 1
        assert Destination.objects.for_tenant(tenant_a.tenant).update(name="renamed") == 1


def test_outside_a_request_the_guard_is_off(destination):
    assert not scoping.guarded()
    assert Destination.objects.count() == 1  # workers, commands and the shell


def test_the_middleware_guards_views_but_not_the_admin():
    assert "portal.scoping.TenantScopeMiddleware" in settings.MIDDLEWARE
    seen = {}

    def view(request):
        seen[request.path] = scoping.guarded()
        return None

    middleware = scoping.TenantScopeMiddleware(view)
    for path in ("/integrations/", "/api/v1/events", "/admin/"):
        middleware(RequestFactory().get(path))
    assert seen == {"/integrations/": True, "/api/v1/events": True, "/admin/": False}
    assert not scoping.guarded()


def _url(route, setup):
    return reverse(
        route.name, kwargs={kwarg: OBJECT_BUILDERS[kwarg](setup) for kwarg in route.kwargs}
    )


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
@pytest.mark.parametrize("method", ["get", "post"])
def test_every_view_reads_and_writes_within_its_tenant(route, method, tenant_a, tenant_b):
    """Both tenants hold objects; the admin of one GETs and POSTs every page. An unscoped query
    would raise out of the test client (raise_request_exception) instead of answering."""
    _url(route, tenant_b)  # the other tenant's rows exist too
    client = Client(raise_request_exception=True)
    client.force_login(tenant_a.admin)
    response = getattr(client, method)(_url(route, tenant_a))
    assert response.status_code < 500


@pytest.mark.usefixtures("fake_sender")
def test_every_api_handler_reads_and_writes_within_its_tenant(tenant_a, tenant_b):
    """Every operation of the API as the admin's token (the per-operation sweeps of
    tests/api/test_permissions.py run under the same guard)."""
    make_destination(tenant_b.tenant)
    client = api_client(tenant_a.admin, tenant_a.tenant)  # Django's client re-raises errors
    statuses = {}
    for method, path, _ in OPERATIONS:
        response = _call(client, method, api_url(path, tenant_a.tenant))
        statuses[f"{method} {path}"] = response.status_code
    assert all(status < 500 for status in statuses.values()), statuses
    assert statuses[f"GET {API}/integrations/destinations"] == 200
