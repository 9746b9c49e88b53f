"""Real processes for tests: a worker cluster and manage.py commands against the test DB.

Starting, stopping and waiting are scripts.processes' (own process group, ended by PID).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

from scripts import processes

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """The URL of the database pytest-django created, for child processes."""
    params = connection.settings_dict
    host = quote(params.get("HOST") or "", safe="")
    password = f":{quote(params['PASSWORD'], safe='')}" if params.get("PASSWORD") else ""
    port = f":{params['PORT']}" if params.get("PORT") else ""
    return (
        f"postgres://{quote(params['USER'] or '', safe='')}{password}@{host}{port}/{params['NAME']}"
    )


def child_env(*, receivers=(), redis_url: str | None = None, **overrides) -> dict[str, str]:
    """Settings for a child process: the same database, keys and cluster name as the tests."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": test_database_url(),
        "SECRET_KEY": settings.SECRET_KEY,
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        "AUDIT_CHAIN_KEY": settings.AUDIT_CHAIN_KEY,
        # Loopback receivers with DEBUG off: acknowledge the development-settings checks.
        "SILENCED_SYSTEM_CHECKS": "portal.E011,portal.E012",
        "Q_CLUSTER_NAME": settings.Q_CLUSTER["name"],
        "Q_WORKERS": "2",
        "WEBHOOK_ALLOW_HTTP": "true",
        "WEBHOOK_ALLOWED_PRIVATE_TARGETS": ",".join(f"127.0.0.1:{r.port}" for r in receivers),
        "WEBHOOK_RETRY_SCHEDULE": "1",
        "WEBHOOK_RETRY_JITTER": "0",
        "WEBHOOK_LEASE_MARGIN": "2",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def manage(env: dict, *args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def shell(env: dict, code: str, timeout: float = 120) -> str:
    return manage(env, "shell", "-c", code, timeout=timeout)


class Cluster:
    """`manage.py qcluster` in its own process group, so it can be killed whole."""

    def __init__(self, env: dict, log_path: Path | None = None):
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> Cluster:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.process = processes.start_in_group(
                [sys.executable, str(ROOT / "manage.py"), "qcluster"],
                env=self.env,
                stdout=log,
                stderr=log,
            )
        finally:
            if self.log_path:
                log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def group_alive(self) -> bool:
        """Is any process of the cluster's process group still running?"""
        return processes.group_alive(self.process)

    def kill(self) -> None:
        """SIGKILL the whole cluster (master and workers) mid-work."""
        if self.process:
            processes.kill_group(self.process)

    def stop(self) -> None:
        if self.process is not None:
            processes.end_group(self.process, timeout=15)
