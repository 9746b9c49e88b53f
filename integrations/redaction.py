"""Keeping secrets write-only where they could leak back: response excerpts that echo them,
and endpoint URLs whose query strings often hold API keys. Pure helpers, no I/O, except
`mask_excerpt_for`, which loads one destination's secrets when there is something to mask."""

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


def mask_excerpt_for(destination, excerpt: str) -> str:
    """`mask_echoed_secrets` with the destination's secrets. `destination` is a Destination
    or its id (then it is loaded only when the excerpt could hold a secret)."""
    if not excerpt or len(excerpt) < MIN_MASKED_LENGTH:
        return excerpt
    from integrations.models import Destination

    if not isinstance(destination, Destination):
        destination = Destination.objects.filter(pk=destination).first()
    if destination is None:
        return excerpt
    return mask_echoed_secrets(excerpt, destination_secret_values(destination))


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
