"""The request as our middleware leaves it, for type annotations (never instantiated).

Django hands views a plain HttpRequest; RequestIdMiddleware and TenantMiddleware (and the API's
bearer scheme, portal.tokens) add these attributes to every request before a view runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest

if TYPE_CHECKING:
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
