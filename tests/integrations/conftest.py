"""Fixtures shared by the SSRF tests: a guard that refuses every connection and name lookup.

`network_guard` is not autouse: the engine tests talk to real loopback receivers. The URL
safety and delivery client tests switch it on for every test of their module.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest


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


@pytest.fixture
def network_guard(monkeypatch: pytest.MonkeyPatch) -> NetworkGuard:
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
