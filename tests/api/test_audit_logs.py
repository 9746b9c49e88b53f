"""GET /api/v1/audit-logs, and the audit entries of API tokens (never the token itself)."""

from __future__ import annotations

import pytest

from audit.models import AuditEntry
from audit.services import record
from portal.models import ApiToken
from portal.tokens import api_token_create, api_token_revoke
from tests.api import API, ApiClient, api_client

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_network")]


AUDIT = f"{API}/audit-logs"


def test_lists_the_tenants_entries_newest_first(tenant_a, tenant_b):
    for n in range(3):
        record(tenant=tenant_a.tenant, actor=tenant_a.admin, action=f"test.action{n}")
    record(tenant=tenant_b.tenant, actor=tenant_b.admin, action="test.other_tenant")
    response = api_client(tenant_a.auditor, tenant_a.tenant).get(AUDIT)
    assert response.status_code == 200
    actions = [item["action"] for item in response.json()["items"]]
    assert actions[:3] == ["api_token.created", "test.action2", "test.action1"]
    assert "test.other_tenant" not in actions


def test_filters_and_pagination(tenant_a):
    for n in range(5):
        record(
            tenant=tenant_a.tenant, actor=tenant_a.operator, action="test.repeat", after={"n": n}
        )
    client = api_client(tenant_a.auditor, tenant_a.tenant)
    page = client.get(AUDIT, {"action": "test.repeat", "limit": 3}).json()
    assert [item["after"]["n"] for item in page["items"]] == [4, 3, 2]
    rest = client.get(
        AUDIT, {"action": "test.repeat", "limit": 3, "cursor": page["next_cursor"]}
    ).json()
    assert [item["after"]["n"] for item in rest["items"]] == [1, 0]
    assert rest["next_cursor"] is None

    by_actor = client.get(AUDIT, {"actor": "OPERATOR@tenant-a.test"}).json()["items"]
    assert {item["actor"] for item in by_actor} == {"operator@tenant-a.test"}
    assert len(by_actor) == 5


def test_token_creation_and_revocation_are_audited_without_the_token(tenant_a):
    api_token, token = api_token_create(user=tenant_a.operator, tenant=tenant_a.tenant, name="CI")
    api_token_revoke(api_token=api_token, actor=tenant_a.operator)
    api_token_revoke(api_token=api_token, actor=tenant_a.operator)  # twice: one entry
    created = AuditEntry.objects.get(action="api_token.created")
    revoked = AuditEntry.objects.get(action="api_token.revoked")
    assert created.actor == tenant_a.operator and revoked.actor == tenant_a.operator
    assert created.after["prefix"] == api_token.prefix
    for entry in (created, revoked):
        text = str(entry.before) + str(entry.after) + entry.target_repr
        assert token not in text
        # The secret part (after "op_<prefix>_"; it may itself hold "_").
        assert token.split("_", 2)[2] not in text
        assert entry.target_type == "apitoken"
    assert ApiToken.objects.get().revoked_at is not None


def test_the_audit_log_through_the_api_never_shows_a_token(tenant_a):
    api_token, token = api_token_create(user=tenant_a.admin, tenant=tenant_a.tenant, name="x")
    body = ApiClient(token).get(AUDIT).content.decode()
    assert "api_token.created" in body
    assert token not in body
