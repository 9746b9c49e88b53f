"""The client's address behind `PROXY_COUNT` reverse proxies (django-ipware), for sign-in
throttling (django-axes) and audit entries: one answer everywhere."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from ipware.ip import get_client_ip


def client_ip(request: HttpRequest) -> str | None:
    """With no proxy, the connection's address only (a client-sent X-Forwarded-For is ignored).

    Behind N proxies each appends the address it saw, the last one being REMOTE_ADDR; the
    client is the entry the first proxy appended. Addresses a client prepends are ignored
    (python-ipware counts the proxies from the right: `strict=False` tolerates the extra
    entries, `proxy_count` the N-1 proxies listed after the client)."""
    remote = request.META.get("REMOTE_ADDR") or None
    proxies = settings.PROXY_COUNT
    if proxies <= 0:
        return remote
    address, _ = get_client_ip(
        request,
        proxy_order="left-most",
        proxy_count=proxies - 1,
        request_header_order=["HTTP_X_FORWARDED_FOR"],
        strict=False,
    )
    return address or remote
