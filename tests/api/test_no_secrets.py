"""No API response contains a stored secret, a previous secret or a custom header value."""

from __future__ import annotations

import pytest

from integrations.services import destination_rotate_secret
from portal.api import api
from tests.api import (
    GIVEN_SECRET,
    HEADER_VALUE,
    ApiClient,
    api_client,
    make_delivery,
    make_destination,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fake_sender")]


SCHEMA = api.get_openapi_schema()
OPERATIONS = [
    (method.upper(), path) for path, methods in SCHEMA["paths"].items() for method in methods
]
NEW_SECRET = "rotated-secret-abcdefghijklmnop"
PREVIOUS_HEADER = "another-header-value-98765"


def _secrets_of(setup):
    destination = make_destination(
        setup.tenant,
        name="Secretive",
        secret=GIVEN_SECRET,
        provider="splunk_hec",
        custom_headers={"X-Api-Key": HEADER_VALUE, "X-Other": PREVIOUS_HEADER},
    )
    destination, _ = destination_rotate_secret(
        destination=destination, actor=None, new_secret=NEW_SECRET, overlap_hours=24
    )
    delivery = make_delivery(destination)
    return destination, delivery


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_response_reveals_a_stored_secret(method, path, tenant_a):
    destination, delivery = _secrets_of(tenant_a)
    client: ApiClient = api_client(tenant_a.admin, tenant_a.tenant)
    url = path.replace("{destination_id}", str(destination.pk)).replace(
        "{delivery_id}", str(delivery.pk)
    )
    body = {"name": "Renamed"} if method == "PATCH" else {}
    if path.endswith("/events"):
        body = {"event_type": "audit_log", "event": {"note": "hello"}}
    if method in ("POST", "PATCH"):
        response = client.send(method, url, body)
    elif method == "DELETE":
        response = client.delete(url)
    else:
        response = client.get(url)
    assert response.status_code < 500
    text = response.content.decode()
    for secret in (GIVEN_SECRET, NEW_SECRET, HEADER_VALUE, PREVIOUS_HEADER):
        assert secret not in text, f"{method} {path} revealed a secret"
