"""No network in tests: the guard behind the `no_network` and `network_guard` fixtures.

`install_network_guard` makes every socket connect and every name lookup fail the test
(`NetworkBlocked`) and records it; only 127.0.0.1 ports of a test's own loopback servers,
added to `guard.loopback_ports`, get through. `block_network` adds to that what the portal and
API tests need: `url_safety.resolve_host` answers from `DNS` below, and nothing is queued to
django-q2. The fixtures themselves are in tests/conftest.py.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from integrations import url_safety

DNS = {
    "hooks.example.com": ["93.184.216.34"],
    "other.example.com": ["93.184.216.35"],
    "internal.example.com": ["10.1.2.3"],
}


class NetworkBlocked(AssertionError):
    """Raised by the guard; an AssertionError so `except OSError` in library code can't hide it."""


class NetworkGuard:
    """Records every attempted connect or lookup; only listed 127.0.0.1 ports get through."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, Any]] = []
        self.loopback_ports: set[int] = set()

    def allows(self, address: Any) -> bool:
        """True only for ('127.0.0.1', port) of a test server this test started."""
        return (
            isinstance(address, tuple)
            and len(address) == 2
            and address[0] == "127.0.0.1"
            and address[1] in self.loopback_ports
        )

    def block(self, kind: str, target: Any) -> NetworkBlocked:
        """Record the attempt and build the exception to raise."""
        self.attempts.append((kind, target))
        return NetworkBlocked(f"network access attempted in a test: {kind} {target!r}")


def install_network_guard(monkeypatch: pytest.MonkeyPatch) -> NetworkGuard:
    """Fail (and record) any socket connect or name lookup other than to our loopback server."""
    guard = NetworkGuard()
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_create_connection = socket.create_connection
    real_getaddrinfo = socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> None:
        if guard.allows(address):
            return real_connect(sock, address)
        raise guard.block("connect", address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        if guard.allows(address):
            return real_connect_ex(sock, address)
        raise guard.block("connect_ex", address)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        if guard.allows(address):
            return real_create_connection(address, *args, **kwargs)
        raise guard.block("create_connection", address)

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        # A numeric loopback address of our own server needs no DNS; anything else is refused.
        if host == "127.0.0.1" and port in guard.loopback_ports:
            return real_getaddrinfo(host, port, *args, **kwargs)
        raise guard.block("getaddrinfo", host)

    def lookup(name: str) -> Any:
        def blocked(host: Any, *args: Any, **kwargs: Any) -> Any:
            raise guard.block(name, host)

        return blocked

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for name in ("gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getfqdn"):
        monkeypatch.setattr(socket, name, lookup(name))
    return guard


def fake_resolve(host: str, port: int) -> list[str]:
    """`url_safety.resolve_host` for tests: answers from DNS above, other names do not exist."""
    if host in DNS:
        return DNS[host]
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def stub_dns(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    """Names resolve through DNS above, and nothing is queued to django-q2."""
    monkeypatch.setattr(url_safety, "resolve_host", fake_resolve)
    settings.WEBHOOK_ENQUEUE = False


def block_network(monkeypatch: pytest.MonkeyPatch, settings: Any) -> NetworkGuard:
    """What the `no_network` fixture does, for a test or fixture that switches it on itself."""
    guard = install_network_guard(monkeypatch)
    stub_dns(monkeypatch, settings)
    return guard
