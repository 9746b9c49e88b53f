"""Issue 13 §5: rate limits (429 with Retry-After), a destinations cap, expiring API tokens,
a signature checker that never 500s, logs without query strings or header values, start-up
checks for development settings, a Content-Security-Policy, and 168.63.129.16 refused."""

from __future__ import annotations

import io
import json
import logging
import re
from datetime import timedelta

import pytest
from django.core.checks import run_checks
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from integrations import url_safety
from integrations.catalogue import EventType
from integrations.services import destination_create
from portal.logging import JsonFormatter
from portal.models import ApiToken
from portal.tokens import api_token_create
from tests.api import API, ApiClient, api_client, install_fake_sender

pytestmark = pytest.mark.django_db


def _destination(tenant, name="hook"):
    return destination_create(
        tenant=tenant,
        actor=None,
        data={
            "name": name,
            "endpoint_url": "https://hooks.example.com/in",
            "event_types": list(EventType.values),
            "secret": "a-long-enough-secret-1234",
        },
    )[0]


# Rate limits --------------------------------------------------------------------------------
def test_publishing_is_limited_per_token_with_retry_after(no_network, tenant_a, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "publish": "3/m"}
    api = api_client(tenant_a.admin, tenant_a.tenant)
    event = {"event_type": "detection.alert", "severity": "high", "event": {"n": 1}}
    statuses = [api.post(f"{API}/events", event).status_code for _ in range(3)]
    assert statuses == [201, 201, 201]
    refused = api.post(f"{API}/events", event)
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert "Too many requests" in refused.json()["detail"]
    # The user's other token shares the user's budget.
    other = api_client(tenant_a.admin, tenant_a.tenant)
    assert other.post(f"{API}/events", event).status_code == 429


def test_api_test_sends_are_limited(no_network, tenant_a, settings, monkeypatch):
    install_fake_sender(monkeypatch)
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "test_send": "2/m"}
    destination = _destination(tenant_a.tenant)
    api = api_client(tenant_a.admin, tenant_a.tenant)
    path = f"{API}/integrations/destinations/{destination.pk}/test"
    assert [api.post(path).status_code for _ in range(2)] == [200, 200]
    refused = api.post(path)
    assert refused.status_code == 429 and refused["Retry-After"]


def test_portal_test_sends_and_signature_checks_are_limited_per_user(
    no_network, tenant_a, client_for, settings, monkeypatch
):
    install_fake_sender(monkeypatch)
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "test_send": "1/m", "signature_check": "2/m"}
    destination = _destination(tenant_a.tenant)
    client = client_for(tenant_a.admin)
    kwargs = {"destination_id": destination.pk}
    send = reverse("integrations:destination_send_test", kwargs=kwargs)
    assert client.post(send).status_code in (200, 302)
    refused = client.post(send)
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    check = reverse("integrations:destination_verify_signature", kwargs=kwargs)
    data = {"body": "{}", "signature": "sha256=" + "0" * 64}
    assert [client.post(check, data).status_code for _ in range(2)] == [200, 200]
    refused = client.post(check, data)
    assert refused.status_code == 429 and refused["Retry-After"]
    # Another user has a budget of their own.
    operator = client_for(tenant_a.operator)
    assert operator.post(check, data).status_code == 200


# Destinations cap ---------------------------------------------------------------------------
def test_a_tenant_cannot_exceed_the_destinations_cap(no_network, tenant_a, settings):
    settings.WEBHOOK_MAX_DESTINATIONS_PER_TENANT = 2
    _destination(tenant_a.tenant, "one")
    _destination(tenant_a.tenant, "two")
    api = api_client(tenant_a.admin, tenant_a.tenant)
    response = api.post(
        f"{API}/integrations/destinations",
        {"name": "three", "endpoint_url": "https://hooks.example.com/3"},
    )
    assert response.status_code == 400
    assert "already has 2 destinations" in json.dumps(response.json())


def test_the_default_cap_is_50(settings):
    assert settings.WEBHOOK_MAX_DESTINATIONS_PER_TENANT == 50


# API token expiry ---------------------------------------------------------------------------
def test_tokens_expire_after_90_days_by_default(no_network, tenant_a, monkeypatch):
    api_token, token = api_token_create(user=tenant_a.admin, tenant=tenant_a.tenant, name="ci")
    days = (api_token.expires_at - timezone.now()) / timedelta(days=1)
    assert 89.9 < days <= 90
    api = ApiClient(token)
    assert api.get(f"{API}/integrations/destinations").status_code == 200
    later = timezone.now() + timedelta(days=91)
    monkeypatch.setattr("django.utils.timezone.now", lambda: later)
    refused = api.get(f"{API}/integrations/destinations")
    assert refused.status_code == 401
    assert "expired" in refused.json()["detail"]


def test_the_expiry_is_chosen_at_creation_and_shown(tenant_a, client_for):
    client = client_for(tenant_a.operator)
    response = client.post(reverse("api_token_create"), {"name": "script", "expires_in_days": "7"})
    assert response.status_code == 201
    api_token = ApiToken.objects.get(name="script")
    days = (api_token.expires_at - timezone.now()) / timedelta(days=1)
    assert 6.9 < days <= 7
    html = client.get(reverse("api_tokens")).text
    assert '<th scope="col">Expires</th>' in html
    assert timezone.localtime(api_token.expires_at).strftime("%Y-%m-%d") in html
    bad = client.post(reverse("api_token_create"), {"name": "x", "expires_in_days": "9999"})
    assert bad.status_code == 400


# Signature checker never 500s ---------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        "[" * 200_000 + "]" * 200_000,  # deeply nested JSON
        '{"a":' * 50_000 + "1" + "}" * 50_000,
        "x" * (1024 * 1024 + 10),  # oversized
        "\x00\x01",
    ],
)
def test_the_signature_checker_never_500s(body, no_network, tenant_a, client_for):
    destination = _destination(tenant_a.tenant)
    url = reverse(
        "integrations:destination_verify_signature", kwargs={"destination_id": destination.pk}
    )
    response = client_for(tenant_a.operator).post(
        url, {"body": body, "signature": "sha256=" + "0" * 64}
    )
    assert response.status_code in (200, 400, 413)


# Logs ---------------------------------------------------------------------------------------
def test_no_log_line_holds_a_query_string_or_a_header_value():
    request = RequestFactory().get(
        "/integrations/?token=query-secret-1", HTTP_X_API_KEY="header-secret-2"
    )
    record = logging.LogRecord(
        "django.request",
        logging.ERROR,
        __file__,
        1,
        "Internal Server Error: %s",
        ("/integrations/?token=query-secret-1",),
        None,
    )
    record.request = request
    record.status_code = 500
    record.url = "https://hooks.example.com/in?key=query-secret-3"
    line = JsonFormatter().format(record)
    for secret in ("query-secret-1", "header-secret-2", "query-secret-3"):
        assert secret not in line
    parsed = json.loads(line)
    assert parsed["request"] == {"method": "GET", "path": "/integrations/"}


def test_a_500_logged_by_django_request_holds_no_query_or_header(tenant_a, client_for, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    # The configured console handler's formatter, on a stream this test reads.
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)

    monkeypatch.setattr("integrations.views._deliveries_context", boom)
    client = client_for(tenant_a.operator)
    client.raise_request_exception = False
    destination = _destination(tenant_a.tenant)
    url = reverse("integrations:destination_detail", kwargs={"destination_id": destination.pk})
    try:
        response = client.get(url + "?token=query-secret-4", HTTP_X_API_KEY="header-secret-5")
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 500
    output = stream.getvalue()
    assert "Internal Server Error" in output
    assert "query-secret-4" not in output and "header-secret-5" not in output


# Start-up checks ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "value", "check_id"),
    [
        ("WEBHOOK_ALLOWED_PRIVATE_TARGETS", ["127.0.0.1:8765"], "portal.E011"),
        ("WEBHOOK_ALLOW_HTTP", True, "portal.E012"),
    ],
)
def test_development_settings_fail_the_start_up_checks_without_debug(
    setting, value, check_id, settings
):
    settings.DEBUG = False
    setattr(settings, setting, value)
    assert check_id in [message.id for message in run_checks()]
    settings.DEBUG = True
    assert check_id not in [message.id for message in run_checks()]


# Content-Security-Policy ---------------------------------------------------------------------
def test_every_page_has_a_csp_without_inline_script(tenant_a, client_for, client):
    pages = [
        client.get(reverse("login")),
        client_for(tenant_a.admin).get(reverse("integrations:index")),
        client_for(tenant_a.admin).get(reverse("audit:index")),
        client_for(tenant_a.admin).get("/api/docs"),
        client_for(tenant_a.admin).get("/no-such-page/"),
    ]
    for response in pages:
        policy = response["Content-Security-Policy"]
        script_src = re.search(r"script-src ([^;]*)", policy).group(1)
        assert script_src.strip() == "'self'", policy
        assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy
        html = response.content.decode()
        inline = [
            tag
            for tag in re.findall(r"<script\b[^>]*>", html)
            if "src=" not in tag and 'type="application/json"' not in tag
        ]
        assert inline == [], response.request["PATH_INFO"]
        assert not re.search(r"\son[a-z]+=\"", html)  # no inline event handlers


# SSRF ---------------------------------------------------------------------------------------
def test_the_azure_wire_server_is_refused():
    with pytest.raises(url_safety.UnsafeURLError):
        url_safety.check_url(
            "https://wire.example.com/", resolver=lambda host, port: ["168.63.129.16"]
        )
    with pytest.raises(url_safety.UnsafeURLError):
        url_safety.check_url("https://168.63.129.16/")
