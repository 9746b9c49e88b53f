"""Reads of the portal app: a user's API tokens within a tenant."""

from __future__ import annotations

from django.shortcuts import get_object_or_404

from portal.models import ApiToken, Tenant, User


def api_token_list(*, tenant: Tenant, user: User) -> list[ApiToken]:
    """The user's tokens in the tenant, newest first: nobody sees another's tokens."""
    return list(ApiToken.objects.for_tenant(tenant).filter(user=user))


def api_token_get(*, tenant: Tenant, user: User, pk) -> ApiToken:
    """One of the user's own tokens in the tenant, or Http404 (anyone else's is not found)."""
    return get_object_or_404(ApiToken.objects.for_tenant(tenant).filter(user=user), pk=pk)
