"""Encryption at rest for signing secrets and custom header values (MultiFernet)."""

from __future__ import annotations

import json
import secrets
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def fernet() -> MultiFernet:
    """The configured keys; the first one encrypts, every one decrypts."""
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken as error:
        raise ValueError("A stored secret cannot be decrypted with the configured keys.") from error


def rotate(token: str) -> str:
    """Re-encrypt a stored value under the first key."""
    return fernet().rotate(token.encode()).decode()


def encrypt_json(value) -> str:
    return encrypt(json.dumps(value, separators=(",", ":")))


def decrypt_json(token: str):
    return json.loads(decrypt(token)) if token else None


def generate_secret() -> str:
    """A strong signing secret: 32 random bytes, hex."""
    return secrets.token_hex(32)
