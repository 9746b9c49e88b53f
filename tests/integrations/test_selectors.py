"""The selectors keep every read within the tenant: another tenant's object is not found."""

from __future__ import annotations

import pytest
from django.http import Http404

from audit.selectors import audit_entry_list
from audit.services import record
from integrations import selectors
from portal.selectors import api_token_get, api_token_list
from portal.tokens import api_token_create
from tests.api import make_delivery, make_destination

pytestmark = pytest.mark.django_db


def test_destination_reads_stay_in_the_tenant(tenant_a, tenant_b):
    ours = make_destination(tenant_a.tenant, name="Ours")
    theirs = make_destination(tenant_b.tenant, name="Theirs")
    assert list(selectors.destination_list(tenant=tenant_a.tenant)) == [ours]
    assert selectors.destination_get(tenant=tenant_a.tenant, pk=ours.pk) == ours
    with pytest.raises(Http404):
        selectors.destination_get(tenant=tenant_a.tenant, pk=theirs.pk)
    assert selectors.destination_find(tenant=tenant_a.tenant, pk=theirs.pk) is None
    assert list(selectors.destination_list(tenant=None)) == []


def test_delivery_reads_stay_in_the_tenant(tenant_a, tenant_b):
    ours = make_delivery(make_destination(tenant_a.tenant))
    theirs_destination = make_destination(tenant_b.tenant)
    theirs = make_delivery(theirs_destination)
    assert selectors.delivery_get(tenant=tenant_a.tenant, pk=ours.pk) == ours
    with pytest.raises(Http404):
        selectors.delivery_get(tenant=tenant_a.tenant, pk=theirs.pk)
    with pytest.raises(Http404):
        selectors.delivery_get(tenant=tenant_a.tenant, pk=ours.pk, test_only=True)
    assert not selectors.delivery_list(tenant=tenant_a.tenant, destination=theirs_destination)
    assert selectors.delivery_has_failed(tenant=tenant_a.tenant, destination=ours.destination)
    assert not selectors.delivery_has_failed(tenant=tenant_a.tenant, destination=theirs_destination)
    assert [d.pk for d in selectors.delivery_recent_list(tenant=tenant_a.tenant)] == [ours.pk]


def test_audit_entries_and_api_tokens_stay_in_the_tenant(tenant_a, tenant_b):
    record(tenant=tenant_b.tenant, action="theirs.happened", actor_name="them")
    ours = record(tenant=tenant_a.tenant, action="ours.happened", actor_name="Us@Example.test")
    assert list(audit_entry_list(tenant=tenant_a.tenant, action="ours.happened")) == [ours]
    assert list(audit_entry_list(tenant=tenant_a.tenant, actor="us@example.test")) == [ours]
    assert not audit_entry_list(tenant=tenant_a.tenant, action="theirs.happened").exists()
    token, _ = api_token_create(
        user=tenant_a.admin, tenant=tenant_a.tenant, name="Ours", expires_in_days=7
    )
    assert api_token_list(tenant=tenant_a.tenant, user=tenant_a.admin) == [token]
    assert api_token_list(tenant=tenant_b.tenant, user=tenant_a.admin) == []
    assert api_token_list(tenant=tenant_a.tenant, user=tenant_a.operator) == []
    with pytest.raises(Http404):
        api_token_get(tenant=tenant_a.tenant, user=tenant_a.operator, pk=token.pk)
