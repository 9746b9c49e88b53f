"""The HTTP client of the delivery loop: aiohttp, pinned to the addresses the SSRF guard checked.

One attempt = :meth:`AsyncSender.send`: resolve and check the URL once
(:func:`integrations.url_safety.check_url`), connect only to an address that was checked (a
resolver that answers from those pins, no DNS cache, no second lookup), keep the host name for
the Host header, TLS SNI and the certificate check, never follow a redirect, never use a proxy
from the environment, and read at most 4 KiB of the response. The whole attempt (DNS, connect,
TLS, request, headers, excerpt) runs under one deadline, so a receiver that drips its status
line a byte at a time cannot hold a send past the destination's timeout. Every way out of an
attempt, an exception nobody foresaw included, is an :class:`Outcome`; nothing is raised.
"""

from __future__ import annotations

import asyncio
import codecs
import errno
import ipaddress
import logging
import socket
import ssl
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiohttp.payload
from aiohttp.abc import AbstractResolver, ResolveResult
from django.conf import settings
from django.utils import timezone

from integrations import url_safety
from integrations.models import ErrorKind

logger = logging.getLogger("integrations.delivery")

RESPONSE_EXCERPT_BYTES = 4096
# Host name lookups are blocking calls: a pool of their own, so that slow DNS for one
# destination never queues behind the default executor's few threads.
_DNS_POOL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="webhook-dns")


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
    interrupted: bool = False  # cut short by our own shutdown: retried at once


def classify_status(status: int) -> tuple[bool, bool, str]:
    """(ok, transient, error_kind) for an HTTP status."""
    if 200 <= status < 300:
        return True, False, ErrorKind.NONE
    if status >= 500 or status in (408, 429):
        return False, True, ErrorKind.HTTP
    if 300 <= status < 400:
        return False, False, ErrorKind.REDIRECT
    return False, False, ErrorKind.HTTP


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None when unusable."""
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
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, min(seconds, float(settings.WEBHOOK_RETRY_AFTER_CAP)))


def decode_excerpt(data: bytes, charset: str | None) -> str:
    """Text of a response excerpt; an unknown or hostile charset falls back to UTF-8."""
    encoding = "utf-8"
    if charset:
        try:
            encoding = codecs.lookup(charset).name
        except (LookupError, ValueError, TypeError):
            encoding = "utf-8"
    try:
        text = data.decode(encoding, errors="replace")
    except Exception:  # a codec that misbehaves on these bytes
        text = data.decode("utf-8", errors="replace")
    return text.replace("\x00", "")


def classify_exception(error: BaseException) -> tuple[str, str, bool]:
    """(error_kind, detail, transient) for anything an attempt raised."""
    if isinstance(error, TimeoutError | asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return ErrorKind.TIMEOUT, "The endpoint did not answer within the timeout.", True
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return ErrorKind.DNS, "The host name could not be resolved.", True
    if isinstance(
        error,
        aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError | ssl.SSLError,
    ):
        return ErrorKind.TLS, "TLS handshake or certificate verification failed.", True
    if isinstance(error, aiohttp.ClientConnectorError):
        if getattr(error, "os_error", None) and error.os_error.errno == errno.ECONNREFUSED:
            return ErrorKind.CONNECT, "Connection refused by the endpoint.", True
        return ErrorKind.CONNECT, "Could not connect to the endpoint.", True
    if isinstance(
        error,
        aiohttp.ServerDisconnectedError | aiohttp.ClientOSError | ConnectionError,
    ):
        return ErrorKind.CONNECT, "The connection was reset by the endpoint.", True
    if isinstance(error, aiohttp.ClientResponseError):
        return ErrorKind.OTHER, "The endpoint sent an invalid HTTP response.", True
    if isinstance(error, aiohttp.ClientPayloadError):
        return ErrorKind.CONNECT, "The response was cut short by the endpoint.", True
    # Anything else is still one failed attempt that counts toward the limit.
    return ErrorKind.OTHER, f"Unexpected error during the attempt ({type(error).__name__}).", True


class PinnedResolver(AbstractResolver):
    """Answers only with addresses that check_url approved; never asks DNS itself."""

    def __init__(self) -> None:
        self._pins: dict[tuple[str, int], tuple[str, ...]] = {}

    def pin(self, target: url_safety.CheckedTarget) -> None:
        # Every address of a checked target passed the guard, so any of them is safe to use.
        self._pins[(target.host, target.port)] = target.addresses
        if len(self._pins) > 10_000:  # bounded: forget the oldest half
            for key in list(self._pins)[:5_000]:
                self._pins.pop(key, None)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self._pins.get((host.rstrip("."), port))
        if not addresses:
            raise OSError(f"{host}:{port} was not checked by the SSRF guard")
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        self._pins.clear()


def _is_literal(url: str) -> bool:
    try:
        host = urlsplit(url).hostname or ""
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _SentOnce(aiohttp.payload.BytesPayload):
    """A request body that lets its bytes go once they are written: a send waiting for a slow
    receiver's answer keeps its place in flight, not its body (500 streams of batches of 100
    would otherwise hold 50 MB for as long as their receivers take)."""

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        value, self._value = self._value, b""
        await writer.write(value if content_length is None else value[:content_length])

    async def write(self, writer: Any) -> None:
        await self.write_with_length(writer, None)


class AsyncSender:
    """Sends attempts from one event loop over one kept-alive, SSRF-pinned connection pool."""

    def __init__(self) -> None:
        self._resolver = PinnedResolver()
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=self._resolver,
                use_dns_cache=False,  # every new connection asks the pins, never a cache
                limit=0,  # the loop bounds sends in flight itself
                limit_per_host=0,
                keepalive_timeout=30,
                enable_cleanup_closed=True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,  # never route webhooks through an environment proxy
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,  # we keep 4 KiB of whatever came, decompressed or not
                skip_auto_headers=("Accept-Encoding",),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def check(self, url: str) -> url_safety.CheckedTarget:
        """check_url off the event loop (the lookup blocks); literals need no lookup."""
        if _is_literal(url):
            return url_safety.check_url(url)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_DNS_POOL, url_safety.check_url, url)

    async def send(
        self, destination: Any, request: Any, *, timeout: float, release_body: bool = False
    ) -> Outcome:
        """One attempt within `timeout` seconds, whatever the receiver does. With
        `release_body` the request's body is handed over and dropped once written (the
        delivery loop sends each prepared request once)."""
        started_at = timezone.now()
        clock = time.perf_counter()

        def finish(**kwargs: Any) -> Outcome:
            return Outcome(
                started_at=started_at,
                duration_ms=int((time.perf_counter() - clock) * 1000),
                delivery_uuid=request.delivery_uuid,
                request_headers=request.shown_headers,
                **kwargs,
            )

        try:
            async with asyncio.timeout(timeout):
                return await self._attempt(destination, request, timeout, finish, release_body)
        except url_safety.UnsafeURLError as error:
            if error.code == "unresolvable":
                return finish(ok=False, transient=True, error_kind=ErrorKind.DNS, detail=str(error))
            return finish(
                ok=False, transient=True, error_kind=ErrorKind.SSRF, detail=url_safety.SSRF_ERROR
            )
        except asyncio.CancelledError:
            raise  # the loop is stopping; it records the interruption itself
        except Exception as error:  # every failure is an attempt, never an exception
            kind, detail, transient = classify_exception(error)
            return finish(ok=False, transient=transient, error_kind=kind, detail=detail)

    async def _attempt(
        self, destination: Any, request: Any, timeout: float, finish, release_body: bool = False
    ) -> Outcome:
        target = await self.check(destination.endpoint_url)
        self._resolver.pin(target)
        data: Any = request.body
        if release_body:
            data, request.body = _SentOnce(request.body), b""
        async with self._client().post(
            target.url,
            data=data,
            headers=request.headers,
            allow_redirects=False,
            ssl=False if destination.skip_tls_verify else True,
            timeout=aiohttp.ClientTimeout(total=timeout),
            proxy=None,
        ) as response:
            excerpt, complete = await self._read_excerpt(response)
            if not complete:
                response.close()  # never drain an endless body: drop the connection
            status = response.status
            ok, transient, kind = classify_status(status)
            retry_after = (
                parse_retry_after(response.headers.get("Retry-After")) if transient else None
            )
            detail = ""
            if kind == ErrorKind.REDIRECT:
                location = response.headers.get("Location", "?")[:200]
                detail = f"Redirect to {location} not followed."
            return finish(
                ok=ok,
                transient=transient,
                status_code=status,
                error_kind=kind,
                detail=detail,
                response_excerpt=decode_excerpt(excerpt, response.charset),
                retry_after=retry_after,
            )

    @staticmethod
    async def _read_excerpt(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
        """At most 4 KiB of the body, and whether the body ended within it."""
        chunks: list[bytes] = []
        size = 0
        try:
            while size < RESPONSE_EXCERPT_BYTES:
                chunk = await response.content.read(RESPONSE_EXCERPT_BYTES - size)
                if not chunk:
                    return b"".join(chunks), True
                chunks.append(chunk)
                size += len(chunk)
        except (aiohttp.ClientError, OSError):
            return b"".join(chunks), False  # a body cut short still leaves the status we got
        return b"".join(chunks), response.content.at_eof()
