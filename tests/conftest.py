"""Fixtures: tenant A with an admin, an operator and an auditor; tenant B, an outsider."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.test import Client

from portal.models import Membership, Role, Tenant, User
from tests.api import FakeSender, install_fake_sender
from tests.factories import MembershipFactory, TenantFactory, UserFactory
from tests.network import NetworkGuard, install_network_guard, stub_dns

pytest_plugins = ["tests.receiver"]


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Rate limit counters live in the (per-process) cache: each test starts from zero."""
    from django.core.cache import cache

    cache.clear()
    yield


# No network ----------------------------------------------------------------------------------
# Two fixtures, one guard (tests/network.py). Neither is autouse: the engine and worker tests
# talk to real loopback receivers.
@pytest.fixture
def network_guard(monkeypatch: pytest.MonkeyPatch) -> NetworkGuard:
    """Every socket connect and name lookup fails the test and is recorded, real resolver
    included; only 127.0.0.1 ports added to `guard.loopback_ports` (a test's own servers) get
    through. For tests that bring their own resolver stub or check the real one (the URL safety
    and delivery client tests)."""
    return install_network_guard(monkeypatch)


@pytest.fixture
def no_network(network_guard: NetworkGuard, monkeypatch: pytest.MonkeyPatch, settings):
    """The guard, plus what the portal and API tests need: names resolve through
    tests.network.DNS (url_safety.resolve_host is stubbed) and nothing is queued to django-q2
    (WEBHOOK_ENQUEUE = False)."""
    stub_dns(monkeypatch, settings)
    return network_guard


@pytest.fixture
def fake_sender(no_network: NetworkGuard, monkeypatch: pytest.MonkeyPatch) -> FakeSender:
    """No network, and test sends answer through a FakeSender (what it sent is kept on it)."""
    return install_fake_sender(monkeypatch)


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
