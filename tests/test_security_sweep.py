"""Security sweep over every portal URL (found from the URL configuration): no page shows a
stored secret or custom header value, and no state change is possible without a CSRF token."""

import re

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


# Issue 13: every point of the hardening, swept -------------------------------------------------
QUERY_SECRET = "sweep-query-key-5566"
GET_ROUTES = [route for route in ROUTES if not route.post_only]


def _plant_query(tenant) -> None:
    Destination.objects.for_tenant(tenant).update(
        endpoint_url=f"https://hooks.example.com/sweep?key={QUERY_SECRET}"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("route", GET_ROUTES, ids=lambda r: r.name)
@pytest.mark.parametrize("role", Role.values)
def test_every_page_has_a_csp_and_masks_endpoint_queries(route, role, tenant_a, client_for):
    """§2 query strings masked except on the admin's edit form; §5 CSP without inline script."""
    url = _url(route, tenant_a)
    OBJECT_BUILDERS["destination_id"](tenant_a)
    _plant_query(tenant_a.tenant)
    response = client_for(tenant_a.user(role)).get(url)
    policy = response["Content-Security-Policy"]
    assert re.search(r"script-src ([^;]*)", policy).group(1).strip() == "'self'", policy
    raw = b"".join(response.streaming_content) if response.streaming else response.content
    body = raw.decode(errors="replace")
    assert not re.findall(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", body)
    if not (role == Role.ADMIN and route.name == "integrations:destination_edit"):
        assert QUERY_SECRET not in body


@pytest.mark.django_db
def test_sweep_of_the_signing_audit_and_abuse_points(tenant_a, settings):
    """§1 Standard Webhooks signs id.timestamp.body; §4 the chain is keyed and TRUNCATE is
    refused; §3 one failed sign-in entry per minute; §5 the Azure wire server is refused."""
    import base64
    import hashlib
    import hmac

    from django.db import DatabaseError, connection, transaction
    from standardwebhooks.webhooks import Webhook

    from audit.models import AuditEntry, canonical_bytes
    from audit.services import record
    from integrations import url_safety
    from integrations.delivery.signing import prepare
    from integrations.services import destination_create

    secret = "whsec_" + base64.b64encode(b"s" * 32).decode()
    destination, _ = destination_create(
        tenant=tenant_a.tenant,
        actor=None,
        data={
            "name": "sweep sw",
            "endpoint_url": "https://hooks.example.com/sw",
            "event_types": ["detection.alert"],
            "secret": secret,
            "signature_scheme": "standard_webhooks",
        },
    )
    prepared = prepare(destination, b'{"events":[]}', message_id="msg_sweep")
    Webhook(secret).verify(prepared.body, prepared.headers)

    entry = record(tenant=tenant_a.tenant, action="sweep.entry")
    key = settings.AUDIT_CHAIN_KEY.encode()
    assert entry.hash == hmac.new(key, canonical_bytes(entry), hashlib.sha256).hexdigest()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("SET LOCAL oneprotect.audit_truncate = 'no'")
            cursor.execute("TRUNCATE audit_auditentry CASCADE")

    client = Client()
    for _ in range(3):
        client.post(reverse("login"), {"username": tenant_a.admin.email, "password": "wrong"})
    failed = AuditEntry.objects.filter(tenant=tenant_a.tenant, action="auth.sign_in_failed")
    assert failed.count() == 1

    with pytest.raises(url_safety.UnsafeURLError):
        url_safety.check_url("https://168.63.129.16/")
