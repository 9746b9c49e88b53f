"""Run a command with DATABASE_URL set, starting an embedded PostgreSQL when it is unset.

python -m scripts.with_db [--data .data/pg-test] -- pytest -q
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from scripts.devdb import ROOT, database_url_or_embedded


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT / ".data" / "pg-test"))
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    url, embedded = database_url_or_embedded(Path(args.data))
    env = {**os.environ, "DATABASE_URL": url}
    if embedded is not None:
        env["EMBEDDED_PGDATA"] = str(embedded.data_dir)
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 130
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    sys.exit(main())
