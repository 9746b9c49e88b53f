"""Pytest fixtures for a local webhook receiver (load with pytest_plugins = ["tests.receiver"])."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devtools.receiver import ReceiverServer


@pytest.fixture
def receiver() -> Iterator[ReceiverServer]:
    """A started ReceiverServer on 127.0.0.1 with no secrets (set receiver.secrets = [...])."""
    with ReceiverServer(secrets=[]) as server:
        yield server


@pytest.fixture
def make_receiver() -> Iterator[Callable[..., ReceiverServer]]:
    """A factory: make_receiver(**kwargs) starts another ReceiverServer, stopped after the test."""
    servers: list[ReceiverServer] = []

    def make(**kwargs: Any) -> ReceiverServer:
        server = ReceiverServer(**kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in reversed(servers):
        server.stop()
