"""The permission table (docs/design.md#roles) checked over every portal URL, for every role."""

import pytest
from django.urls import reverse

from portal.models import Role
from portal.permissions import PERMISSIONS
from tests.sweep import OBJECT_BUILDERS, portal_routes

ROUTES = portal_routes()


def test_every_portal_view_declares_a_capability():
    missing = [route.name for route in ROUTES if route.capability is None]
    assert missing == [], f"views without @require_capability: {missing}"


def test_every_url_argument_has_an_object_builder():
    needed = {kwarg for route in ROUTES for kwarg in route.kwargs}
    assert needed <= set(OBJECT_BUILDERS), needed - set(OBJECT_BUILDERS)


def _url(route, setup):
    kwargs = {kwarg: OBJECT_BUILDERS[kwarg](setup) for kwarg in route.kwargs}
    return reverse(route.name, kwargs=kwargs)


@pytest.mark.django_db
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
@pytest.mark.parametrize("role", Role.values)
def test_get_follows_the_permission_table(route, role, tenant_a, client_for):
    client = client_for(tenant_a.user(role))
    response = client.get(_url(route, tenant_a))
    allowed = role in PERMISSIONS[route.capability]
    if route.post_only:
        assert response.status_code == 405
    elif allowed:
        assert response.status_code == 200, response.content[:500]
    else:
        assert response.status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
@pytest.mark.parametrize("role", Role.values)
def test_post_is_refused_to_roles_without_the_capability(route, role, tenant_a, client_for):
    if role in PERMISSIONS[route.capability]:
        pytest.skip("allowed: covered by the view's own tests")
    response = client_for(tenant_a.user(role)).post(_url(route, tenant_a))
    assert response.status_code in (403, 405)
    if route.post_only:
        assert response.status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("route", [r for r in ROUTES if r.kwargs], ids=lambda r: r.name)
def test_another_tenants_objects_are_404(route, tenant_a, tenant_b, client_for):
    client = client_for(tenant_a.admin)
    url = _url(route, tenant_b)
    response = client.post(url) if route.post_only else client.get(url)
    assert response.status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_anonymous_is_sent_to_sign_in(route, tenant_a, client):
    url = _url(route, tenant_a)
    response = client.post(url) if route.post_only else client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
@pytest.mark.parametrize("role", Role.values)
def test_nav_shows_what_the_role_may_see(role, tenant_a, client_for):
    html = client_for(tenant_a.user(role)).get(reverse("integrations:index")).content.decode()
    assert ">Integrations</a>" in html
    assert ">Audit</a>" in html
