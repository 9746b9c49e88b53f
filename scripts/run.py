"""`make run`: database, migrations, demo data, then the web server, worker cluster, demo
receiver and event simulator, all stopped together by Ctrl-C.

Stopping always finishes: a second Ctrl-C (or a SIGTERM) while stopping does not cut the
cleanup short, it only hurries it (the children are killed instead of waited for). What a run
started is written to `.data/run-state.json`; a run that was killed (kill -9, a closed terminal)
leaves it behind, and the next `make run` stops what it finds there that is still running, then
starts afresh. A port taken by another program is reported with what to do about it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import psutil

from scripts.devdb import ROOT, EmbeddedPostgres, database_url_or_embedded
from scripts.processes import signal_group, start_in_group, wait_until

PYTHON = sys.executable
PORTAL_PORT = int(os.environ.get("PORTAL_PORT", "8000"))
RECEIVER_PORT = int(os.environ.get("DEMO_RECEIVER_PORT", "8765"))
DATA_DIR = Path(os.environ.get("RUN_DATA_DIR") or ROOT / ".data")
STATE_FILE = DATA_DIR / "run-state.json"
STOP_WAIT_SECONDS = 10
START_SWEEPER = "from django_q.tasks import async_task; async_task('integrations.tasks.sweep_loop')"
DEV_ENV = {
    "DEBUG": "true",
    "WEBHOOK_ALLOWED_PRIVATE_TARGETS": f"127.0.0.1:{RECEIVER_PORT}",
    "WEBHOOK_ALLOW_HTTP": "true",
    "DEMO_RECEIVER_URL": f"http://127.0.0.1:{RECEIVER_PORT}/hook",
    # Documentation addresses (RFC 5737): the Integrations page shows what a customer would
    # allow in a firewall. A deployment sets its real egress addresses.
    "WEBHOOK_EGRESS_IPS": "203.0.113.10,203.0.113.11",
}


def banner() -> str:
    password = os.environ.get("DEMO_PASSWORD", "demo-password-1")
    return f"""
  OneProtect Integrations portal: http://127.0.0.1:{PORTAL_PORT}
  Demo accounts (password: {password}):
    admin@acme.test     admin in Acme
    operator@acme.test  operator in Acme
    auditor@acme.test   auditor in Acme
    admin@globex.test   admin in Globex
    multi@acme.test     operator in Acme, admin in Globex
  Demo receiver: http://127.0.0.1:{RECEIVER_PORT}/hook   Stop everything: Ctrl-C
"""


class Stop(Exception):
    """Ctrl-C or SIGTERM: stop everything."""


class Run:
    """The processes one `make run` started, recorded so that a later run can clean up."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen] = []
        self.embedded = None
        self.stopping = False
        self.hurry = False

    # Signals ----------------------------------------------------------------------------------
    def on_signal(self, signum, _frame) -> None:
        if not self.stopping:
            self.stopping = True
            raise Stop
        # Already stopping: never abandon the cleanup, only hurry it.
        self.hurry = True
        print("\n  Still stopping: killing what is left, then stopping PostgreSQL…", flush=True)

    # State file -------------------------------------------------------------------------------
    def save_state(self) -> None:
        started = [
            {"pid": child.pid, "started": _create_time(child.pid), "args": child.args[2:4]}
            for child in self.children
        ]
        state = {
            "pid": os.getpid(),
            "started": _create_time(os.getpid()),
            "children": started,
            "postgres": str(self.embedded.data_dir)
            if self.embedded and self.embedded.started_here
            else "",
        }
        STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
        tmp = STATE_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(STATE_FILE)

    def spawn(self, command: list[str], env: dict) -> subprocess.Popen:
        # Own process group each, so that we end exactly what we started (workers included).
        # Signals wait until the child is recorded: none can start unseen.
        with signals_held():
            child = start_in_group(command, env=env)
            self.children.append(child)
            self.save_state()
        return child

    def start_database(self) -> str:
        with signals_held():  # a Ctrl-C now stops the server once it is recorded
            url, self.embedded = database_url_or_embedded(DATA_DIR / "pg")
            self.save_state()
        return url

    # Stopping ---------------------------------------------------------------------------------
    def stop(self) -> None:
        self.stopping = True
        for child in self.children:
            signal_group(child.pid, signal.SIGKILL if self.hurry else signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        for child in self.children:
            wait_until(
                lambda child=child: child.poll() is not None or self.hurry,
                deadline - time.monotonic(),
                interval=0.1,
            )
            signal_group(child.pid, signal.SIGKILL)  # the group: workers outlive a master
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                print(f"  Could not stop process {child.pid}: kill -9 -{child.pid}", flush=True)
        if self.embedded is not None:
            self.embedded.stop(fast=not self.hurry)
            if self.embedded.started_here:
                print("  Embedded PostgreSQL stopped.", flush=True)
        STATE_FILE.unlink(missing_ok=True)


@contextmanager
def signals_held():
    """Hold Ctrl-C and SIGTERM back (delivered at the end of the block)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _same_process(pid: int, started: float | None) -> bool:
    """The process is still the one recorded (a PID can be reused by an unrelated program)."""
    return started is not None and _create_time(pid) == started


def recover_from_previous_run() -> bool:
    """Stop what a killed `make run` left running. False when another run is still alive."""
    try:
        state = json.loads(STATE_FILE.read_text())
    except FileNotFoundError:
        return True
    except ValueError:
        STATE_FILE.unlink(missing_ok=True)
        return True
    if _same_process(state.get("pid", 0), state.get("started")):
        print(
            f"  Another `make run` is running (pid {state['pid']}). Stop it with Ctrl-C in its "
            f"terminal, or: kill {state['pid']}",
            flush=True,
        )
        return False
    left = [c for c in state.get("children", []) if _same_process(c["pid"], c["started"])]
    for child in left:
        signal_group(child["pid"], signal.SIGTERM)
    wait_until(lambda: not any(psutil.pid_exists(c["pid"]) for c in left), STOP_WAIT_SECONDS, 0.2)
    for child in left:
        signal_group(child["pid"], signal.SIGKILL)
    if left:
        names = ", ".join(" ".join(c["args"]) for c in left)
        print(f"  A previous `make run` did not stop; stopped what it left: {names}.", flush=True)
    if state.get("postgres"):
        EmbeddedPostgres(Path(state["postgres"])).stop_if_running()
        print("  Stopped the embedded PostgreSQL a previous `make run` left running.", flush=True)
    STATE_FILE.unlink(missing_ok=True)
    return True


def port_problem(port: int) -> str:
    """Why 127.0.0.1:port cannot be used, with what to do; empty when it is free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            return ""
        except OSError:
            pass
    owner = ""
    try:
        for conn in psutil.net_connections("tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == "LISTEN" and conn.pid:
                owner = f" by pid {conn.pid} ({' '.join(psutil.Process(conn.pid).cmdline())[:80]})"
                break
    except psutil.Error:
        pass
    return (
        f"  Port {port} is in use{owner}. Stop that program, or choose free ports, e.g.\n"
        f"    PORTAL_PORT={PORTAL_PORT + 1} DEMO_RECEIVER_PORT={RECEIVER_PORT + 1} make run"
    )


def main() -> int:
    run = Run()
    # Handle both explicitly: a shell may start us with SIGINT ignored.
    signal.signal(signal.SIGTERM, run.on_signal)
    signal.signal(signal.SIGINT, run.on_signal)
    try:
        if not recover_from_previous_run():
            return 1
        problems = [p for p in (port_problem(PORTAL_PORT), port_problem(RECEIVER_PORT)) if p]
        if problems:
            print("\n".join(problems), flush=True)
            return 1
        print(banner(), flush=True)
        env = {**os.environ}
        for key, value in DEV_ENV.items():
            env.setdefault(key, value)
        env["DATABASE_URL"] = run.start_database()
        where = f"embedded PostgreSQL in {DATA_DIR / 'pg'}" if run.embedded else "DATABASE_URL"
        print("  database:", where, flush=True)
        manage = [PYTHON, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, check=True)
        subprocess.run([*manage, "demo"], env=env, check=True)
        plan = [
            [*manage, "runserver", f"127.0.0.1:{PORTAL_PORT}"],
            [*manage, "demo_receiver", "--port", str(RECEIVER_PORT), "--fail-rate", "0.2"],
            [*manage, "qcluster"],
            [*manage, "simulate_events", "--tenant", "acme", "--rate", "1"],
        ]
        for command in plan:
            run.spawn(command, env)
        # Start the delivery sweeper now rather than at the schedule's first tick.
        subprocess.run([*manage, "shell", "-c", START_SWEEPER], env=env, check=False)
        print(banner(), flush=True)
        while True:
            for child in run.children:
                if child.poll() is not None:
                    print(f"  {' '.join(child.args[2:4])} exited ({child.returncode}); stopping.")
                    return child.returncode or 1
            time.sleep(0.5)
    except (Stop, KeyboardInterrupt):
        print("\n  Stopping…", flush=True)
        return 0
    except subprocess.CalledProcessError as error:
        print(f"  {error}", flush=True)
        return 1
    finally:
        run.stop()


if __name__ == "__main__":
    sys.exit(main())
