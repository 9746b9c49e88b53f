"""Keeping secrets write-only where they could leak back: response excerpts that echo them,
and endpoint URLs whose query strings often hold API keys. Pure helpers, no I/O (the delivery
engine loads a destination's secrets only when an excerpt could hold one: see
`integrations.delivery.record.mask_excerpt_for`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

QUERY_MASK = "••••"
EXCERPT_MASK = "••••••••"
# Shorter values (a header "1" or "on") are not secrets and would mask half the text.
MIN_MASKED_LENGTH = 6


def mask_echoed_secrets(text: str, secrets: Iterable[str]) -> str:
    """The text with every occurrence of a secret (as is, or JSON-escaped) masked."""
    if not text:
        return text
    forms: set[str] = set()
    for secret in secrets:
        if not secret or len(secret) < MIN_MASKED_LENGTH:
            continue
        forms.add(secret)
        forms.add(json.dumps(secret)[1:-1])  # as a JSON string echoing the header would hold it
    for form in sorted(forms, key=len, reverse=True):  # longest first: no partial leftovers
        text = text.replace(form, EXCERPT_MASK)
    return text


def destination_secret_values(destination) -> list[str]:
    """Every value a receiver could echo: the secret(s) (the Splunk token) and header values."""
    values = [destination.secret(), *destination.custom_headers().values()]
    previous = destination.previous_secret()
    if previous:
        values.append(previous)
    return values


def mask_query(url: str) -> str:
    """`https://h/p?key=••••&b=••••`: the parameter names stay, every value is masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("?", 1)[0]
    if not parts.query and not parts.fragment:
        return url
    masked = "&".join(
        f"{pair.split('=', 1)[0]}={QUERY_MASK}" if pair else "" for pair in parts.query.split("&")
    )
    return urlunsplit((parts.scheme, parts.netloc, parts.path, masked, ""))


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ("", url, None)
    scheme = parts.scheme.lower()
    default = {"https": 443, "http": 80}.get(scheme)
    return (scheme, (parts.hostname or "").lower(), port or default)
