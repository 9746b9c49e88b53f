"""Browser tests: Playwright driving Debian's Chromium against a live server, a real worker
cluster and a real receiver, all on loopback. Run with `make e2e`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # ORM calls beside Playwright's loop

ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: `make e2e` installs it (apt-get install chromium).")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1280, "height": 900}}


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


TIME_TO_VALUE = ARTIFACTS / "time-to-value.txt"


def pytest_sessionstart(session):
    TIME_TO_VALUE.unlink(missing_ok=True)  # only this run's figure is shown


def pytest_terminal_summary(terminalreporter):
    """Show the walkthrough's time to value (measured by the test) at the end of `make e2e`."""
    if TIME_TO_VALUE.exists():
        terminalreporter.write_line(TIME_TO_VALUE.read_text().strip())
