"""Print a fresh SECRET_KEY, FIELD_ENCRYPTION_KEYS and AUDIT_CHAIN_KEY as environment-file lines.

It runs before any key exists (no system checks, no database), so it is the first step of a
production install: `manage.py generate_keys >> /etc/oneprotect/oneprotect.env`.
"""

from __future__ import annotations

import secrets

from cryptography.fernet import Fernet
from django.core.management.base import BaseCommand


def new_secret_key() -> str:
    """67 url-safe characters (50 random bytes): nothing to quote in an environment file."""
    return secrets.token_urlsafe(50)


def new_field_encryption_key() -> str:
    return Fernet.generate_key().decode()


class Command(BaseCommand):
    help = (
        "Print a fresh SECRET_KEY and FIELD_ENCRYPTION_KEYS (environment-file lines). "
        "Keep them secret and backed up: losing FIELD_ENCRYPTION_KEYS loses every stored "
        "signing secret."
    )
    requires_system_checks = []

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--encryption-key-only",
            action="store_true",
            help="Print only a new Fernet key, to put first in FIELD_ENCRYPTION_KEYS when "
            "rotating (then run rotate_encryption_keys).",
        )

    def handle(self, *args, encryption_key_only: bool, **options) -> None:
        if encryption_key_only:
            self.stdout.write(new_field_encryption_key())
            return
        self.stdout.write(f"SECRET_KEY={new_secret_key()}")
        self.stdout.write(f"FIELD_ENCRYPTION_KEYS={new_field_encryption_key()}")
        self.stdout.write(f"AUDIT_CHAIN_KEY={new_secret_key()}")
