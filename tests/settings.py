"""Test settings: the real settings with test-only keys (never used outside the suite)."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "dGVzdC1vbmx5LWZpZWxkLWtleS0wMDAwMDAwMDAwMDA=")
os.environ.setdefault("AUDIT_CHAIN_KEY", "test-only-audit-chain-key")
os.environ.setdefault("Q_CLUSTER_NAME", f"oneprotect-test-{os.getpid()}")

from portal.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, tests only

# Tests render pages without running collectstatic: plain storage (unhashed names) and
# WhiteNoise finding files in static/ as under runserver. The production storage is tested
# with a real collectstatic and gunicorn (tests/portal/test_production.py).
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

# Test teardown flushes tables with TRUNCATE: only test connections may truncate the audit log.
DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c oneprotect.audit_truncate=allow"  # noqa: F405
