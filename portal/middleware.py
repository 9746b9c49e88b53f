"""Request ids, the structured request log line, and the current tenant."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from django.http import HttpRequest
from django.http.response import HttpResponseBase

from portal.clientip import client_ip
from portal.http import PortalRequest
from portal.logging import client_var, request_id_var

logger = logging.getLogger("portal.request")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
TENANT_SESSION_KEY = "tenant_id"


class RequestIdMiddleware:
    """Give every request an id (kept for audit entries) and log one line for it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: PortalRequest) -> HttpResponseBase:
        incoming = request.headers.get("X-Request-ID", "")
        request.request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request.request_id)
        client_token = client_var.set(
            {
                "ip": client_ip(request),
                "user_agent": request.headers.get("User-Agent", "")[:400],
            }
        )
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request.request_id
            user = getattr(request, "user", None)
            tenant = getattr(request, "tenant", None)
            # The path only: query strings may carry tokens or personal data.
            logger.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    "user_id": user.pk if user is not None and user.is_authenticated else None,
                    "tenant": tenant.slug if tenant is not None else None,
                },
            )
            return response
        finally:
            request_id_var.reset(token)
            client_var.reset(client_token)


class TenantMiddleware:
    """Set request.tenant and request.membership from the session's chosen membership."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: PortalRequest) -> HttpResponseBase:
        request.tenant = None
        request.membership = None
        request.memberships = []
        if request.user.is_authenticated:
            memberships = list(request.user.memberships.select_related("tenant"))
            request.memberships = memberships
            wanted = request.session.get(TENANT_SESSION_KEY)
            chosen = next((m for m in memberships if m.tenant_id == wanted), None)
            if chosen is None and memberships:
                chosen = memberships[0]
            if chosen is not None:
                request.membership = chosen
                request.tenant = chosen.tenant
        return self.get_response(request)
