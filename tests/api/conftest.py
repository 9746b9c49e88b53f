"""Fixtures for the API tests: no network, and a fake sender for `POST .../test`."""

import pytest

from tests.api import block_network, install_fake_sender


@pytest.fixture
def no_network(monkeypatch, settings):
    """Names resolve through tests.api.DNS; any real lookup or connect fails the test."""
    block_network(monkeypatch, settings)


@pytest.fixture
def fake_sender(no_network, monkeypatch):
    """`POST .../test` answers through a FakeSender (what it sent is kept on it)."""
    return install_fake_sender(monkeypatch)
