from django.conf import settings

from portal.permissions import capabilities_for


def portal(request) -> dict:
    """Layout data: the current tenant, the switcher, role flags and deployment banners."""
    membership = getattr(request, "membership", None)
    return {
        "current_tenant": getattr(request, "tenant", None),
        "current_membership": membership,
        "user_memberships": getattr(request, "memberships", []),
        "can": capabilities_for(membership),
        "private_targets_allowed": getattr(settings, "WEBHOOK_ALLOWED_PRIVATE_TARGETS", []),
    }
