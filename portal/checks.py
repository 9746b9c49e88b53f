"""System checks that stop start-up on a missing or dangerous production setting.

Django runs them before migrate, qcluster, runserver and check; the web processes run them
when they load (portal/wsgi.py). Each message names the environment variable to set. They
never show a secret's value.
"""

from __future__ import annotations

import binascii
import logging
from base64 import urlsafe_b64decode
from pathlib import Path

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

GENERATE = "Generate one with `manage.py generate_keys`."
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

logger = logging.getLogger(__name__)


def _secret_key() -> str:
    try:
        return settings.SECRET_KEY
    except ImproperlyConfigured:  # Django refuses to hand out an empty key
        return ""


def _is_fernet_key(value: str) -> bool:
    try:
        return len(urlsafe_b64decode(value.encode())) == 32
    except (binascii.Error, ValueError):
        return False


@checks.register(checks.Tags.security)
def check_keys(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """SECRET_KEY and FIELD_ENCRYPTION_KEYS: set, not the development ones, well formed."""
    errors: list[checks.CheckMessage] = []
    secret_key = _secret_key()
    if not settings.DEBUG and not secret_key:
        errors.append(
            checks.Error(
                "SECRET_KEY is not set; it is required when DEBUG is off.",
                hint=GENERATE,
                id="portal.E001",
            )
        )
    elif not settings.DEBUG and secret_key == settings.DEV_SECRET_KEY:
        errors.append(
            checks.Error(
                "SECRET_KEY is the development key, which is refused when DEBUG is off.",
                hint=GENERATE,
                id="portal.E002",
            )
        )
    keys = list(settings.FIELD_ENCRYPTION_KEYS)
    if not settings.DEBUG and not keys:
        errors.append(
            checks.Error(
                "FIELD_ENCRYPTION_KEYS is not set; it is required when DEBUG is off.",
                hint=GENERATE,
                id="portal.E003",
            )
        )
    if not settings.DEBUG and settings.DEV_FIELD_ENCRYPTION_KEY in keys:
        errors.append(
            checks.Error(
                "FIELD_ENCRYPTION_KEYS contains the development key, which is refused when "
                "DEBUG is off.",
                hint=GENERATE,
                id="portal.E004",
            )
        )
    chain_key = settings.AUDIT_CHAIN_KEY
    if not settings.DEBUG and not chain_key:
        errors.append(
            checks.Error(
                "AUDIT_CHAIN_KEY is not set; it is required when DEBUG is off.",
                hint=GENERATE + " Keep it stable: changing it breaks every audit chain.",
                id="portal.E013",
            )
        )
    elif not settings.DEBUG and chain_key == settings.DEV_AUDIT_CHAIN_KEY:
        errors.append(
            checks.Error(
                "AUDIT_CHAIN_KEY is the development key, which is refused when DEBUG is off.",
                hint=GENERATE,
                id="portal.E014",
            )
        )
    for position, key in enumerate(keys, start=1):
        if not _is_fernet_key(key):
            errors.append(
                checks.Error(
                    f"FIELD_ENCRYPTION_KEYS: key {position} of {len(keys)} is not a Fernet key "
                    "(32 url-safe base64-encoded bytes).",
                    hint=GENERATE,
                    id="portal.E005",
                )
            )
    return errors


@checks.register(checks.Tags.security)
def check_database_url(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """DATABASE_URL is set and names a PostgreSQL server (row locks, jsonb, triggers)."""
    engine = settings.DATABASES.get("default", {}).get("ENGINE", "")
    if not engine or engine.endswith(".dummy"):
        return [
            checks.Error(
                "DATABASE_URL is not set.",
                hint="Set DATABASE_URL=postgres://user:password@host:5432/name (`make run` and "
                "`make test` start an embedded PostgreSQL and set it).",
                id="portal.E006",
            )
        ]
    if engine != "django.db.backends.postgresql":
        return [
            checks.Error(
                f"DATABASE_URL must name a PostgreSQL database (it selects {engine}).",
                hint="Use a postgres:// URL; the portal needs PostgreSQL 14 or later.",
                id="portal.E007",
            )
        ]
    return []


@checks.register(checks.Tags.security)
def check_hosts_and_broker(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """ALLOWED_HOSTS names real hosts when DEBUG is off; REDIS_URL is a Redis URL."""
    errors: list[checks.CheckMessage] = []
    if not settings.DEBUG and not settings.ALLOWED_HOSTS:
        errors.append(
            checks.Error(
                "ALLOWED_HOSTS is empty; with DEBUG off every request would be refused.",
                hint="Set ALLOWED_HOSTS to the portal's host names, e.g. portal.example.com.",
                id="portal.E008",
            )
        )
    if not settings.DEBUG and "*" in settings.ALLOWED_HOSTS:
        errors.append(
            checks.Error(
                "ALLOWED_HOSTS contains '*', which turns off Host header validation.",
                hint="List the portal's host names (a leading dot allows subdomains: "
                ".example.com); health probes should send one of them as Host.",
                id="portal.E009",
            )
        )
    redis_url = settings.REDIS_URL
    if redis_url and not redis_url.startswith(REDIS_SCHEMES):
        errors.append(
            checks.Error(
                "REDIS_URL must start with redis://, rediss:// or unix://.",
                hint="For example REDIS_URL=redis://127.0.0.1:6379/0; leave it empty for the "
                "ORM broker.",
                id="portal.E010",
            )
        )
    return errors


def static_files_missing() -> str | None:
    """A sentence for the web processes' log when collectstatic has not been run, else None."""
    storage = settings.STORAGES.get("staticfiles", {}).get("BACKEND", "")
    if settings.DEBUG or "Manifest" not in storage:
        return None
    manifest = Path(settings.STATIC_ROOT) / "staticfiles.json"
    if manifest.is_file():
        return None
    return (
        f"Static files have not been collected: {manifest} is missing, so pages cannot be "
        "rendered. Run `manage.py collectstatic --noinput` (STATIC_ROOT) before starting "
        "the web processes."
    )


def refuse_to_start_on_errors() -> None:
    """Run every system check as manage.py runserver does; raise on any error (web processes)."""
    messages = checks.run_checks()
    serious = [message for message in messages if message.is_serious()]
    serious = [message for message in serious if not message.is_silenced()]
    if serious:
        raise ImproperlyConfigured(
            "Refusing to start:\n" + "\n".join(f"  {message}" for message in serious)
        )
    problem = static_files_missing()
    if problem:
        logger.error(problem)


DEVELOPMENT_ONLY = {
    "WEBHOOK_ALLOWED_PRIVATE_TARGETS": "portal.E011",
    "WEBHOOK_ALLOW_HTTP": "portal.E012",
}


@checks.register()
def development_settings_need_debug(app_configs=None, **kwargs) -> list[checks.Error]:
    """Private targets and plain http let destinations reach internal services: with DEBUG
    off they are configuration mistakes, not options."""
    if settings.DEBUG:
        return []
    errors = []
    for name, check_id in DEVELOPMENT_ONLY.items():
        if getattr(settings, name):
            errors.append(
                checks.Error(
                    f"{name} is set while DEBUG is off.",
                    hint=f"Unset {name} in production: it is for development and tests only.",
                    id=check_id,
                )
            )
    return errors
