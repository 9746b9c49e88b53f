"""Processes we start and stop ourselves, for scripts, the chaos run, the bench and the tests.

Every child starts in its own process group (a new session), so that ending it also ends what
it started (a cluster's workers, gunicorn's workers) and nothing else: a group is signalled by
the PID Popen gave us, never looked up by name. Every wait is bounded in time and in polls.
"""

from __future__ import annotations

import http.client
import math
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REAP_SECONDS = 10  # to reap a child after SIGKILL


def start_in_group(args: list[str], **popen_kwargs: Any) -> subprocess.Popen:
    """Popen in a new session: its own process group, which end_group/kill_group end whole."""
    return subprocess.Popen(args, start_new_session=True, **popen_kwargs)


def signal_group(pgid: int, signum: int) -> bool:
    """Send `signum` to the process group `pgid`; False when it is gone (or not ours)."""
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def kill_group(process: subprocess.Popen, timeout: float = REAP_SECONDS) -> None:
    """SIGKILL a running child's whole process group and reap the child."""
    if process.poll() is None:
        signal_group(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


def end_group(process: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM a running child's process group; SIGKILL it if the child outlives `timeout`."""
    if process.poll() is not None:
        return
    signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)


def group_alive(process: subprocess.Popen) -> bool:
    """Is any process of the child's process group still running (zombies count as gone)?"""
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a reused group id
        return True
    if process.poll() is None:
        return True
    # The child is gone (reaped by poll); zombies of its own children count as gone.
    return _live_members(process.pid)


def _live_members(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            return True
    return False


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.2) -> bool:
    """Poll predicate() until it is truthy or `timeout` seconds pass; its final truthiness."""
    interval = max(interval, 0.001)
    deadline = time.monotonic() + timeout
    for _ in range(max(1, math.ceil(timeout / interval)) + 1):  # bounded in polls too
        if predicate():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(interval, remaining))
    return bool(predicate())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the system picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def url_answers(url: str, timeout: float = 2.0) -> bool:
    """Does a GET of this plain-HTTP loopback URL answer 200 within `timeout` (no proxy)?"""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def wait_for_url(
    url: str,
    timeout: float,
    *,
    process: subprocess.Popen | None = None,
    interval: float = 0.2,
    request_timeout: float = 2.0,
) -> bool:
    """Wait (bounded) until GET url answers 200; False at the timeout or once `process` ended."""

    def ready_or_ended() -> bool:
        ended = process is not None and process.poll() is not None
        return ended or url_answers(url, request_timeout)

    return wait_until(ready_or_ended, timeout, interval) and (
        process is None or process.poll() is None
    )
