import json
import logging

import pytest
from django.db import DatabaseError
from django.urls import reverse


@pytest.mark.django_db
def test_healthz_ok(client):
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


@pytest.mark.django_db
def test_healthz_503_when_database_unreachable(client, monkeypatch):
    from portal import views

    class BrokenConnection:
        def cursor(self):
            raise DatabaseError("down")

    monkeypatch.setattr(views, "connection", BrokenConnection())
    response = client.get(reverse("healthz"))
    assert response.status_code == 503


@pytest.mark.django_db
def test_every_response_has_a_request_id_and_one_log_line(client, caplog):
    with caplog.at_level(logging.INFO, logger="portal.request"):
        response = client.get(reverse("login") + "?token=secret-value")
    request_id = response["X-Request-ID"]
    assert len(request_id) == 32
    lines = [r for r in caplog.records if r.name == "portal.request"]
    assert len(lines) == 1
    assert lines[0].status == 200
    assert lines[0].path == "/login/"
    from portal.logging import JsonFormatter

    formatted = JsonFormatter().format(lines[0])
    assert json.loads(formatted)["method"] == "GET"
    assert "secret-value" not in formatted


@pytest.mark.django_db
def test_security_headers_are_set(client):
    response = client.get(reverse("login"))
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.mark.django_db
def test_unknown_page_is_a_friendly_404(client_for, tenant_a):
    response = client_for(tenant_a.admin).get("/no-such-page/")
    assert response.status_code == 404
    assert b"Not found" in response.content
