"""Verify integrity: who may run it, what it reports, and the append-only trigger."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from audit.models import AuditEntry
from audit.services import record

URL = reverse("audit:verify")
TRIGGER = "audit_entry_append_only"


def _bypassing_the_trigger(sql: str, params: list) -> None:
    """Tamper as the table owner would: switch the append-only trigger off around one write."""
    with connection.cursor() as cursor:
        # The test's transaction holds deferred foreign-key checks; ALTER TABLE needs none pending.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE audit_auditentry DISABLE TRIGGER {TRIGGER}")
        cursor.execute(sql, params)
        cursor.execute(f"ALTER TABLE audit_auditentry ENABLE TRIGGER {TRIGGER}")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def _chain(tenant, length: int = 4) -> list[AuditEntry]:
    return [
        record(tenant=tenant, action="destination.updated", target_repr=f"Destination {n}")
        for n in range(length)
    ]


def _verify_page(client) -> str:
    response = client.post(URL, follow=True)
    assert response.redirect_chain == [(reverse("audit:index"), 302)]
    return response.content.decode()


@pytest.mark.django_db
def test_admin_can_verify_an_intact_chain(tenant_a, client_for):
    client = client_for(tenant_a.admin)  # entry #1
    _chain(tenant_a.tenant)
    assert "Chain intact: 5 entries verified." in _verify_page(client)


@pytest.mark.django_db
def test_auditor_can_verify(tenant_a, client_for):
    client = client_for(tenant_a.auditor)
    assert "Chain intact: 1 entries verified." in _verify_page(client)


@pytest.mark.django_db
def test_operator_cannot_verify(tenant_a, client_for):
    assert client_for(tenant_a.operator).post(URL).status_code == 403


@pytest.mark.django_db
def test_verify_requires_post(tenant_a, client_for):
    assert client_for(tenant_a.admin).get(URL).status_code == 405


@pytest.mark.django_db
def test_verify_checks_only_the_current_tenant(tenant_a, tenant_b, client_for):
    client = client_for(tenant_a.admin)
    victim = _chain(tenant_b.tenant)[1]
    _bypassing_the_trigger(
        "UPDATE audit_auditentry SET after = %s WHERE id = %s", ['{"x": 1}', victim.id]
    )
    assert "Chain intact: 1 entries verified." in _verify_page(client)


@pytest.mark.django_db
def test_verify_names_an_altered_entry(tenant_a, client_for):
    client = client_for(tenant_a.auditor)
    victim = _chain(tenant_a.tenant)[1]
    _bypassing_the_trigger(
        "UPDATE audit_auditentry SET after = %s WHERE id = %s", ['{"x": 1}', victim.id]
    )
    html = _verify_page(client)
    when = victim.created_at.strftime("%Y-%m-%d %H:%M:%S")
    assert (
        f"Entry #{victim.sequence} at {when} UTC (destination.updated) has been altered or "
        "removed: its content does not match its hash"
    ) in html
    assert "Chain intact" not in html


@pytest.mark.django_db
def test_verify_reports_a_deleted_entry(tenant_a, client_for):
    client = client_for(tenant_a.admin)  # entry #1
    entries = _chain(tenant_a.tenant)  # entries #2 to #5
    _bypassing_the_trigger("DELETE FROM audit_auditentry WHERE id = %s", [entries[1].id])
    html = _verify_page(client)
    assert "Entry #4 at" in html
    assert "has been altered or removed: entry #3 is missing before #4" in html


@pytest.mark.django_db
def test_verify_reports_a_rewritten_hash_as_a_broken_link(tenant_a, client_for):
    client = client_for(tenant_a.admin)
    entries = _chain(tenant_a.tenant)
    # A forger who recomputes the altered entry's own hash still breaks the next link.
    forged = entries[1]
    forged.target_repr = "Forged"
    _bypassing_the_trigger(
        "UPDATE audit_auditentry SET target_repr = %s, hash = %s WHERE id = %s",
        ["Forged", forged.compute_hash(), forged.id],
    )
    html = _verify_page(client)
    assert f"Entry #{entries[2].sequence} at" in html
    assert "its link to the previous entry is broken" in html


@pytest.mark.django_db
def test_the_database_refuses_updates_to_entries(tenant_a):
    entry = _chain(tenant_a.tenant, 1)[0]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(after={"x": 1})
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        entry.target_repr = "Rewritten"
        entry.save()
    entry.refresh_from_db()
    assert entry.target_repr == "Destination 0"


@pytest.mark.django_db
def test_the_database_refuses_deletes_of_entries(tenant_a):
    entry = _chain(tenant_a.tenant, 1)[0]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        entry.delete()
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


@pytest.mark.django_db
def test_command_verifies_every_tenant_and_fails_on_a_broken_chain(tenant_a, tenant_b, capsys):
    _chain(tenant_a.tenant, 2)
    victim = _chain(tenant_b.tenant, 3)[2]
    call_command("verify_audit_chain", "--tenant", "tenant-a")
    assert "tenant-a: chain intact, 2 entries verified." in capsys.readouterr().out
    _bypassing_the_trigger("DELETE FROM audit_auditentry WHERE id = %s", [victim.id - 1])
    with pytest.raises(CommandError, match="tenant-b"):
        call_command("verify_audit_chain")
    output = capsys.readouterr()
    assert "tenant-a: chain intact" in output.out
    assert f"tenant-b: entry #{victim.sequence} at" in output.err
    assert "entry #2 is missing before #3" in output.err
