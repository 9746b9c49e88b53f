"""Hostile input on every portal form and filter: a clear 4xx or form error, never a 500, and
nothing stored half-way. Routes come from the URL configuration."""

import socket

import pytest
from django.urls import reverse

from integrations import url_safety
from integrations.models import Destination
from portal.models import ApiToken
from tests.sweep import OBJECT_BUILDERS, portal_routes

ROUTES = portal_routes()
HOSTILE = {
    "long": "x" * 100_000,
    "nul": "a\x00b",
    "crlf": "a\r\nX-Injected: 1",
    "html": "<script>alert(1)</script><img src=x onerror=alert(1)>",
    "sql": "' OR 1=1 --",
    "bad-json": '{"events": [',
    "numbers": "1e309",
    "unicode": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ９９ \u202e",
}
FIELDS = [
    "name", "endpoint_url", "secret", "provider", "event_types", "min_severity",
    "include_child_tenants", "signature_header", "timeout_seconds", "rate_limit_per_second",
    "skip_tls_verify", "active", "header_name", "header_value", "overlap_hours", "confirm",
    "body", "signature", "state", "from", "to", "before", "after", "actor", "action", "target",
    "date_from", "date_to", "tenant", "next",
]  # fmt: skip


@pytest.fixture(autouse=True)
def no_dns(monkeypatch):
    def refuse(host, port):
        raise socket.gaierror(f"no lookups in tests: {host}")

    monkeypatch.setattr(url_safety, "resolve_host", refuse)


def _url(route, setup):
    return reverse(route.name, kwargs={k: OBJECT_BUILDERS[k](setup) for k in route.kwargs})


@pytest.mark.django_db
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_posts_never_fail_the_server(route, kind, tenant_a, client_for, settings):
    settings.WEBHOOK_ENQUEUE = False
    client = client_for(tenant_a.admin)
    url = _url(route, tenant_a)
    destinations = Destination.objects.count()
    tokens = ApiToken.objects.count()
    response = client.post(url, {field: HOSTILE[kind] for field in FIELDS})
    assert response.status_code < 500
    if response.status_code >= 400:
        assert Destination.objects.count() <= destinations  # nothing created half-way
        assert ApiToken.objects.count() == tokens
    if response.status_code == 200 and not getattr(response, "streaming", False):
        assert b"<script>alert(1)</script>" not in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("route", [r for r in ROUTES if not r.post_only], ids=lambda r: r.name)
@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_query_strings_never_fail_the_server(route, kind, tenant_a, client_for):
    client = client_for(tenant_a.admin)
    url = _url(route, tenant_a)
    response = client.get(url, {field: HOSTILE[kind] for field in FIELDS})
    assert response.status_code < 500
    if not getattr(response, "streaming", False):
        assert b"<script>alert(1)</script>" not in response.content
