"""Fixtures: tenant A with an admin, an operator and an auditor; tenant B, an outsider."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.test import Client

from portal.models import Membership, Role, Tenant, User
from tests.factories import MembershipFactory, TenantFactory, UserFactory

pytest_plugins = ["tests.receiver"]


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Rate limit counters live in the (per-process) cache: each test starts from zero."""
    from django.core.cache import cache

    cache.clear()
    yield


@dataclass
class TenantSetup:
    tenant: Tenant
    admin: User
    operator: User
    auditor: User

    def user(self, role: str) -> User:
        return getattr(self, role)


def _tenant_with_roles(slug: str, name: str) -> TenantSetup:
    tenant = TenantFactory(slug=slug, name=name)
    users = {}
    for role in Role.values:
        user = UserFactory(email=f"{role}@{slug}.test")
        MembershipFactory(user=user, tenant=tenant, role=role)
        users[role] = user
    return TenantSetup(tenant=tenant, **users)


@pytest.fixture
def tenant_a(db) -> TenantSetup:
    return _tenant_with_roles("tenant-a", "Tenant A")


@pytest.fixture
def tenant_b(db) -> TenantSetup:
    return _tenant_with_roles("tenant-b", "Tenant B")


@pytest.fixture
def client_for():
    """A signed-in test client for a user (optionally in a chosen tenant)."""

    def make(user: User, tenant: Tenant | None = None) -> Client:
        client = Client()
        client.force_login(user)
        if tenant is not None:
            assert Membership.objects.filter(user=user, tenant=tenant).exists()
            session = client.session
            session["tenant_id"] = tenant.pk
            session.save()
        return client

    return make


@pytest.fixture
def admin_client_a(tenant_a, client_for) -> Client:
    return client_for(tenant_a.admin)
