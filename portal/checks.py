"""Start-up checks (run by runserver, migrate, qcluster, check): development-only settings
refused in production."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

DEVELOPMENT_ONLY = {
    "WEBHOOK_ALLOWED_PRIVATE_TARGETS": "portal.E010",
    "WEBHOOK_ALLOW_HTTP": "portal.E011",
}


@register()
def development_settings_need_debug(app_configs=None, **kwargs) -> list[Error]:
    """Private targets and plain http let destinations reach internal services: with DEBUG
    off they are configuration mistakes, not options."""
    if settings.DEBUG:
        return []
    errors = []
    for name, check_id in DEVELOPMENT_ONLY.items():
        if getattr(settings, name):
            errors.append(
                Error(
                    f"{name} is set while DEBUG is off.",
                    hint=f"Unset {name} in production: it is for development and tests only.",
                    id=check_id,
                )
            )
    return errors
