"""Every portal URL, found from the URL configuration, so that a new page cannot escape the
permission sweep. Objects for URL arguments come from OBJECT_BUILDERS."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver

from integrations.catalogue import EventType
from integrations.models import Delivery, DeliveryState, ResendJob
from integrations.services import destination_create
from portal.tokens import api_token_create

# Namespaces and names that are deliberately open to anonymous users.
PUBLIC = {"login", "logout", "healthz", "home", "switch_tenant"}
# Platform staff only (or a metrics token), outside the tenant table: tests/test_ops.py.
STAFF_ONLY = {"metrics", "delivery_workers"}
SKIPPED_NAMESPACES = {"admin", "api", "djdt"}


def _sweep_delivery(setup) -> int:
    """A failed delivery of a new destination (so that Resend has something to do)."""
    destination_id = OBJECT_BUILDERS["destination_id"](setup)
    return Delivery.objects.create(
        tenant=setup.tenant,
        destination_id=destination_id,
        state=DeliveryState.FAILED,
        event_count=1,
        attempt_count=1,
        attempt_limit=10,
        failure_reason="HTTP 400",
    ).pk


def _sweep_test_delivery(setup) -> int:
    destination_id = OBJECT_BUILDERS["destination_id"](setup)
    return Delivery.objects.create(
        tenant=setup.tenant, destination_id=destination_id, is_test=True, event_count=1
    ).pk


def _sweep_resend_job(setup) -> int:
    destination_id = OBJECT_BUILDERS["destination_id"](setup)
    return ResendJob.objects.create(tenant=setup.tenant, destination_id=destination_id).pk


# kwarg name -> builder(tenant_setup) returning the value for an object in that tenant.
OBJECT_BUILDERS: dict[str, Callable] = {
    # Created through the service (no form, so no DNS lookup); the name is unique per call.
    "destination_id": lambda setup: (
        destination_create(
            tenant=setup.tenant,
            actor=setup.admin,
            data={
                "name": f"Sweep destination {uuid.uuid4().hex[:8]}",
                "endpoint_url": "https://hooks.example.com/sweep",
                "event_types": list(EventType.values),
            },
        )[0].pk
    ),
    # The admin's own API token (users can only revoke their own).
    "token_id": lambda setup: (
        api_token_create(user=setup.admin, tenant=setup.tenant, name="Sweep token")[0].pk
    ),
    "delivery_id": _sweep_delivery,
    "job_id": _sweep_resend_job,
    "test_delivery_id": _sweep_test_delivery,
}


@dataclass
class Route:
    name: str
    pattern: str
    view: Callable
    kwargs: tuple[str, ...]

    @property
    def capability(self):
        return getattr(self.view, "required_capability", None)

    @property
    def post_only(self) -> bool:
        return getattr(self.view, "post_only", False)


def _walk(resolver, namespace: str = "", prefix: str = ""):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            ns = entry.namespace or namespace
            if ns in SKIPPED_NAMESPACES:
                continue
            yield from _walk(entry, ns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern) and entry.name:
            name = f"{namespace}:{entry.name}" if namespace else entry.name
            kwargs = tuple(entry.pattern.regex.groupindex)
            yield Route(name, prefix + str(entry.pattern), entry.callback, kwargs)


def portal_routes() -> list[Route]:
    return [route for route in _walk(get_resolver()) if route.name not in PUBLIC | STAFF_ONLY]
