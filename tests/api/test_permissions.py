"""The permission table (docs/design.md#roles) over every API operation, for every role, and
token auth.

Operations come from the OpenAPI document, so a new endpoint cannot escape: each must declare
`x-required-capability` (portal.tokens.requires), and its auth must enforce exactly that.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from integrations.api import router
from portal.api import api
from portal.models import ApiToken, Membership, Role
from portal.permissions import PERMISSIONS, Capability
from portal.tokens import ApiTokenAuth, api_token_revoke
from tests.api import (
    ApiClient,
    api_client,
    issue_token,
    make_delivery,
    make_destination,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fake_sender")]


SCHEMA = api.get_openapi_schema()
OPERATIONS = [
    (method.upper(), path, operation)
    for path, methods in SCHEMA["paths"].items()
    for method, operation in methods.items()
]
OPERATION_IDS = [f"{method} {path}" for method, path, _ in OPERATIONS]

# path parameter -> builder(tenant) of an object of that tenant.
PATH_OBJECTS = {
    "destination_id": lambda tenant: make_destination(tenant).pk,
    "delivery_id": lambda tenant: make_delivery(make_destination(tenant)).pk,
}


def _url(path: str, tenant) -> str:
    for name, build in PATH_OBJECTS.items():
        if "{" + name + "}" in path:
            path = path.replace("{" + name + "}", str(build(tenant)))
    return path


def _call(client: ApiClient, method: str, url: str):
    if method in ("POST", "PATCH", "PUT"):
        return client.send(method, url, {})
    if method == "DELETE":
        return client.delete(url)
    return client.get(url)


def _capability(operation) -> Capability:
    return Capability(operation["x-required-capability"])


def test_the_api_has_the_endpoints_of_spec_9():
    assert set(OPERATION_IDS) == {
        "GET /api/v1/integrations/destinations",
        "POST /api/v1/integrations/destinations",
        "GET /api/v1/integrations/destinations/{destination_id}",
        "PATCH /api/v1/integrations/destinations/{destination_id}",
        "DELETE /api/v1/integrations/destinations/{destination_id}",
        "POST /api/v1/integrations/destinations/{destination_id}/test",
        "POST /api/v1/integrations/destinations/{destination_id}/rotate-secret",
        "GET /api/v1/integrations/destinations/{destination_id}/deliveries",
        "GET /api/v1/integrations/deliveries/{delivery_id}",
        "POST /api/v1/integrations/deliveries/{delivery_id}/resend",
        "POST /api/v1/events",
        "GET /api/v1/event-types",
        "GET /api/v1/audit-logs",
    }


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=OPERATION_IDS)
def test_every_operation_declares_a_capability_and_bearer_auth(method, path, operation):
    assert "x-required-capability" in operation, "use **requires(Capability.X) on the route"
    assert _capability(operation) in Capability
    assert operation["security"] == [{"ApiTokenAuth": []}]
    assert {"401", "403"} <= set(map(str, operation["responses"]))


def test_every_operations_auth_enforces_its_declared_capability():
    for path_view in router.path_operations.values():
        for operation in path_view.operations:
            [auth] = operation.auth_callbacks
            assert isinstance(auth, ApiTokenAuth), operation.view_func.__name__
            declared = operation.openapi_extra["x-required-capability"]
            assert auth.capability == declared, operation.view_func.__name__


def test_every_path_parameter_has_an_object_builder():
    needed = {
        parameter["name"]
        for _, _, operation in OPERATIONS
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path"
    }
    assert needed <= set(PATH_OBJECTS), needed - set(PATH_OBJECTS)


def test_events_publishing_is_admin_only():
    """A deliberate choice: publishing makes deliveries happen, like managing destinations."""
    [operation] = [op for method, path, op in OPERATIONS if path == "/api/v1/events"]
    assert PERMISSIONS[_capability(operation)] == {Role.ADMIN}


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=OPERATION_IDS)
@pytest.mark.parametrize("role", Role.values)
def test_operation_follows_the_permission_table(method, path, operation, role, tenant_a):
    client = api_client(tenant_a.user(role), tenant_a.tenant)
    response = _call(client, method, _url(path, tenant_a.tenant))
    if role in PERMISSIONS[_capability(operation)]:
        assert response.status_code not in (401, 403), response.content[:300]
        assert response.status_code < 500
    else:
        assert response.status_code == 403, response.content[:300]
        assert response.json() == {"detail": f"Your role ({role}) does not allow this."}


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=OPERATION_IDS)
def test_another_tenants_objects_are_404(method, path, operation, tenant_a, tenant_b):
    if "{" not in path:
        pytest.skip("no object in the path")
    client = api_client(tenant_a.admin, tenant_a.tenant)
    response = _call(client, method, _url(path, tenant_b.tenant))
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=OPERATION_IDS)
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Token op_0123abcd_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-token",
        "Bearer op_0123abcd_" + "a" * 43,
        "Bearer op_0123abcd_" + "a" * 5000,
        "Bearer op_\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9_" + "a" * 43,
    ],
    ids=[
        "none",
        "empty",
        "scheme-only",
        "scheme-space",
        "wrong-scheme",
        "basic",
        "malformed",
        "unknown",
        "long",
        "non-ascii",
    ],
)
def test_without_a_valid_token_every_operation_is_401(
    method, path, operation, authorization, tenant_a
):
    client = ApiClient()
    if authorization is not None:
        client.headers = {"Authorization": authorization}
    response = _call(client, method, _url(path, tenant_a.tenant))
    assert response.status_code == 401, response.content[:300]
    assert set(response.json()) == {"detail"}
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=OPERATION_IDS)
def test_a_revoked_token_is_401(method, path, operation, tenant_a):
    token = issue_token(tenant_a.admin, tenant_a.tenant)
    api_token_revoke(api_token=ApiToken.objects.get(), actor=tenant_a.admin)
    response = _call(ApiClient(token), method, _url(path, tenant_a.tenant))
    assert response.status_code == 401
    assert response.json() == {"detail": "The API token is invalid or has been revoked."}


def test_a_session_cookie_does_not_authenticate(tenant_a, client_for):
    client = ApiClient(client=client_for(tenant_a.admin))
    assert client.get("/api/v1/integrations/destinations").status_code == 401
    response = client.post(
        "/api/v1/integrations/destinations",
        {"name": "Via session", "endpoint_url": "https://hooks.example.com/x"},
    )
    assert response.status_code == 401


def test_the_token_acts_in_its_own_tenant_not_the_sessions(tenant_a, tenant_b, client_for):
    """A user in two tenants: the token's tenant wins over the tenant chosen in the session."""
    Membership.objects.create(user=tenant_a.admin, tenant=tenant_b.tenant, role=Role.ADMIN)
    make_destination(tenant_b.tenant, name="B's hook")
    make_destination(tenant_a.tenant, name="A's hook")
    session = client_for(tenant_a.admin, tenant_b.tenant)
    client = ApiClient(issue_token(tenant_a.admin, tenant_a.tenant), client=session)
    names = [d["name"] for d in client.get("/api/v1/integrations/destinations").json()]
    assert names == ["A's hook"]


def test_no_csrf_token_is_needed(tenant_a):
    token = issue_token(tenant_a.admin, tenant_a.tenant)
    client = ApiClient(token, client=Client(enforce_csrf_checks=True))
    response = client.post(
        "/api/v1/integrations/destinations",
        {"name": "No CSRF", "endpoint_url": "https://hooks.example.com/x"},
    )
    assert response.status_code == 201


def test_the_current_role_applies_at_once(tenant_a):
    client = ApiClient(issue_token(tenant_a.admin, tenant_a.tenant))
    body = {"name": "Hook", "endpoint_url": "https://hooks.example.com/x"}
    Membership.objects.filter(user=tenant_a.admin).update(role=Role.OPERATOR)
    assert client.post("/api/v1/integrations/destinations", body).status_code == 403
    assert client.get("/api/v1/integrations/destinations").status_code == 200
    Membership.objects.filter(user=tenant_a.admin).update(role=Role.ADMIN)
    assert client.post("/api/v1/integrations/destinations", body).status_code == 201


def test_a_removed_membership_ends_the_token(tenant_a):
    client = ApiClient(issue_token(tenant_a.operator, tenant_a.tenant))
    assert client.get("/api/v1/integrations/destinations").status_code == 200
    Membership.objects.filter(user=tenant_a.operator).delete()
    response = client.get("/api/v1/integrations/destinations")
    assert response.status_code == 401
    assert "no longer a member" in response.json()["detail"]


def test_an_inactive_user_is_401(tenant_a):
    client = ApiClient(issue_token(tenant_a.admin, tenant_a.tenant))
    tenant_a.admin.is_active = False
    tenant_a.admin.save()
    assert client.get("/api/v1/integrations/destinations").status_code == 401


def test_last_used_is_recorded_at_most_once_a_minute(tenant_a):
    client = ApiClient(issue_token(tenant_a.auditor, tenant_a.tenant))
    client.get("/api/v1/event-types")
    token = ApiToken.objects.get()
    first_use = token.last_used_at
    assert first_use is not None

    client.get("/api/v1/event-types")
    token.refresh_from_db()
    assert token.last_used_at == first_use  # no write within the minute

    ApiToken.objects.update(last_used_at=timezone.now() - timedelta(minutes=2))
    client.get("/api/v1/event-types")
    token.refresh_from_db()
    assert token.last_used_at > first_use
