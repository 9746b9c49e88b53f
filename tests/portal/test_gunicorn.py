"""gunicorn with the shipped gunicorn.conf.py and the documented production settings serves
a styled portal and admin by itself (WhiteNoise), logs JSON, and refuses a bad setup."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from portal.access_log import access_line
from portal.management.commands.generate_keys import new_field_encryption_key, new_secret_key
from scripts.check_runtime import ENV_EXAMPLE, read_env_file
from scripts.processes import end_group, free_port, start_in_group, wait_for_url
from tests import processes
from tests.processes import ROOT

pytestmark = pytest.mark.slow
GUNICORN = str(Path(sys.executable).parent / "gunicorn")


def production_env(static_root: Path, port: int) -> dict[str, str]:
    """The documented settings, relaxed only as the README's plain-HTTP trial says."""
    env = read_env_file(ENV_EXAMPLE)
    env.pop("REDIS_URL")  # page views queue nothing; the ORM broker needs no server
    env.update(
        PATH=os.environ.get("PATH", ""),
        SECRET_KEY=new_secret_key(),
        FIELD_ENCRYPTION_KEYS=new_field_encryption_key(),
        AUDIT_CHAIN_KEY=new_secret_key(),
        DATABASE_URL=processes.test_database_url(),
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="false",  # plain HTTP on loopback, no proxy in front
        STATIC_ROOT=str(static_root),
        WEB_HOST="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY="1",  # two shared cores
    )
    return env


def get(port: int, path: str, headers: dict | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    response.body = response.read()
    connection.close()
    return response


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60) -> bool:
    """The portal answers /healthz (False at the timeout or once gunicorn has exited)."""
    url = f"http://127.0.0.1:{port}/healthz"
    return wait_for_url(url, timeout, process=process, request_timeout=10)


def start_gunicorn(env: dict, logs: Path) -> subprocess.Popen:
    return start_in_group(  # its own process group: we end exactly what we started
        [GUNICORN, "-c", "gunicorn.conf.py", "portal.wsgi"],
        cwd=ROOT,
        env=env,
        stdout=(logs / "stdout.log").open("w"),
        stderr=(logs / "stderr.log").open("w"),
    )


def stop(process: subprocess.Popen) -> None:
    end_group(process, timeout=30)


@pytest.fixture
def static_root(tmp_path) -> Path:
    root = tmp_path / "staticfiles"
    env = production_env(root, 0)
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "collectstatic", "--noinput", "-v", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.mark.django_db
def test_gunicorn_alone_serves_a_styled_portal_and_admin(static_root, tmp_path):
    port = free_port()
    process = start_gunicorn(production_env(static_root, port), tmp_path)
    try:
        assert wait_for_port(port, process), (tmp_path / "stderr.log").read_text()[-3000:]
        page = get(port, "/login/")
        assert page.status == 200
        stylesheets = re.findall(rb'href="(/static/[^"]+\.css)"', page.body)
        [portal_css] = [s.decode() for s in stylesheets if b"/css/portal." in s]
        assert re.fullmatch(r"/static/css/portal\.[0-9a-f]{12}\.css", portal_css)  # hashed
        css = get(port, portal_css)
        assert css.status == 200
        assert css.getheader("Content-Type").startswith("text/css")
        assert b"{" in css.body
        assert "immutable" in css.getheader("Cache-Control")
        compressed = get(port, portal_css, {"Accept-Encoding": "gzip"})
        assert compressed.getheader("Content-Encoding") == "gzip"
        assert gzip.decompress(compressed.body) == css.body

        admin = get(port, "/admin/login/")
        assert admin.status == 200
        admin_css = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', admin.body)
        assert admin_css, "the admin links its hashed stylesheet"
        assert get(port, admin_css.group(1).decode()).status == 200

        assert get(port, "/login/", {"Host": "evil.example"}).status == 400
    finally:
        stop(process)
    assert process.returncode == 0  # a graceful stop on SIGTERM

    access = [json.loads(line) for line in (tmp_path / "stdout.log").read_text().splitlines()]
    css_lines = [line for line in access if line["path"] == portal_css]
    assert css_lines and css_lines[0]["status"] == 200 and css_lines[0]["method"] == "GET"
    assert all(line["logger"] == "gunicorn.access" and line["request_id"] for line in access)

    errors = (tmp_path / "stderr.log").read_text()
    bad_host = [line for line in errors.splitlines() if "DisallowedHost" in line]
    assert len(bad_host) == 1, errors[-3000:]
    assert json.loads(bad_host[0])["level"] == "WARNING"
    assert "Traceback" not in errors


@pytest.mark.django_db
def test_gunicorn_refuses_to_start_without_keys(tmp_path):
    env = production_env(tmp_path / "unused", free_port())
    env["SECRET_KEY"] = ""
    process = start_gunicorn(env, tmp_path)
    try:
        process.wait(timeout=60)
    finally:
        stop(process)
    assert process.returncode != 0
    errors = (tmp_path / "stderr.log").read_text()
    assert "SECRET_KEY is not set" in errors


def gunicorn_conf(**environ: str) -> dict:
    """bind and workers as gunicorn.conf.py computes them in a given environment."""
    code = (
        "import json, runpy; conf = runpy.run_path('gunicorn.conf.py'); "
        "print(json.dumps({'bind': conf['bind'], 'workers': conf['workers']}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), **environ},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_gunicorn_conf_binds_from_web_host_and_port():
    assert gunicorn_conf()["bind"] == ["127.0.0.1:8000"]
    everywhere = "0.0.0.0"  # noqa: S104  (what a container sets)
    assert gunicorn_conf(PORT="9000", WEB_HOST=everywhere)["bind"] == [f"{everywhere}:9000"]
    assert gunicorn_conf(PORT="9000", WEB_HOST="::")["bind"] == ["[::]:9000"]


def test_gunicorn_conf_workers_from_cores_or_web_concurrency():
    assert gunicorn_conf()["workers"] == 2 * len(os.sched_getaffinity(0)) + 1
    assert gunicorn_conf(WEB_CONCURRENCY="3")["workers"] == 3


def test_access_line_is_json_even_for_hostile_values():
    atoms = {
        "h": "127.0.0.1",
        "m": "GET",
        "U": '/a"b\\c',
        "q": "token=secret-value",
        "s": "404",
        "B": 12,
        "D": 1500,
        "a": 'agent "quoted"\nnext',
        "{x-request-id}o": "abc",
    }
    line = access_line(atoms)
    assert "\n" not in line  # one line, whatever the client sent
    record = json.loads(line)
    assert record["path"] == '/a"b\\c' and record["user_agent"] == 'agent "quoted"\nnext'
    assert record["status"] == 404 and record["duration_ms"] == 1.5
    assert "secret-value" not in line  # no query string
