"""Property-based API tests: schemathesis generates requests from the live OpenAPI document
(`/api/openapi.json`, served by the WSGI app) and checks every response with a real admin token:
no 5xx, documented status codes and content types, bodies that match their schemas, and
invalid input rejected. Bounded to a few examples per operation so that `make test` stays fast.

Nothing connects anywhere: every host name is unresolvable (so generated destinations are
refused or cannot be created), the sender is a stub and no wake-up tasks are queued.
"""

from __future__ import annotations

import socket

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from integrations import url_safety
from portal.tokens import api_token_create
from tests.api import make_delivery, make_destination

schema = schemathesis.openapi.from_wsgi("/api/openapi.json", get_wsgi_application())
# Unknown query parameters are ignored, as most APIs do: not a negative case here.
schema.config.generation.update(allow_extra_parameters=False)


@pytest.fixture
def keep_test_connection():
    """Requests go through the real WSGI handler, which closes database connections when a
    request ends; keep the test's connection (and its transaction) open, as Django's test
    client does."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def admin_token(keep_test_connection, tenant_a, fake_sender, monkeypatch) -> str:
    """An admin token of tenant A, which also has a destination with a failed delivery."""

    def unresolvable(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    # `fake_sender` brings `no_network`; here no name resolves at all.
    monkeypatch.setattr(url_safety, "resolve_host", unresolvable)
    make_delivery(make_destination(tenant_a.tenant, name="Existing"))
    return api_token_create(user=tenant_a.admin, tenant=tenant_a.tenant, name="schemathesis")[1]


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_conforms_to_its_schema(case, admin_token):
    # Not positive_data_acceptance: some rules cannot be in a schema (the endpoint's DNS answer,
    # unique names, a cursor the API issued), so schema-valid input may rightly be a 400.
    case.call_and_validate(
        headers={"Authorization": f"Bearer {admin_token}"},
        excluded_checks=[positive_data_acceptance],
    )
