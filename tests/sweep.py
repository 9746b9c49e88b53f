"""Every portal URL, found from the URL configuration, so that a new page cannot escape the
permission sweep. Objects for URL arguments come from OBJECT_BUILDERS."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver

from integrations.catalogue import EventType
from integrations.services import destination_create

# Namespaces and names that are deliberately open to anonymous users.
PUBLIC = {"login", "logout", "healthz", "home", "switch_tenant"}
SKIPPED_NAMESPACES = {"admin", "api", "djdt"}

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
    return [route for route in _walk(get_resolver()) if route.name not in PUBLIC]
