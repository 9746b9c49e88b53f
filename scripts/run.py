"""`make run`: database, migrations, demo data, then the web server, worker cluster, demo
receiver and event simulator, all stopped together by Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from devdb import ROOT, database_url_or_embedded

PYTHON = sys.executable
RECEIVER_PORT = 8765
START_SWEEPER = "from django_q.tasks import async_task; async_task('integrations.tasks.sweep_loop')"
DEV_ENV = {
    "DEBUG": "true",
    "WEBHOOK_ALLOWED_PRIVATE_TARGETS": f"127.0.0.1:{RECEIVER_PORT}",
    "WEBHOOK_ALLOW_HTTP": "true",
    "DEMO_RECEIVER_URL": f"http://127.0.0.1:{RECEIVER_PORT}/hook",
}


def banner() -> str:
    password = os.environ.get("DEMO_PASSWORD", "demo-password-1")
    return f"""
  OneProtect Integrations portal: http://127.0.0.1:8000
  Demo accounts (password: {password}):
    admin@acme.test     admin in Acme
    operator@acme.test  operator in Acme
    auditor@acme.test   auditor in Acme
    admin@globex.test   admin in Globex
    multi@acme.test     operator in Acme, admin in Globex
  Demo receiver: http://127.0.0.1:{RECEIVER_PORT}/hook   Stop everything: Ctrl-C
"""


def main() -> int:
    print(banner(), flush=True)
    env = {**os.environ}
    for key, value in DEV_ENV.items():
        env.setdefault(key, value)
    url, embedded = database_url_or_embedded(ROOT / ".data" / "pg")
    env["DATABASE_URL"] = url
    print(
        "  database:", "embedded PostgreSQL in .data/pg" if embedded else "DATABASE_URL", flush=True
    )
    children: list[subprocess.Popen] = []

    def stop_all(*_):
        raise KeyboardInterrupt

    # Handle both explicitly: a shell may start us with SIGINT ignored.
    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    try:
        manage = [PYTHON, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, check=True)
        subprocess.run([*manage, "demo"], env=env, check=True)
        plan = [
            [*manage, "runserver", "127.0.0.1:8000"],
            [*manage, "demo_receiver", "--port", str(RECEIVER_PORT), "--fail-rate", "0.2"],
            [*manage, "qcluster"],
            [*manage, "simulate_events", "--tenant", "acme", "--rate", "1"],
        ]
        for command in plan:
            # Own process group each, so that we end exactly what we started.
            children.append(subprocess.Popen(command, env=env, start_new_session=True))
        # Start the delivery sweeper now rather than at the schedule's first tick.
        subprocess.run(
            [
                *manage,
                "shell",
                "-c",
                START_SWEEPER,
            ],
            env=env,
            check=False,
        )
        print(banner(), flush=True)
        while True:
            for child in children:
                if child.poll() is not None:
                    print(f"  {' '.join(child.args[2:4])} exited ({child.returncode}); stopping.")
                    return child.returncode or 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\n  Stopping…", flush=True)
        return 0
    except subprocess.CalledProcessError as error:
        print(f"  {error}", flush=True)
        return 1
    finally:
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
        if embedded is not None:
            embedded.stop()
            print("  Embedded PostgreSQL stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
