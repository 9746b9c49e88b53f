"""Redirects to a user-supplied `next`: only to a local path on this host, never elsewhere."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseRedirect
from django.utils.http import url_has_allowed_host_and_scheme


def local_next(request: HttpRequest, value: str | None) -> str | None:
    """The value when it is a path on this site (`/...`), else None."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return None
    if not url_has_allowed_host_and_scheme(
        value, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return None
    return value


def redirect_to_next(request: HttpRequest, fallback: str) -> HttpResponseRedirect:
    """Back to the posted `next` when it is local, else to the fallback URL."""
    return HttpResponseRedirect(local_next(request, request.POST.get("next")) or fallback)
