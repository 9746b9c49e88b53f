"""A local stack for benchmarks and the chaos run: its own database, worker clusters, manage.py.

    with LocalStack("chaos", receivers=[...], WEBHOOK_BATCH_SIZE=50) as stack:
        stack.shell("...")            # Django code in a child process, against the stack's DB
        cluster = stack.start_cluster(workers=4)
        kill_group(cluster)           # SIGKILL the whole cluster (scripts.processes)
        stack.restart_postgres()      # embedded server only

The database is a fresh one named after the stack, on the embedded PostgreSQL (.data/pg-stack)
or, when DATABASE_URL is set, on that server. Everything started is stopped by PID on exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import quote, urlsplit, urlunsplit

from cryptography.fernet import Fernet

from scripts.devdb import ROOT, EmbeddedPostgres
from scripts.processes import end_group, start_in_group

PYTHON = sys.executable


class LocalStack:
    def __init__(self, name: str, *, receivers=(), private_targets=(), **settings_overrides):
        self.name = f"stack_{name}"
        self.embedded: EmbeddedPostgres | None = None
        self.server_url = ""  # a URL to the server's maintenance database
        self.url = ""
        self.children: list[subprocess.Popen] = []
        targets = [f"127.0.0.1:{r.port}" for r in receivers] + list(private_targets)
        self.settings = {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "SECRET_KEY": "stack-only-" + Fernet.generate_key().decode(),
            "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "AUDIT_CHAIN_KEY": "stack-only-" + Fernet.generate_key().decode(),
            "Q_CLUSTER_NAME": self.name,
            "WEBHOOK_ALLOW_HTTP": "true",
            "WEBHOOK_ALLOWED_PRIVATE_TARGETS": ",".join(targets),
            # A local stack on loopback receivers, DEBUG off for realistic figures.
            "SILENCED_SYSTEM_CHECKS": "portal.E011,portal.E012",
            "LOG_LEVEL": "WARNING",
            **{k: str(v) for k, v in settings_overrides.items()},
        }

    # Database ------------------------------------------------------------------------------
    def start(self) -> LocalStack:
        import psycopg

        if os.environ.get("DATABASE_URL"):
            parts = urlsplit(os.environ["DATABASE_URL"])
            self.server_url = urlunsplit(parts._replace(path="/postgres"))
            self.url = urlunsplit(parts._replace(path=f"/{self.name}"))
        else:
            self.embedded = EmbeddedPostgres(ROOT / ".data" / "pg-stack")
            self.embedded.start()
            self.server_url = self.embedded.url("postgres")
            self.url = self.embedded.url(self.name)
        with psycopg.connect(self._libpq(self.server_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.manage("migrate", "--noinput", "-v", "0")
        return self

    @staticmethod
    def _libpq(url: str) -> str:
        """psycopg wants a socket directory as ?host=, not percent-encoded in the netloc."""
        parts = urlsplit(url)
        if parts.hostname and parts.hostname.startswith("%2f"):
            from urllib.parse import unquote

            socket_dir = unquote(parts.netloc.split("@")[-1])
            user = parts.username or "postgres"
            return f"postgresql://{user}@/{parts.path.lstrip('/')}?host={quote(socket_dir)}"
        return url

    def libpq_url(self) -> str:
        return self._libpq(self.url)

    def restart_postgres(self) -> bool:
        """Restart the database server (embedded only); False when it is not ours to restart."""
        if self.embedded is None:
            return False
        self.embedded.restart()
        return True

    # Processes -----------------------------------------------------------------------------
    def env(self, **extra) -> dict[str, str]:
        env = {**os.environ, **self.settings, "DATABASE_URL": self.url}
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def manage(self, *args: str, timeout: float = 600, **extra) -> str:
        result = subprocess.run(
            [PYTHON, str(ROOT / "manage.py"), *args],
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-4000:]}")
        return result.stdout

    def shell(self, code: str, timeout: float = 600, **extra) -> str:
        return self.manage("shell", "-c", code, timeout=timeout, **extra)

    def spawn(self, args: list[str], *, quiet: bool = True, **extra) -> subprocess.Popen:
        process = start_in_group(  # its own process group: we end exactly what we started
            args,
            env=self.env(**extra),
            stdout=subprocess.DEVNULL if quiet else None,
            stderr=subprocess.DEVNULL if quiet else None,
        )
        self.children.append(process)
        return process

    def start_cluster(self, workers: int | None = None, **extra) -> subprocess.Popen:
        if workers is not None:
            extra["Q_WORKERS"] = workers
        return self.spawn([PYTHON, str(ROOT / "manage.py"), "qcluster"], **extra)

    def start_sweeper(self) -> None:
        self.shell(
            "from django_q.tasks import async_task; async_task('integrations.tasks.sweep_loop')"
        )

    def stop(self) -> None:
        for process in reversed(self.children):
            end_group(process, timeout=15)
        self.children.clear()
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
