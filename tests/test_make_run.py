"""`make run` as a process (`python -m scripts.run`, what `make run` runs): it stops everything it
started, also on a second Ctrl-C, and a run after a crash recovers or says what to do.

Each test uses free ports and its own data directory (own embedded PostgreSQL), so it never
touches a developer's `make run`. Every process these tests start is ended by its PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from scripts.processes import (
    free_port,
    kill_group,
    signal_group,
    start_in_group,
    url_answers,
    wait_until,
)
from tests.processes import ROOT

pytestmark = pytest.mark.slow

START_TIMEOUT = 180  # migrations on a fresh embedded PostgreSQL, on a busy 2-core machine
STOP_TIMEOUT = 60


class MakeRun:
    """`python -m scripts.run` in its own session, with free ports and its own data directory."""

    def __init__(self, data_dir: Path, portal_port: int, receiver_port: int):
        self.data_dir = data_dir
        self.portal_port = portal_port
        self.log = data_dir / f"run-{time.monotonic_ns()}.log"
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "EMBEDDED_PGDATA")
        }
        self.env.update(
            RUN_DATA_DIR=str(data_dir),
            PORTAL_PORT=str(portal_port),
            DEMO_RECEIVER_PORT=str(receiver_port),
            Q_CLUSTER_NAME=f"make-run-test-{portal_port}",
            Q_WORKERS="1",
            LOG_LEVEL="WARNING",
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> MakeRun:
        with self.log.open("w") as out:
            self.process = start_in_group(
                [sys.executable, "-m", "scripts.run"],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def state(self) -> dict:
        try:
            return json.loads((self.data_dir / "run-state.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def portal_answers(self) -> bool:
        return url_answers(f"http://127.0.0.1:{self.portal_port}/healthz", timeout=2)

    def wait_ready(self) -> dict:
        def ready_now() -> bool:
            state = self.state()  # this run's (a killed run leaves its own behind)
            if state.get("pid") != self.process.pid or len(state.get("children", [])) != 4:
                return False
            return self.portal_answers()

        ready = wait_until(
            ready_now,
            START_TIMEOUT,
            interval=0.5,
        )
        assert ready, self.output()[-3000:]
        return self.state()

    def postmaster_pid(self) -> int | None:
        pid_file = self.data_dir / "pg" / "postmaster.pid"
        try:
            return int(pid_file.read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def started_pids(state: dict) -> list[int]:
    """The run's children and every process in their groups (a cluster's workers too)."""
    groups = {child["pid"] for child in state.get("children", [])}
    pids = set(groups)
    for process in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(process.pid) in groups:
                pids.add(process.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return sorted(pids)


@pytest.fixture
def make_run():
    """A factory of runs sharing one data directory; whatever is left is killed afterwards."""
    # Not under pytest's tmp_path: pytest makes its base private again (0700) whenever a
    # session starts, and PostgreSQL runs as its own user when we are root.
    data_dir = ROOT / ".data" / f"make-run-test-{uuid.uuid4().hex[:8]}"
    data_dir.mkdir(parents=True)
    portal_port, receiver_port = free_port(), free_port()
    runs: list[MakeRun] = []
    groups: set[int] = set()

    def make() -> MakeRun:
        run = MakeRun(data_dir, portal_port, receiver_port)
        runs.append(run)
        return run

    def remember(run: MakeRun) -> None:
        groups.update(child["pid"] for child in run.state().get("children", []))

    make.remember = remember
    yield make
    for run in runs:
        remember(run)
        if run.process is not None:
            kill_group(run.process)
    for group in groups:
        signal_group(group, signal.SIGKILL)
    postmaster = MakeRun(data_dir, portal_port, receiver_port).postmaster_pid()
    if alive(postmaster):  # only after a failed test: the server this test's run started
        os.kill(postmaster, signal.SIGKILL)
        wait_until(lambda: not alive(postmaster), 10)
    shutil.rmtree(data_dir, ignore_errors=True)


def test_two_ctrl_c_stop_everything_it_started(make_run):
    run = make_run().start()
    state = run.wait_ready()
    make_run.remember(run)
    pids = started_pids(state)
    postmaster = run.postmaster_pid()
    assert alive(postmaster) and all(alive(pid) for pid in pids)

    run.process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    run.process.send_signal(signal.SIGINT)  # impatient: the cleanup must still finish
    run.process.wait(timeout=STOP_TIMEOUT)

    assert wait_until(lambda: not any(alive(pid) for pid in pids), 10), run.output()[-2000:]
    assert wait_until(lambda: not alive(postmaster), 10), run.output()[-2000:]
    assert "Still stopping" in run.output()
    assert not (run.data_dir / "run-state.json").exists()


def test_a_run_after_kill_9_cleans_up_and_starts(make_run):
    first = make_run().start()
    state = first.wait_ready()
    make_run.remember(first)
    left = started_pids(state)
    first.process.kill()  # kill -9: no cleanup at all
    first.process.wait(timeout=10)
    assert all(alive(pid) for pid in left)  # what a crashed run leaves behind

    second = make_run().start()
    second.wait_ready()
    make_run.remember(second)
    assert "A previous `make run` did not stop" in second.output()
    assert not any(alive(pid) for pid in left)

    # Ctrl-C, then a SIGTERM while stopping: everything still stops.
    pids = started_pids(second.state())
    postmaster = second.postmaster_pid()
    second.process.send_signal(signal.SIGINT)
    time.sleep(0.1)
    second.process.send_signal(signal.SIGTERM)
    second.process.wait(timeout=STOP_TIMEOUT)
    assert second.process.returncode == 0
    assert wait_until(lambda: not any(alive(pid) for pid in pids), 10), second.output()[-2000:]
    assert wait_until(lambda: not alive(postmaster), 10), second.output()[-2000:]


def test_a_port_in_use_is_reported_with_what_to_do(make_run):
    run = make_run()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", run.portal_port))
        squatter.listen()
        run.start()
        run.process.wait(timeout=STOP_TIMEOUT)
    output = run.output()
    assert run.process.returncode == 1
    assert f"Port {run.portal_port} is in use by pid {os.getpid()}" in output
    assert "PORTAL_PORT=" in output and "make run" in output
    assert run.postmaster_pid() is None  # nothing was started
