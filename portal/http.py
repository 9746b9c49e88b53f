"""The request as our middleware leaves it, for type annotations (never instantiated).

Django hands views a plain HttpRequest; RequestIdMiddleware and TenantMiddleware (and the API's
bearer scheme, portal.tokens) add these attributes to every request before a view runs.
"""

from __future__ import annotations

from django.http import HttpRequest

from portal.models import Membership, Tenant, User


class PortalRequest(HttpRequest):
    request_id: str  # RequestIdMiddleware
    # TenantMiddleware: the session's chosen membership (None when signed out or in no tenant).
    tenant: Tenant | None
    membership: Membership | None
    memberships: list[Membership]


class AuthenticatedRequest(PortalRequest):
    """A PortalRequest behind a sign-in check (login_required, require_capability)."""

    user: User


class TenantRequest(AuthenticatedRequest):
    """An AuthenticatedRequest behind require_capability: the user has a current membership,
    so the tenant is set (the decorator answers 403 otherwise)."""

    tenant: Tenant
    membership: Membership
