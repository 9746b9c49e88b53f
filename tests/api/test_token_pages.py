"""Settings → API tokens: list, create (shown once), revoke, and the staff command."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from audit.models import AuditEntry
from portal.models import ApiToken, Membership, Role
from portal.tokens import api_token_create
from tests.api import ApiClient

pytestmark = pytest.mark.django_db

TOKEN_IN_PAGE = re.compile(r'<code id="new-api-token">(op_[0-9a-f]{8}_[A-Za-z0-9_-]+)</code>')


@pytest.mark.parametrize("role", Role.values)
def test_every_role_can_create_a_token_shown_once(role, tenant_a, client_for):
    client = client_for(tenant_a.user(role))
    response = client.post(reverse("api_token_create"), {"name": "SIEM sync"})
    assert response.status_code == 201
    html = response.content.decode()
    token = TOKEN_IN_PAGE.search(html).group(1)
    assert 'data-copy="new-api-token"' in html
    assert "It will not be shown again" in html
    assert "no-store" in response["Cache-Control"]

    api_token = ApiToken.objects.get()
    assert (api_token.user, api_token.tenant, api_token.name) == (
        tenant_a.user(role),
        tenant_a.tenant,
        "SIEM sync",
    )
    assert token.startswith(f"op_{api_token.prefix}_")
    assert token not in api_token.token_hash

    listing = client.get(reverse("api_tokens")).content.decode()
    assert "SIEM sync" in listing and f"op_{api_token.prefix}_" in listing
    assert token not in listing
    assert ApiClient(token).get("/api/v1/event-types").status_code == 200
    assert AuditEntry.objects.filter(action="api_token.created").count() == 1


def test_a_name_is_required(tenant_a, client_for):
    response = client_for(tenant_a.admin).post(reverse("api_token_create"), {"name": " "})
    assert response.status_code == 400
    assert not ApiToken.objects.exists()


def test_users_see_only_their_own_tokens_in_the_current_tenant(tenant_a, tenant_b, client_for):
    Membership.objects.create(user=tenant_a.admin, tenant=tenant_b.tenant, role=Role.OPERATOR)
    api_token_create(user=tenant_a.admin, tenant=tenant_a.tenant, name="mine in A")
    api_token_create(user=tenant_a.admin, tenant=tenant_b.tenant, name="mine in B")
    api_token_create(user=tenant_a.operator, tenant=tenant_a.tenant, name="the operator's")
    html = client_for(tenant_a.admin, tenant_a.tenant).get(reverse("api_tokens")).content.decode()
    assert "mine in A" in html
    assert "mine in B" not in html
    assert "the operator&#x27;s" not in html and "the operator's" not in html


def test_revoke_own_token(tenant_a, client_for):
    api_token, token = api_token_create(user=tenant_a.auditor, tenant=tenant_a.tenant, name="t")
    client = client_for(tenant_a.auditor)
    response = client.post(reverse("api_token_revoke", kwargs={"token_id": api_token.pk}))
    assert response.status_code == 302
    api_token.refresh_from_db()
    assert api_token.revoked_at is not None
    assert ApiClient(token).get("/api/v1/event-types").status_code == 401
    assert AuditEntry.objects.filter(action="api_token.revoked").count() == 1
    assert "Revoked" in client.get(reverse("api_tokens")).content.decode()


def test_cannot_revoke_someone_elses_token(tenant_a, client_for):
    api_token, _ = api_token_create(user=tenant_a.admin, tenant=tenant_a.tenant, name="admin's")
    client = client_for(tenant_a.operator)
    response = client.post(reverse("api_token_revoke", kwargs={"token_id": api_token.pk}))
    assert response.status_code == 404
    api_token.refresh_from_db()
    assert api_token.revoked_at is None


def test_revoke_is_post_only(tenant_a, client_for):
    api_token, _ = api_token_create(user=tenant_a.admin, tenant=tenant_a.tenant, name="t")
    url = reverse("api_token_revoke", kwargs={"token_id": api_token.pk})
    assert client_for(tenant_a.admin).get(url).status_code == 405


def test_the_user_menu_links_to_api_tokens(tenant_a, client_for):
    html = client_for(tenant_a.operator).get(reverse("integrations:index")).content.decode()
    assert f'href="{reverse("api_tokens")}"' in html


def test_staff_command_prints_a_working_token(tenant_a):
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "create_api_token",
        "--email",
        "ADMIN@tenant-a.test",
        "--tenant",
        "tenant-a",
        "--name",
        "Bootstrap",
        stdout=out,
        stderr=err,
    )
    token = out.getvalue().strip()
    assert ApiClient(token).get("/api/v1/integrations/destinations").status_code == 200
    assert ApiToken.objects.get().name == "Bootstrap"
    entry = AuditEntry.objects.get(action="api_token.created")
    assert entry.actor_name == "staff (manage.py create_api_token)"
    assert token not in err.getvalue()


def test_staff_command_refuses_non_members(tenant_a, tenant_b):
    with pytest.raises(CommandError):
        call_command(
            "create_api_token",
            "--email",
            "admin@tenant-a.test",
            "--tenant",
            "tenant-b",
            stdout=io.StringIO(),
        )
