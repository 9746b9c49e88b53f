"""The permission table (docs/design.md#roles) and the one decorator that enforces it for every
view."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from functools import wraps
from typing import Any, Protocol, cast

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseNotAllowed
from django.http.response import HttpResponseBase

from portal.http import PortalRequest
from portal.models import Membership, Role


class Capability(StrEnum):
    VIEW_INTEGRATIONS = "view_integrations"
    VIEW_DELIVERIES = "view_deliveries"
    MANAGE_DESTINATIONS = "manage_destinations"
    VIEW_AUDIT = "view_audit"
    EXPORT_AUDIT = "export_audit"
    USE_API_TOKENS = "use_api_tokens"


ALL_ROLES = frozenset(Role)

PERMISSIONS: dict[Capability, frozenset[str]] = {
    Capability.VIEW_INTEGRATIONS: ALL_ROLES,
    Capability.VIEW_DELIVERIES: ALL_ROLES,
    Capability.MANAGE_DESTINATIONS: frozenset({Role.ADMIN}),
    Capability.VIEW_AUDIT: ALL_ROLES,
    Capability.EXPORT_AUDIT: frozenset({Role.ADMIN, Role.AUDITOR}),
    Capability.USE_API_TOKENS: ALL_ROLES,
}


def has_capability(membership: Membership | None, capability: Capability) -> bool:
    """Whether the membership's role grants the capability."""
    return membership is not None and membership.role in PERMISSIONS[capability]


def capabilities_for(membership: Membership | None) -> dict[str, bool]:
    """Flags for templates (`perms_can.manage_destinations`); the server always checks again."""
    return {cap.value: has_capability(membership, cap) for cap in Capability}


class GuardedView(Protocol):
    """A view behind require_capability, saying what it requires (the permission sweep reads it)."""

    required_capability: Capability
    post_only: bool

    def __call__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase: ...


View = Callable[..., HttpResponseBase]


def require_capability(
    capability: Capability, *, post_only: bool = False
) -> Callable[[View], GuardedView]:
    """Sign-in, a current tenant and the capability are required; else login, 403.

    With post_only the view answers 405 to anything but POST (after the sign-in check), so a
    role without the capability gets 403 for a POST and nobody can change data with a GET.
    """

    def decorator(view: View) -> GuardedView:
        @wraps(view)
        def wrapped(request: PortalRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if post_only and request.method != "POST":
                if not request.user.is_authenticated:
                    return redirect_to_login(request.get_full_path())
                return HttpResponseNotAllowed(["POST"])
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if request.membership is None:
                raise PermissionDenied("You are not a member of any tenant.")
            if not has_capability(request.membership, capability):
                raise PermissionDenied("Your role does not allow this.")
            return view(request, *args, **kwargs)

        # A function object takes attributes; the Protocol lets mypy know these two.
        guarded = cast(GuardedView, wrapped)
        guarded.required_capability = capability  # read by the permission sweep tests
        guarded.post_only = post_only
        return guarded

    return decorator
