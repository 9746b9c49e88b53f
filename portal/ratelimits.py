"""Rate limits per API token and per user for costly actions: publishing events, test sends
and the signature checker (django-ratelimit's fixed windows in Django's cache). Over a limit
the answer is 429 with `Retry-After`."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django_ratelimit.core import get_usage

PUBLISH = "publish"
TEST_SEND = "test_send"
SIGNATURE_CHECK = "signature_check"


class RateLimited(Exception):
    """Over a limit: `retry_after` seconds until the window resets."""

    def __init__(self, retry_after: int):
        super().__init__(f"Too many requests: try again in {retry_after} s.")
        self.retry_after = retry_after


def check(request: HttpRequest, action: str, *, user_id: int, token_id: int | None = None):
    """Count one use of the action for the user (and the API token); raise RateLimited when
    either is over its limit (`RATE_LIMITS[action]`, e.g. "10/m")."""
    rate = settings.RATE_LIMITS[action]
    keys = [f"user:{user_id}"]
    if token_id is not None:
        keys.append(f"token:{token_id}")
    waits = []
    for key in keys:
        usage = get_usage(
            request,
            group=f"{action}:{key}",
            key=lambda group, req, key=key: key,
            rate=rate,
            increment=True,
        )
        if usage is not None and usage["should_limit"]:
            waits.append(max(1, int(usage["time_left"])))
    if waits:
        raise RateLimited(max(waits))


def too_many_requests(error: RateLimited, body: bytes | str = b"", **kwargs) -> HttpResponse:
    response = HttpResponse(
        body or f"Too many requests: try again in {error.retry_after} seconds.",
        status=429,
        **kwargs,
    )
    response["Retry-After"] = str(error.retry_after)
    return response
