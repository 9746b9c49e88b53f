"""Helpers for the API tests: token clients, objects in a tenant, a fake sender.

No network: the `no_network` and `fake_sender` fixtures (tests/conftest.py)."""

from __future__ import annotations

import json
import uuid

from django.test import Client
from django.utils import timezone

from integrations.catalogue import EventType
from integrations.delivery.sender import Outcome
from integrations.models import Attempt, Delivery, DeliveryState, Destination
from integrations.services import destination_create
from portal.models import Tenant, User
from portal.tokens import api_token_create

GIVEN_SECRET = "given-secret-0123456789abcdef"
HEADER_VALUE = "header-value-Zx81-do-not-show"
API = "/api/v1"


class FakeSender:
    """Stands in for the HTTP sender: answers every request with `status`, sends nothing."""

    def __init__(self, status: int = 200, body: str = "ok"):
        self.status = status
        self.body = body
        self.sent: list = []

    def send(self, destination, request, *, timeout=None) -> Outcome:
        self.sent.append((destination, request))
        ok = 200 <= self.status < 300
        return Outcome(
            ok=ok,
            transient=False,
            started_at=timezone.now(),
            duration_ms=12,
            delivery_uuid=request.delivery_uuid,
            status_code=self.status,
            error_kind="" if ok else "http",
            response_excerpt=self.body,
            request_headers=request.shown_headers,
        )


def install_fake_sender(monkeypatch) -> FakeSender:
    """Make `POST .../test` use a FakeSender (returned, to script and inspect it)."""
    sender = FakeSender()
    monkeypatch.setattr("integrations.services.get_sender", lambda: sender)
    return sender


class ApiClient:
    """A test client that sends a bearer token and JSON bodies."""

    def __init__(self, token: str | None = None, client: Client | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = client or Client()
        self.headers = headers
        self.token = token

    def get(self, path: str, params: dict | None = None):
        return self.client.get(path, params or {}, headers=self.headers)

    def send(self, method: str, path: str, body=None, content_type: str = "application/json"):
        """A request with a body: a dict is sent as JSON, str/bytes as they are."""
        data = body if isinstance(body, str | bytes) else json.dumps({} if body is None else body)
        call = getattr(self.client, method.lower())
        return call(path, data, content_type=content_type, headers=self.headers)

    def post(self, path: str, body=None, **kwargs):
        return self.send("post", path, body, **kwargs)

    def patch(self, path: str, body=None, **kwargs):
        return self.send("patch", path, body, **kwargs)

    def delete(self, path: str):
        return self.client.delete(path, headers=self.headers)


def issue_token(user: User, tenant: Tenant, name: str = "test token") -> str:
    return api_token_create(user=user, tenant=tenant, name=name)[1]


def api_client(user: User, tenant: Tenant) -> ApiClient:
    """A client with a fresh token of the user in the tenant."""
    return ApiClient(issue_token(user, tenant))


def make_destination(tenant: Tenant, name: str | None = None, **data) -> Destination:
    """A destination created through the service (no DNS lookup)."""
    values = {
        "name": name or f"Hook {uuid.uuid4().hex[:8]}",
        "endpoint_url": "https://hooks.example.com/existing",
        "event_types": list(EventType.values),
        **data,
    }
    return destination_create(tenant=tenant, actor=None, data=values)[0]


def make_delivery(
    destination: Destination, state: str = DeliveryState.FAILED, attempts: int = 1, **fields
) -> Delivery:
    """A delivery with attempts that got a 500 (the last one) as the engine records them."""
    delivery = Delivery.objects.create(
        tenant_id=destination.tenant_id,
        destination=destination,
        state=state,
        event_count=1,
        attempt_count=attempts,
        attempt_limit=10,
        last_status_code=500,
        last_error_kind="http",
        failure_reason="500 from the endpoint" if state == DeliveryState.FAILED else "",
        **fields,
    )
    for number in range(1, attempts + 1):
        Attempt.objects.create(
            delivery=delivery,
            number=number,
            delivery_uuid=uuid.uuid4(),
            started_at=timezone.now(),
            duration_ms=40,
            status_code=500,
            error_kind="http",
            response_excerpt="upstream exploded",
            request_headers={
                "Content-Type": "application/json",
                "X-OneProtect-Signature": "sha256=abc",
                "X-Api-Key": "••••••••",
            },
        )
    return delivery
