"""POST .../test with the real sender, against the loopback receiver (allowed in tests only)."""

from __future__ import annotations

import pytest

from integrations.models import Attempt
from tests.api import API, api_client, make_destination

pytestmark = pytest.mark.django_db


def test_send_test_reaches_a_loopback_receiver(tenant_a, receiver, settings):
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOWED_PRIVATE_TARGETS = [f"127.0.0.1:{receiver.port}"]
    settings.WEBHOOK_ENQUEUE = False
    destination = make_destination(
        tenant_a.tenant, endpoint_url=receiver.url, custom_headers={"X-Api-Key": "k-123456789"}
    )
    admin_api = api_client(tenant_a.admin, tenant_a.tenant)

    response = admin_api.post(f"{API}/integrations/destinations/{destination.pk}/test")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ok"] is True and body["status_code"] == 200
    assert body["explanation"] is None
    assert len(receiver.received) == 1
    detail = admin_api.get(f"{API}/integrations/deliveries/{body['delivery_id']}").json()
    assert detail["is_test"] is True
    [attempt] = detail["attempts"]
    assert attempt["request_headers"]["X-Api-Key"] == "••••••••"
    assert "k-123456789" not in str(detail)
    assert Attempt.objects.count() == 1
