"""Prove that requirements.txt alone runs production (`make check-runtime`, CI).

Creates a scratch virtual environment with only requirements.txt (no test or development
tool; installed without dependency resolution, then `pip check`, so that every dependency
must be pinned in the file). Then, with the documented production settings
(deploy/oneprotect.env.example, fresh keys from `manage.py generate_keys`, loopback database
and Redis URLs that are never connected to), it runs:
  - `manage.py check --deploy --fail-level WARNING` (must be clean),
  - an import of every module of the apps (portal, integrations, audit, devtools), so that a
    runtime import of a development-only package fails here,
  - `gunicorn --check-config` with the shipped gunicorn.conf.py.
Every step is bounded in time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV_EXAMPLE = ROOT / "deploy" / "oneprotect.env.example"
APPS = ("portal", "integrations", "audit", "devtools")

IMPORT_EVERY_MODULE = f"""
import importlib, pkgutil, django
django.setup()
count = 0
for app in {APPS!r}:
    package = importlib.import_module(app)
    for module in pkgutil.walk_packages(package.__path__, app + "."):
        if ".migrations." in module.name:
            continue
        importlib.import_module(module.name)
        count += 1
print(f"imported {{count}} modules")
"""


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an environment file (systemd EnvironmentFile style, no quoting)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def documented_production_env(python: str) -> dict[str, str]:
    """The documented production settings with fresh keys and loopback service URLs."""
    env = read_env_file(ENV_EXAMPLE)
    keys = subprocess.run(
        [python, str(ROOT / "manage.py"), "generate_keys"],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    env.update(read_env_file_text(keys))
    # Never connected to by these checks; loopback so that nothing can leave the machine.
    env["DATABASE_URL"] = "postgres://oneprotect:unused@127.0.0.1:1/oneprotect"
    env["REDIS_URL"] = "redis://127.0.0.1:1/0"
    return env


def read_env_file_text(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def run(step: str, command: list[str], *, env: dict | None = None, timeout: float) -> str:
    started = time.monotonic()
    result = subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        print(f"FAILED: {step} ({elapsed:.0f} s)\n{result.stdout}\n{result.stderr}", flush=True)
        raise SystemExit(1)
    print(f"ok: {step} ({elapsed:.0f} s)", flush=True)
    return result.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=str(ROOT / ".data" / "runtime-venv"))
    args = parser.parse_args()
    venv = Path(args.venv)
    shutil.rmtree(venv, ignore_errors=True)  # always from scratch: nothing left from before
    run("create a scratch venv", [sys.executable, "-m", "venv", str(venv)], timeout=120)
    python = str(venv / "bin" / "python")
    run(
        "install requirements.txt alone",
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        + ["--no-deps", "-r", "requirements.txt"],
        timeout=900,
    )
    # --no-deps above, then pip check: every dependency must be pinned in the file itself.
    run("every dependency is pinned (pip check)", [python, "-m", "pip", "check"], timeout=120)
    env = {
        "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
        "DJANGO_SETTINGS_MODULE": "portal.settings",
    }
    env.update(documented_production_env(python))
    output = run(
        "manage.py check --deploy (documented production settings)",
        [python, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        timeout=120,
    )
    if "no issues" not in output:
        print(f"FAILED: check --deploy reported issues:\n{output}", flush=True)
        return 1
    imported = run("import every module", [python, "-c", IMPORT_EVERY_MODULE], env=env, timeout=120)
    print(f"  {imported.strip()}", flush=True)
    run(
        "gunicorn --check-config",
        [str(venv / "bin" / "gunicorn"), "--check-config", "-c", "gunicorn.conf.py", "portal.wsgi"],
        env=env,
        timeout=120,
    )
    print("requirements.txt alone runs production.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
