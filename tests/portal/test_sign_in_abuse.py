"""Issue 13 §3: behind proxies the real client address throttles and is audited; failed
sign-ins write at most one audit entry per account per minute and none while locked out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEntry
from integrations.models import Event
from tests.factories import TEST_PASSWORD

pytestmark = pytest.mark.django_db
EMAIL = "admin@tenant-a.test"


def _sign_in(client: Client, password: str, *, via: str = "", remote: str = "10.0.0.1"):
    extra = {"REMOTE_ADDR": remote}
    if via:
        extra["HTTP_X_FORWARDED_FOR"] = via
    return client.post(reverse("login"), {"username": EMAIL, "password": password}, **extra)


def _failures(tenant):
    return AuditEntry.objects.filter(tenant=tenant, action="auth.sign_in_failed")


def test_behind_a_proxy_the_audit_entry_has_the_real_client_address(tenant_a, settings):
    settings.PROXY_COUNT = 1
    _sign_in(Client(), "wrong", via="6.6.6.6, 203.0.113.9")  # 6.6.6.6: sent by the client
    assert _failures(tenant_a.tenant).get().ip == "203.0.113.9"


def test_without_a_proxy_a_forwarded_header_is_ignored(tenant_a, settings):
    settings.PROXY_COUNT = 0
    _sign_in(Client(), "wrong", via="203.0.113.9", remote="198.51.100.7")
    assert _failures(tenant_a.tenant).get().ip == "198.51.100.7"


def test_behind_a_proxy_a_lockout_is_per_real_client(tenant_a, settings):
    settings.PROXY_COUNT = 1
    attacker = Client()
    for n in range(settings.AXES_FAILURE_LIMIT):
        _sign_in(attacker, "wrong", via=f"6.6.6.{n}, 203.0.113.9")  # spoofing does not help
    assert _sign_in(attacker, TEST_PASSWORD, via="203.0.113.9").status_code == 429
    # The account's owner, elsewhere, behind the same proxy, is not locked out with them.
    owner = _sign_in(Client(), TEST_PASSWORD, via="198.51.100.20")
    assert owner.status_code == 302


def test_failed_sign_ins_are_audited_once_per_minute_and_not_while_locked(
    tenant_a, settings, monkeypatch
):
    settings.AXES_FAILURE_LIMIT = 3
    client = Client()
    events_before = Event.objects.filter(tenant=tenant_a.tenant).count()
    for _ in range(3):
        _sign_in(client, "wrong")
    assert _failures(tenant_a.tenant).count() == 1
    # Two minutes later (the clock, for us and for axes), still locked out: nothing written.
    later = timezone.now() + timedelta(minutes=2)
    monkeypatch.setattr("django.utils.timezone.now", lambda: later)
    for _ in range(3):
        assert _sign_in(client, "wrong").status_code == 429
    assert _failures(tenant_a.tenant).count() == 1
    audit_log_events = Event.objects.filter(tenant=tenant_a.tenant).count() - events_before
    assert audit_log_events == 1  # the one entry's `audit_log` event, no more


def test_a_failed_sign_in_after_a_minute_is_audited_again(tenant_a, monkeypatch):
    _sign_in(Client(), "wrong")
    later = timezone.now() + timedelta(seconds=61)
    monkeypatch.setattr("django.utils.timezone.now", lambda: later)
    _sign_in(Client(), "wrong")
    assert _failures(tenant_a.tenant).count() == 2
