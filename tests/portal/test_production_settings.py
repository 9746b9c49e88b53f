"""Production settings: generate_keys, our start-up checks, a clean check --deploy, and a bad
Host header logged as one WARNING line."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from portal import checks
from portal.management.commands.generate_keys import new_field_encryption_key, new_secret_key
from portal.settings import DEV_FIELD_ENCRYPTION_KEY, DEV_SECRET_KEY
from scripts.check_runtime import ENV_EXAMPLE, read_env_file, read_env_file_text
from scripts.processes import signal_group, start_in_group
from tests.processes import ROOT

GOOD_KEY = Fernet.generate_key().decode()


def manage_py(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run manage.py in its own process group; end the whole group if it outlives `timeout`."""
    process = start_in_group(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env={"PATH": os.environ.get("PATH", ""), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        signal_group(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def documented_env() -> dict[str, str]:
    """deploy/oneprotect.env.example with fresh keys and loopback URLs (never connected to)."""
    env = read_env_file(ENV_EXAMPLE)
    env["SECRET_KEY"] = new_secret_key()
    env["FIELD_ENCRYPTION_KEYS"] = new_field_encryption_key()
    env["AUDIT_CHAIN_KEY"] = new_secret_key()
    env["DATABASE_URL"] = "postgres://oneprotect:unused@127.0.0.1:1/oneprotect"
    env["REDIS_URL"] = "redis://127.0.0.1:1/0"
    return env


# generate_keys ------------------------------------------------------------------------------


def test_generate_keys_runs_before_any_setting_exists():
    result = manage_py({"DEBUG": "false"}, "generate_keys")  # no keys, no DATABASE_URL
    assert result.returncode == 0, result.stderr
    values = read_env_file_text(result.stdout)
    assert set(values) == {"SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "AUDIT_CHAIN_KEY"}
    secret_key = values["SECRET_KEY"]
    assert len(secret_key) >= 50 and len(set(secret_key)) >= 5  # Django's own strength test
    Fernet(values["FIELD_ENCRYPTION_KEYS"].encode())  # a valid Fernet key, or this raises


def generate_keys(*args: str) -> str:
    out = io.StringIO()
    call_command("generate_keys", *args, stdout=out)
    return out.getvalue()


def test_generate_keys_gives_new_keys_each_time():
    first, second = generate_keys(), generate_keys()
    assert read_env_file_text(first)["SECRET_KEY"] != read_env_file_text(second)["SECRET_KEY"]
    assert (
        read_env_file_text(first)["FIELD_ENCRYPTION_KEYS"]
        != read_env_file_text(second)["FIELD_ENCRYPTION_KEYS"]
    )


def test_generate_keys_encryption_key_only_prints_one_fernet_key():
    key = generate_keys("--encryption-key-only").strip()
    assert "\n" not in key and "=" not in key[:-1]
    Fernet(key.encode())


# check --deploy -----------------------------------------------------------------------------


def test_check_deploy_is_clean_for_the_documented_production_settings():
    result = manage_py(documented_env(), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_warns_when_the_documented_https_redirect_is_dropped():
    env = {**documented_env(), "SECURE_SSL_REDIRECT": "false"}
    result = manage_py(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "security.W008" in result.stderr


# Our start-up checks --------------------------------------------------------------------------

# (settings to change with DEBUG off, the check id expected, the setting its message names)
START_UP_CASES = [
    ({"SECRET_KEY": ""}, "portal.E001", "SECRET_KEY"),
    ({"AUDIT_CHAIN_KEY": ""}, "portal.E013", "AUDIT_CHAIN_KEY"),
    ({"SECRET_KEY": DEV_SECRET_KEY}, "portal.E002", "SECRET_KEY"),
    ({"FIELD_ENCRYPTION_KEYS": []}, "portal.E003", "FIELD_ENCRYPTION_KEYS"),
    (
        {"FIELD_ENCRYPTION_KEYS": [GOOD_KEY, DEV_FIELD_ENCRYPTION_KEY]},
        "portal.E004",
        "FIELD_ENCRYPTION_KEYS",
    ),
    ({"FIELD_ENCRYPTION_KEYS": [GOOD_KEY, "not-a-key"]}, "portal.E005", "FIELD_ENCRYPTION_KEYS"),
    ({"ALLOWED_HOSTS": []}, "portal.E008", "ALLOWED_HOSTS"),
    ({"ALLOWED_HOSTS": ["portal.example.com", "*"]}, "portal.E009", "ALLOWED_HOSTS"),
    ({"REDIS_URL": "http://127.0.0.1:6379"}, "portal.E010", "REDIS_URL"),
]


def all_portal_messages() -> list:
    return checks.check_keys() + checks.check_database_url() + checks.check_hosts_and_broker()


@pytest.mark.parametrize(
    ("changes", "check_id", "setting"), START_UP_CASES, ids=[c[1] for c in START_UP_CASES]
)
def test_a_missing_or_dangerous_setting_is_an_error_naming_it(settings, changes, check_id, setting):
    settings.DEBUG = False
    for name, value in changes.items():
        setattr(settings, name, value)
    messages = all_portal_messages()
    assert [m.id for m in messages] == [check_id]
    assert messages[0].is_serious()
    assert setting in messages[0].msg


def test_the_test_settings_pass_every_start_up_check(settings):
    settings.DEBUG = False
    assert all_portal_messages() == []


def test_development_keys_are_accepted_with_debug_on(settings):
    settings.DEBUG = True
    settings.SECRET_KEY = DEV_SECRET_KEY
    settings.FIELD_ENCRYPTION_KEYS = [DEV_FIELD_ENCRYPTION_KEY]
    settings.ALLOWED_HOSTS = []
    assert all_portal_messages() == []


def test_a_malformed_key_message_never_shows_the_key(settings):
    settings.FIELD_ENCRYPTION_KEYS = ["s3cr3t-but-wrong"]
    [message] = checks.check_keys()
    assert "s3cr3t-but-wrong" not in str(message)
    assert "key 1 of 1" in message.msg


@pytest.mark.parametrize(
    ("database_url", "check_id", "message"),
    [
        (None, "portal.E006", "DATABASE_URL is not set"),
        ("sqlite:////tmp/portal.sqlite3", "portal.E007", "DATABASE_URL must name a PostgreSQL"),
    ],
)
def test_database_url_must_name_postgresql(database_url, check_id, message):
    env = {"DEBUG": "true"} | ({"DATABASE_URL": database_url} if database_url else {})
    result = manage_py(env, "check")
    assert result.returncode != 0
    assert check_id in result.stderr and message in result.stderr


@pytest.mark.parametrize("command", ["check", "migrate", "qcluster"])
def test_start_up_stops_with_debug_off_and_no_keys(command):
    env = {"DEBUG": "false", "DATABASE_URL": "postgres://u:unused@127.0.0.1:1/x"}
    result = manage_py(env, command)
    assert result.returncode != 0
    assert "portal.E001" in result.stderr and "SECRET_KEY is not set" in result.stderr
    assert "FIELD_ENCRYPTION_KEYS is not set" in result.stderr
    assert "Traceback" not in result.stderr


# A bad Host header --------------------------------------------------------------------------


def _handler(logger_name: str, handler_name: str) -> logging.StreamHandler:
    return next(h for h in logging.getLogger(logger_name).handlers if h.name == handler_name)


def test_a_bad_host_header_is_one_warning_line_without_traceback(client):
    security = _handler("django.security", "client_errors")
    console = _handler("", "console")
    security_out, console_out = io.StringIO(), io.StringIO()
    old_security, old_console = security.setStream(security_out), console.setStream(console_out)
    try:
        response = client.get("/login/?token=secret-value", HTTP_HOST="evil.example")
    finally:
        security.setStream(old_security)
        console.setStream(old_console)
    assert response.status_code == 400
    [line] = security_out.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "WARNING"
    assert record["logger"] == "django.security.DisallowedHost"
    assert "evil.example" in record["message"]
    assert "exception" not in record and "Traceback" not in line
    assert "secret-value" not in line  # the request's repr (with its query string) is dropped
    others = [json.loads(text) for text in console_out.getvalue().splitlines()]
    assert [r for r in others if r["level"] not in ("INFO", "DEBUG")] == []


# The HTTPS redirect ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_https_redirect_spares_the_health_probe(settings, client):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    page = client.get("/login/")
    assert page.status_code == 301
    assert page["Location"] == "https://testserver/login/"
    assert client.get("/login/", secure=True).status_code == 200


# Static files not collected -------------------------------------------------------------------


def test_web_processes_name_static_files_that_were_not_collected(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    settings.STATIC_ROOT = tmp_path
    problem = checks.static_files_missing()
    assert problem and "collectstatic" in problem and "staticfiles.json" in problem
    (tmp_path / "staticfiles.json").write_text("{}")
    assert checks.static_files_missing() is None


def test_log_lines_leave_out_the_request_and_its_query_string():
    from portal.logging import JsonFormatter

    record = logging.makeLogRecord(
        {"msg": "Internal Server Error: /x", "request": "<WSGIRequest: GET '/x?token=secret'>"}
    )
    line = JsonFormatter().format(record)
    assert "secret" not in line and "token=" not in line
    assert json.loads(line)["message"] == "Internal Server Error: /x"
