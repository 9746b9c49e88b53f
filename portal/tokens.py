"""API tokens: issue, revoke and authenticate them, and the bearer scheme the API uses.

A token reads `op_<prefix>_<secret>`: the prefix (8 hex characters) is stored and shown so
that people can tell their tokens apart; the whole token is only ever stored as a SHA-256 hash.
A token acts as its user with their *current* role in its tenant: the membership is looked up
on every request, so a changed role applies at once and a removed membership ends the token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, Q, Subquery
from django.http import HttpRequest
from django.utils import timezone
from ninja.errors import AuthenticationError, AuthorizationError
from ninja.security import HttpBearer

from audit.services import record
from portal.http import PortalRequest
from portal.models import ApiToken, Membership, Tenant, User
from portal.permissions import Capability, has_capability

TOKEN_PATTERN = re.compile(r"^op_(?P<prefix>[0-9a-f]{8})_[A-Za-z0-9_-]{20,100}$")
LAST_USED_PRECISION = timedelta(minutes=1)  # at most one write per token per minute

# Messages, not secrets.
MISSING_TOKEN = "Authentication required: send an API token as 'Authorization: Bearer <token>'."  # noqa: S105
INVALID_TOKEN = "The API token is invalid or has been revoked."  # noqa: S105
NOT_A_MEMBER = "The API token's user is no longer a member of its tenant."
EXPIRED_TOKEN = "The API token has expired: create a new one on the API tokens page."  # noqa: S105


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def api_token_create(
    *,
    user: User,
    tenant: Tenant,
    name: str,
    issued_by: str = "",
    expires_in_days: int | None = None,
) -> tuple[ApiToken, str]:
    """Issue a token for the user in the tenant; returns it and the token text (shown once).

    `issued_by` names who issued it when that is not the user (a staff command). It expires
    after `expires_in_days` (default API_TOKEN_DEFAULT_DAYS, 90)."""
    days = expires_in_days or settings.API_TOKEN_DEFAULT_DAYS
    prefix = secrets.token_hex(4)
    token = f"op_{prefix}_{secrets.token_urlsafe(32)}"
    expires_at = timezone.now() + timedelta(days=days)
    api_token = ApiToken.objects.create(
        user=user,
        tenant=tenant,
        name=name,
        prefix=prefix,
        token_hash=_hash(token),
        expires_at=expires_at,
    )
    record(
        tenant=tenant,
        actor=None if issued_by else user,
        actor_name=issued_by,
        action="api_token.created",
        target=api_token,
        after={
            "name": name,
            "prefix": prefix,
            "user": user.email,
            "expires_at": expires_at.isoformat(),
        },
    )
    return api_token, token


@transaction.atomic
def api_token_revoke(*, api_token: ApiToken, actor: User) -> ApiToken:
    """Revoke the token (kept for the record); revoking twice changes nothing."""
    api_token = (
        ApiToken.objects.for_tenant(api_token.tenant_id).select_for_update().get(pk=api_token.pk)
    )
    if api_token.revoked_at is not None:
        return api_token
    api_token.revoked_at = timezone.now()
    api_token.save(update_fields=["revoked_at"])
    record(
        tenant=api_token.tenant,
        actor=actor,
        action="api_token.revoked",
        target=api_token,
        before={"revoked": False},
        after={"revoked": True, "name": api_token.name, "prefix": api_token.prefix},
    )
    return api_token


@dataclass(frozen=True)
class ApiPrincipal:
    """Who an API request acts as: the token's user, tenant and current membership."""

    token: ApiToken
    user: User
    tenant: Tenant
    membership: Membership


class TokenRefused(Exception):
    """The token cannot act: `message` says why, without echoing the token."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def api_token_authenticate(token: str) -> ApiPrincipal:
    """The principal for a token text; raises TokenRefused for a malformed, unknown or revoked
    token, an inactive user or a user who is no longer a member of the token's tenant."""
    if not TOKEN_PATTERN.match(token):
        raise TokenRefused(INVALID_TOKEN)
    # One query (every API request runs it): the token, its user and tenant, and the user's
    # membership of that tenant (id and role) as it is now.
    member = Membership.objects.filter(user_id=OuterRef("user_id"), tenant_id=OuterRef("tenant_id"))
    found = list(
        ApiToken.objects.unscoped("signing in: the token is what names the tenant")
        .select_related("user", "tenant")
        .annotate(
            membership_id=Subquery(member.values("id")[:1]),
            membership_role=Subquery(member.values("role")[:1]),
        )
        .filter(token_hash=_hash(token), revoked_at__isnull=True)[:1]
    )
    api_token = found[0] if found else None
    if api_token is None or not api_token.user.is_active:
        raise TokenRefused(INVALID_TOKEN)
    if api_token.is_expired:
        raise TokenRefused(EXPIRED_TOKEN)
    membership_id = getattr(api_token, "membership_id", None)  # annotated above
    if membership_id is None:
        raise TokenRefused(NOT_A_MEMBER)
    membership = Membership(
        pk=membership_id,
        user=api_token.user,
        tenant=api_token.tenant,
        role=getattr(api_token, "membership_role", ""),
    )
    _touch(api_token)
    return ApiPrincipal(
        token=api_token, user=membership.user, tenant=membership.tenant, membership=membership
    )


def _touch(api_token: ApiToken) -> None:
    """Record the use, at most once a minute, so that a busy token does not write per request."""
    now = timezone.now()
    if api_token.last_used_at is not None and now - api_token.last_used_at < LAST_USED_PRECISION:
        return
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_PRECISION)
    ApiToken.objects.for_tenant(api_token.tenant_id).filter(stale, pk=api_token.pk).update(
        last_used_at=now
    )
    api_token.last_used_at = now


# The bearer scheme ----------------------------------------------------------------------------
class ApiTokenAuth(HttpBearer):
    """`Authorization: Bearer <token>` that also requires a capability of the permission table.

    Sessions never authenticate API calls: only this header does. No token is 401; a role
    without the capability is 403 (the same table as the portal, docs/design.md#roles).
    """

    openapi_description = "An API token from Settings → API tokens (op_…)."

    def __init__(self, capability: Capability | None = None):
        super().__init__()
        self.capability = capability

    def __call__(self, request: HttpRequest) -> ApiPrincipal:
        # Parsed here rather than in HttpBearer, which logs the whole header in DEBUG.
        header = request.headers.get(self.header, "")
        scheme, _, token = header.strip().partition(" ")
        if not header:
            raise AuthenticationError(message=MISSING_TOKEN)
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError(message=INVALID_TOKEN)
        return self.authenticate(request, token.strip())

    def authenticate(self, request: HttpRequest, token: str) -> ApiPrincipal:
        try:
            principal = api_token_authenticate(token)
        except TokenRefused as refused:
            raise AuthenticationError(message=refused.message) from None
        # The request acts as the token's user in the token's tenant (also for the request log).
        # ninja passes the HttpRequest that went through our middleware: a PortalRequest.
        portal_request = cast(PortalRequest, request)
        portal_request.user = principal.user
        portal_request.tenant = principal.tenant
        portal_request.membership = principal.membership
        if self.capability is not None and not has_capability(
            principal.membership, self.capability
        ):
            raise AuthorizationError(
                message=f"Your role ({principal.membership.role}) does not allow this."
            )
        return principal


def requires(capability: Capability) -> dict[str, Any]:
    """Route options for an API operation: bearer token auth plus the capability, documented in
    the OpenAPI document (`x-required-capability`) so that tests can sweep every operation."""
    return {
        "auth": ApiTokenAuth(capability),
        "openapi_extra": {"x-required-capability": capability.value},
    }
