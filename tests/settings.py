"""Test settings: the real settings with test-only keys (never used outside the suite)."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "dGVzdC1vbmx5LWZpZWxkLWtleS0wMDAwMDAwMDAwMDA=")
os.environ.setdefault("AUDIT_CHAIN_KEY", "test-only-audit-chain-key")
os.environ.setdefault("Q_CLUSTER_NAME", f"oneprotect-test-{os.getpid()}")

from portal.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, tests only

# Test teardown flushes tables with TRUNCATE: only test connections may truncate the audit log.
DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c oneprotect.audit_truncate=allow"  # noqa: F405
