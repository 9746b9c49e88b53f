"""The delivery client keeps every guarantee of the SSRF guard (issue 11, point 2).

Each test sends with the real aiohttp client (:mod:`integrations.delivery.client`, through the
synchronous :class:`integrations.sender.Sender` or one :class:`AsyncSender`) to real servers on
127.0.0.1. Public-looking names resolve through a stub of ``url_safety.resolve_host``, and the
network guard (tests/integrations/conftest.py) refuses and records every other connect and
every name lookup, so a second lookup by aiohttp or a connection to a refused address fails
the test instead of reaching the network. No database is used.
"""

from __future__ import annotations

import asyncio
import datetime
import http.server
import ipaddress
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from socketserver import TCPServer
from types import SimpleNamespace
from typing import Any

import aiohttp.connector
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from integrations import url_safety
from integrations.delivery.client import RESPONSE_EXCERPT_BYTES, AsyncSender, Outcome
from integrations.delivery.sender import Sender
from integrations.delivery.signing import PreparedRequest
from integrations.models import ErrorKind
from tests.network import NetworkGuard

NAME = "pinned.example.test"
PUBLIC_V4 = "93.184.216.34"
HANDLER_LIMIT_SECONDS = 10  # no server thread outlives a test by more than this


pytestmark = pytest.mark.usefixtures("network_guard")


# --- DNS stub, destinations, requests ---------------------------------------------------------


class StubDNS:
    """Stands in for url_safety.resolve_host: answers from a table and counts every lookup."""

    def __init__(self) -> None:
        self.answers: dict[str, list[str]] = {}
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.answers[host])


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> StubDNS:
    stub = StubDNS()
    monkeypatch.setattr(url_safety, "resolve_host", stub)
    return stub


def destination(url: str, *, skip_tls_verify: bool = False, timeout: float = 5) -> Any:
    return SimpleNamespace(
        endpoint_url=url, skip_tls_verify=skip_tls_verify, timeout_seconds=timeout
    )


def prepared(body: bytes = b'{"events":[]}') -> PreparedRequest:
    headers = {"Content-Type": "application/json", "X-OneProtect-Test": "yes"}
    return PreparedRequest(body, headers, {"Content-Type": "application/json"}, uuid.uuid4())


def send(url: str, *, skip_tls_verify: bool = False, timeout: float = 5) -> Outcome:
    """One attempt through the synchronous wrapper the test send uses."""
    return Sender().send(
        destination(url, skip_tls_verify=skip_tls_verify, timeout=timeout), prepared()
    )


def allow(settings: Any, *ports: int) -> None:
    """Plain http allowed, and exactly 127.0.0.1:<port> for each port as a private target."""
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOWED_PRIVATE_TARGETS = [f"127.0.0.1:{port}" for port in ports]


# --- Loopback servers -------------------------------------------------------------------------


class LoopbackServer(http.server.ThreadingHTTPServer):
    """A loopback HTTP/1.1 server (optionally TLS) recording requests, TLS SNI and failures."""

    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.records: list[dict[str, Any]] = []
        self.sni: list[str | None] = []
        self.tls_failures: list[str] = []
        self.stopping = threading.Event()
        self.tls = tls
        if tls is not None:
            tls.sni_callback = self._record_sni
        super().__init__(("127.0.0.1", 0), Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a reverse DNS lookup we must not make.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def _record_sni(self, sslobj: Any, server_name: str | None, context: Any) -> None:
        self.sni.append(server_name)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is not None:
            request.settimeout(5)
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as error:
                self.tls_failures.append(type(error).__name__)
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer is expected here; keep the output quiet."""


class Handler(http.server.BaseHTTPRequestHandler):
    """What each path does: /ok, /redirect/<status>, /endless, /silent, /drip."""

    protocol_version = "HTTP/1.1"
    timeout = 5  # an idle keep-alive connection or a stuck write must not hold a thread

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if 0 < length <= 65536 else b""
        server: Any = self.server
        server.records.append(
            {
                "method": "POST",
                "request_line": self.requestline,
                "host": self.headers.get("Host"),
                "path": self.path,
                "body": body,
                "test_header": self.headers.get("X-OneProtect-Test"),
                "content_type": self.headers.get("Content-Type"),
                "client_port": self.client_address[1],
            }
        )
        if self.path.startswith("/redirect/"):
            self.answer(int(self.path.rsplit("/", 1)[1]), location=f"/ok?from={self.path}")
        elif self.path == "/endless":
            self.endless()
        elif self.path == "/silent":
            server.stopping.wait(HANDLER_LIMIT_SECONDS)
            self.close_connection = True
        elif self.path == "/drip":
            self.drip()
        else:
            self.answer(200)

    def do_CONNECT(self) -> None:
        """A proxy would be asked to tunnel https: record it and refuse."""
        server: Any = self.server
        server.records.append({"method": "CONNECT", "request_line": self.requestline})
        self.answer(405)

    def answer(self, status: int, location: str | None = None) -> None:
        payload = b"ok"
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def endless(self) -> None:
        """A body with no length that never ends, until the client hangs up (or 10 s)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        server: Any = self.server
        deadline = time.monotonic() + HANDLER_LIMIT_SECONDS
        chunk = b"x" * 4096
        try:
            while time.monotonic() < deadline and not server.stopping.is_set():
                self.wfile.write(chunk)
        except OSError:
            pass

    def drip(self) -> None:
        """The status line, one byte every 0.25 s (never completes within a test's timeout)."""
        server: Any = self.server
        self.close_connection = True
        try:
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[:40]:
                if server.stopping.wait(0.25):
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


@pytest.fixture
def make_server(network_guard: NetworkGuard) -> Iterator[Callable[..., LoopbackServer]]:
    """Start LoopbackServers on 127.0.0.1, the only addresses the guard lets through."""
    started: list[tuple[LoopbackServer, threading.Thread]] = []

    def make(tls: ssl.SSLContext | None = None) -> LoopbackServer:
        server = LoopbackServer(tls)
        network_guard.loopback_ports.add(server.server_port)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        started.append((server, thread))
        return server

    yield make
    for server, thread in started:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def server(make_server: Callable[..., LoopbackServer]) -> LoopbackServer:
    return make_server()


# --- (a) one lookup, pinned address, Host header ---------------------------------------------


def test_a_name_is_resolved_once_and_sent_to_the_checked_address_with_its_host(
    server: LoopbackServer, dns: StubDNS, settings: Any, network_guard: NetworkGuard
) -> None:
    port = server.server_port
    allow(settings, port)
    dns.answers[NAME] = ["127.0.0.1"]

    outcome = send(f"http://{NAME}:{port}/ok")

    assert (outcome.ok, outcome.status_code, outcome.error_kind) == (True, 200, ErrorKind.NONE)
    assert outcome.response_excerpt == "ok"
    [record] = server.records
    assert record["host"] == f"{NAME}:{port}"
    assert record["request_line"] == "POST /ok HTTP/1.1"  # origin form: no proxy in between
    assert (record["body"], record["test_header"]) == (b'{"events":[]}', "yes")
    # One lookup, by the guard; aiohttp never asked DNS (getaddrinfo) for the name itself.
    assert dns.calls == [(NAME, port)]
    assert network_guard.attempts == []


def test_every_attempt_checks_again_and_a_kept_alive_connection_is_no_way_around_it(
    server: LoopbackServer, dns: StubDNS, settings: Any, network_guard: NetworkGuard
) -> None:
    port = server.server_port
    allow(settings, port)
    dns.answers[NAME] = ["127.0.0.1"]
    url = f"http://{NAME}:{port}/ok"

    async def three_attempts() -> list[Outcome]:
        sender = AsyncSender()
        try:
            outcomes = [await sender.send(destination(url), prepared(), timeout=5)]
            outcomes.append(await sender.send(destination(url), prepared(), timeout=5))
            dns.answers[NAME] = ["10.0.0.7"]  # the name now points inside (DNS rebinding)
            outcomes.append(await sender.send(destination(url), prepared(), timeout=5))
            return outcomes
        finally:
            await sender.close()

    first, second, rebound = asyncio.run(three_attempts())

    assert (first.ok, second.ok) == (True, True)
    assert (rebound.ok, rebound.error_kind) == (False, ErrorKind.SSRF)
    assert rebound.detail == url_safety.SSRF_ERROR
    assert dns.calls == [(NAME, port)] * 3  # exactly one lookup per attempt
    assert [record["host"] for record in server.records] == [f"{NAME}:{port}"] * 2
    # The first two shared one kept-alive connection; the third was refused before using it.
    assert server.records[0]["client_port"] == server.records[1]["client_port"]
    assert network_guard.attempts == []


# --- (b) non-public addresses are refused before any connection --------------------------------


@pytest.mark.parametrize(
    "answers",
    [
        ["10.0.0.7"],
        ["169.254.169.254"],
        ["127.0.0.1"],  # loopback, and this port is not on the allow list
        ["::1"],
        ["::ffff:127.0.0.1"],
        ["fd00::1"],
        [PUBLIC_V4, "10.0.0.1"],  # one private answer is enough to refuse the name
    ],
)
def test_a_name_resolving_to_a_private_address_is_refused_without_connecting(
    answers: list[str], dns: StubDNS, network_guard: NetworkGuard
) -> None:
    dns.answers[NAME] = answers

    outcome = send(f"https://{NAME}/hook")

    assert (outcome.ok, outcome.status_code) == (False, None)
    assert (outcome.error_kind, outcome.detail) == (ErrorKind.SSRF, url_safety.SSRF_ERROR)
    assert dns.calls == [(NAME, 443)]
    assert network_guard.attempts == []  # no connect, no second lookup


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.7/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/hook",
        "https://127.0.0.1/hook",
        "https://2130706433/hook",  # 127.0.0.1 written as one number
        "https://localhost/hook",
        "https://user@hooks.example.com/hook",
    ],
)
def test_private_literals_and_local_names_are_refused_without_a_lookup(
    url: str, dns: StubDNS, network_guard: NetworkGuard
) -> None:
    outcome = send(url)

    assert (outcome.ok, outcome.error_kind) == (False, ErrorKind.SSRF)
    assert outcome.detail == url_safety.SSRF_ERROR
    assert dns.calls == []
    assert network_guard.attempts == []


def test_an_unresolvable_name_is_a_dns_failure_not_a_connection(
    dns: StubDNS, network_guard: NetworkGuard
) -> None:
    outcome = send("https://nxdomain.example.com/hook")

    assert (outcome.ok, outcome.error_kind) == (False, ErrorKind.DNS)
    assert dns.calls == [("nxdomain.example.com", 443)]
    assert network_guard.attempts == []


# --- (c) the dev allow-list is an exact address:port ---------------------------------------------


def test_the_allow_list_is_exact_a_listening_neighbour_port_is_refused(
    make_server: Callable[..., LoopbackServer],
    dns: StubDNS,
    settings: Any,
    network_guard: NetworkGuard,
) -> None:
    allowed, neighbour = make_server(), make_server()
    allow(settings, allowed.server_port)
    dns.answers[NAME] = ["127.0.0.1"]

    assert send(f"http://{NAME}:{allowed.server_port}/ok").ok
    for url in (
        f"http://{NAME}:{neighbour.server_port}/ok",
        f"http://127.0.0.1:{neighbour.server_port}/ok",
    ):
        outcome = send(url)
        assert (outcome.ok, outcome.error_kind) == (False, ErrorKind.SSRF), url

    # The neighbour listens and the guard would let a connection through: none was made.
    assert neighbour.records == []
    assert len(allowed.records) == 1
    assert network_guard.attempts == []


# --- (d) redirects are recorded, never followed ------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_recorded_and_not_followed(
    status: int, server: LoopbackServer, dns: StubDNS, settings: Any
) -> None:
    port = server.server_port
    allow(settings, port)
    dns.answers[NAME] = ["127.0.0.1"]

    outcome = send(f"http://{NAME}:{port}/redirect/{status}")

    assert (outcome.ok, outcome.status_code) == (False, status)
    assert (outcome.error_kind, outcome.transient) == (ErrorKind.REDIRECT, False)
    assert outcome.detail == f"Redirect to /ok?from=/redirect/{status} not followed."
    # The Location points back at this very server: following it would show a second request.
    assert [record["path"] for record in server.records] == [f"/redirect/{status}"]
    assert dns.calls == [(NAME, port)]


# --- (e) no proxy from the environment ----------------------------------------------------------


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_proxy_environment_variables_are_ignored(
    scheme: str,
    make_server: Callable[..., LoopbackServer],
    tls_contexts: Any,
    dns: StubDNS,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    network_guard: NetworkGuard,
) -> None:
    target = make_server(tls_contexts.server(NAME) if scheme == "https" else None)
    proxy = make_server()
    allow(settings, target.server_port)
    dns.answers[NAME] = ["127.0.0.1"]
    for variable in PROXY_VARIABLES + ("all_proxy",):
        monkeypatch.setenv(variable, f"http://127.0.0.1:{proxy.server_port}")
    for variable in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(variable, raising=False)

    outcome = send(f"{scheme}://{NAME}:{target.server_port}/ok", skip_tls_verify=True)

    assert (outcome.ok, outcome.status_code) == (True, 200)
    assert proxy.records == []  # neither a forwarded request nor a CONNECT tunnel
    [record] = target.records
    assert record["request_line"] == "POST /ok HTTP/1.1"
    assert record["host"] == f"{NAME}:{target.server_port}"
    assert network_guard.attempts == []


# --- (f) TLS: SNI and certificate checks use the host name ---------------------------------------


class TLSContexts:
    """A throwaway CA and server certificates signed by it, for loopback TLS servers."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "OneProtect test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key()), critical=False
            )
            .sign(self.ca_key, hashes.SHA256())
        )

    @property
    def ca_pem(self) -> str:
        return self.ca_cert.public_bytes(serialization.Encoding.PEM).decode()

    def server(self, dns_name: str) -> ssl.SSLContext:
        """A server context whose certificate names dns_name and the IP 127.0.0.1."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName(dns_name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                critical=False,
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        cert_file = self.directory / f"{dns_name}-{uuid.uuid4().hex}.pem"
        cert_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            + cert.public_bytes(serialization.Encoding.PEM)
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file)
        return context

    def trust(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make the client's verifying context trust this CA (and only this CA).

        aiohttp builds its default verifying context once, at import, as
        ``aiohttp.connector._SSL_CONTEXT_VERIFIED`` and hands it to every ``ssl=True``
        request; swapping that module attribute is the one seam. monkeypatch raises if the
        attribute disappears, and test_a_trusted_certificate_for_the_name_is_accepted fails
        if aiohttp stops using it, so this cannot silently test nothing.
        """
        context = ssl.create_default_context(cadata=self.ca_pem)
        context.set_alpn_protocols(["http/1.1"])
        monkeypatch.setattr(aiohttp.connector, "_SSL_CONTEXT_VERIFIED", context)


@pytest.fixture(scope="module")
def tls_contexts(tmp_path_factory: pytest.TempPathFactory) -> TLSContexts:
    return TLSContexts(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_server(
    make_server: Callable[..., LoopbackServer],
    tls_contexts: TLSContexts,
    dns: StubDNS,
    settings: Any,
) -> LoopbackServer:
    """An https server for NAME on 127.0.0.1, allowed and pinned."""
    server = make_server(tls_contexts.server(NAME))
    allow(settings, server.server_port)
    dns.answers[NAME] = ["127.0.0.1"]
    return server


def test_an_untrusted_certificate_fails_as_tls_and_sni_is_the_host_name(
    tls_server: LoopbackServer, network_guard: NetworkGuard
) -> None:
    outcome = send(f"https://{NAME}:{tls_server.server_port}/ok")

    assert (outcome.ok, outcome.error_kind, outcome.status_code) == (False, ErrorKind.TLS, None)
    assert tls_server.sni == [NAME]
    assert tls_server.records == []  # nothing was sent over the unverified connection
    assert network_guard.attempts == []


def test_skip_tls_verify_accepts_the_certificate_and_still_sends_sni(
    tls_server: LoopbackServer, network_guard: NetworkGuard
) -> None:
    outcome = send(f"https://{NAME}:{tls_server.server_port}/ok", skip_tls_verify=True)

    assert (outcome.ok, outcome.status_code) == (True, 200)
    assert tls_server.sni == [NAME]
    assert [record["host"] for record in tls_server.records] == [f"{NAME}:{tls_server.server_port}"]
    assert network_guard.attempts == []


def test_a_trusted_certificate_for_the_name_is_accepted(
    tls_server: LoopbackServer,
    tls_contexts: TLSContexts,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tls_contexts.trust(monkeypatch)

    outcome = send(f"https://{NAME}:{tls_server.server_port}/ok")

    assert (outcome.ok, outcome.status_code) == (True, 200)
    assert tls_server.sni == [NAME]


def test_a_trusted_certificate_for_another_name_fails_the_hostname_check(
    make_server: Callable[..., LoopbackServer],
    tls_contexts: TLSContexts,
    dns: StubDNS,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Trusted, and valid for 127.0.0.1, the address connected to: only the name is wrong.
    server = make_server(tls_contexts.server("other.example.test"))
    allow(settings, server.server_port)
    dns.answers[NAME] = ["127.0.0.1"]
    tls_contexts.trust(monkeypatch)

    outcome = send(f"https://{NAME}:{server.server_port}/ok")

    assert (outcome.ok, outcome.error_kind) == (False, ErrorKind.TLS)
    assert server.sni == [NAME]
    assert server.records == []


# --- (g) bounded reads and a hard deadline -------------------------------------------------------


def test_an_endless_body_is_cut_at_the_excerpt_bound(
    server: LoopbackServer, dns: StubDNS, settings: Any
) -> None:
    allow(settings, server.server_port)
    dns.answers[NAME] = ["127.0.0.1"]

    outcome = send(f"http://{NAME}:{server.server_port}/endless", timeout=3)

    # Draining the body would run into the 3 s timeout instead of answering 200.
    assert (outcome.ok, outcome.status_code, outcome.error_kind) == (True, 200, ErrorKind.NONE)
    assert outcome.response_excerpt == "x" * RESPONSE_EXCERPT_BYTES
    assert outcome.duration_ms < 3000


@pytest.mark.parametrize("path", ["/silent", "/drip"])
def test_a_receiver_that_never_answers_is_bounded_by_the_timeout(
    path: str, server: LoopbackServer, dns: StubDNS, settings: Any
) -> None:
    allow(settings, server.server_port)
    dns.answers[NAME] = ["127.0.0.1"]

    started = time.monotonic()
    outcome = send(f"http://{NAME}:{server.server_port}{path}", timeout=1)
    elapsed = time.monotonic() - started

    assert (outcome.ok, outcome.error_kind, outcome.transient) == (False, ErrorKind.TIMEOUT, True)
    assert 900 <= outcome.duration_ms <= 2000  # the timeout, plus at most 1 s
    assert elapsed <= 2.0
    assert len(server.records) == 1  # the request arrived; only the answer never came


def test_a_loop_send_lets_the_body_go_once_written_and_the_receiver_gets_all_of_it(
    server: LoopbackServer, settings: Any
) -> None:
    """The delivery loop's sends (release_body) keep no body while they wait for the answer;
    what the receiver reads is byte for byte the body, with its Content-Length and type."""
    allow(settings, server.server_port)
    body = b'{"events":[' + b",".join(b'{"n":%d}' % n for n in range(5000)) + b"]}"
    request = prepared(body)

    async def once() -> Outcome:
        sender = AsyncSender()
        try:
            url = f"http://127.0.0.1:{server.server_port}/ok"
            return await sender.send(destination(url), request, timeout=5, release_body=True)
        finally:
            await sender.close()

    outcome = asyncio.run(once())
    assert outcome.ok
    assert request.body == b""  # handed over and dropped
    [record] = server.records
    assert record["body"] == body
    assert record["content_type"] == "application/json"
