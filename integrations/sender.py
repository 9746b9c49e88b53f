"""The one HTTP seam: send a prepared request to a destination and classify the outcome."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime

import requests
from django.conf import settings
from django.utils import timezone

from integrations import url_safety
from integrations.models import Destination, ErrorKind
from integrations.signing import PreparedRequest

RESPONSE_EXCERPT_BYTES = 4096


@dataclass
class Outcome:
    """What one attempt came to. `transient` outcomes are retried; the rest are final."""

    ok: bool
    transient: bool
    started_at: datetime
    duration_ms: int
    delivery_uuid: uuid.UUID
    status_code: int | None = None
    error_kind: str = ErrorKind.NONE
    detail: str = ""
    response_excerpt: str = ""
    retry_after: float | None = None
    request_headers: dict[str, str] = field(default_factory=dict)


def classify_status(status: int) -> tuple[bool, bool, str]:
    """(ok, transient, error_kind) for an HTTP status (SPEC §5)."""
    if 200 <= status < 300:
        return True, False, ErrorKind.NONE
    if status >= 500 or status in (408, 429):
        return False, True, ErrorKind.HTTP
    if 300 <= status < 400:
        return False, False, ErrorKind.REDIRECT
    return False, False, ErrorKind.HTTP


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), capped by settings."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - timezone.now()).total_seconds()
        except (TypeError, ValueError, OverflowError):
            return None
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(seconds, float(settings.WEBHOOK_RETRY_AFTER_CAP)))


def _classify_exception(error: Exception) -> tuple[str, str]:
    text = str(error)
    if isinstance(error, requests.exceptions.SSLError):
        return ErrorKind.TLS, "TLS handshake or certificate verification failed."
    if isinstance(error, requests.exceptions.Timeout):
        return ErrorKind.TIMEOUT, "The endpoint did not answer within the timeout."
    if isinstance(error, requests.exceptions.ConnectionError):
        if "Name or service not known" in text or "NameResolution" in text:
            return ErrorKind.DNS, "The host name could not be resolved."
        if "refused" in text.lower():
            return ErrorKind.CONNECT, "Connection refused by the endpoint."
        if "reset" in text.lower() or "aborted" in text.lower():
            return ErrorKind.CONNECT, "The connection was reset by the endpoint."
        return ErrorKind.CONNECT, "Could not connect to the endpoint."
    return ErrorKind.OTHER, type(error).__name__


class Sender:
    """Sends with requests, keeping one kept-alive session per destination."""

    def __init__(self) -> None:
        self._sessions: dict[object, tuple[requests.Session, url_safety.PinnedHTTPAdapter]] = {}

    def _session_for(self, destination: Destination, target) -> requests.Session:
        key = (destination.pk, target.address, target.port, destination.skip_tls_verify)
        cached = self._sessions.get(key)
        if cached is None:
            for old_key in [k for k in self._sessions if k[0] == destination.pk]:
                self._sessions.pop(old_key)[0].close()
            session = requests.Session()
            session.trust_env = False  # never route webhooks through an environment proxy
            adapter = url_safety.PinnedHTTPAdapter(target)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            cached = (session, adapter)
            self._sessions[key] = cached
        session, adapter = cached
        adapter.pin(target)
        return session

    def close(self) -> None:
        for session, _ in self._sessions.values():
            session.close()
        self._sessions.clear()

    def send(
        self, destination: Destination, request: PreparedRequest, *, timeout: float | None = None
    ) -> Outcome:
        """One attempt: resolve and check once, connect to the checked address, read ≤ 4 KiB."""
        timeout = float(timeout or destination.timeout_seconds)
        started_at = timezone.now()
        clock = time.perf_counter()

        def finish(**kwargs) -> Outcome:
            return Outcome(
                started_at=started_at,
                duration_ms=int((time.perf_counter() - clock) * 1000),
                delivery_uuid=request.delivery_uuid,
                request_headers=request.shown_headers,
                **kwargs,
            )

        try:
            target = url_safety.check_url(destination.endpoint_url)
        except url_safety.UnsafeURLError as error:
            if error.code == "unresolvable":
                return finish(ok=False, transient=True, error_kind=ErrorKind.DNS, detail=str(error))
            return finish(
                ok=False, transient=True, error_kind=ErrorKind.SSRF, detail=url_safety.SSRF_ERROR
            )
        session = self._session_for(destination, target)
        try:
            response = session.post(
                target.url,
                data=request.body,
                headers=request.headers,
                timeout=(min(timeout, 10.0), timeout),
                allow_redirects=False,
                stream=True,
                verify=not destination.skip_tls_verify,
            )
        except Exception as error:  # every transport failure is recorded, never raised
            kind, detail = _classify_exception(error)
            return finish(
                ok=False, transient=kind != ErrorKind.OTHER, error_kind=kind, detail=detail
            )
        try:
            excerpt = self._read_excerpt(response, deadline=clock + timeout)
        finally:
            response.close()
        ok, transient, kind = classify_status(response.status_code)
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if transient else None
        detail = ""
        if kind == ErrorKind.REDIRECT:
            detail = f"Redirect to {response.headers.get('Location', '?')[:200]} not followed."
        return finish(
            ok=ok,
            transient=transient,
            status_code=response.status_code,
            error_kind=kind,
            detail=detail,
            response_excerpt=excerpt,
            retry_after=retry_after,
        )

    @staticmethod
    def _read_excerpt(response: requests.Response, *, deadline: float) -> str:
        """At most 4 KiB of the body, within the attempt's deadline; never the whole stream."""
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(chunk_size=1024):
                chunks.append(chunk)
                size += len(chunk)
                if size >= RESPONSE_EXCERPT_BYTES or time.perf_counter() > deadline:
                    break
        except (requests.exceptions.RequestException, OSError):
            pass  # a body cut short still leaves the status we got
        data = b"".join(chunks)[:RESPONSE_EXCERPT_BYTES]
        return data.decode(response.encoding or "utf-8", errors="replace").replace("\x00", "")


_sender: Sender | None = None


def get_sender() -> Sender:
    """The process's sender (keep-alive sessions live as long as the worker)."""
    global _sender
    if _sender is None:
        _sender = Sender()
    return _sender
