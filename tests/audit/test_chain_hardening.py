"""The audit chain after issue 13 §4: keyed HMAC, TRUNCATE refused, saved heads that detect a
chain cut off or rewritten, the CSV export ending with the head, and the migration path."""

from __future__ import annotations

import hashlib
import hmac
import importlib

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from audit.models import GENESIS_HASH, HMAC_HASH, LEGACY_HASH, AuditEntry, canonical_bytes
from audit.services import chain_head, parse_heads, record, verify_chain
from tests.audit.test_verify import TRIGGER, _bypassing_the_trigger, _chain

pytestmark = pytest.mark.django_db
MIGRATION = importlib.import_module("audit.migrations.0004_audit_hmac_chain")


def _rewrite(entries: list[AuditEntry], *, from_index: int, hasher) -> None:
    """Rewrite entries from one on, recomputing every hash and link with `hasher`."""
    prev = entries[from_index - 1].hash if from_index else GENESIS_HASH
    for entry in entries[from_index:]:
        entry.target_repr = f"Forged {entry.sequence}"
        entry.prev_hash = prev
        entry.hash = hasher(entry)
        _bypassing_the_trigger(
            "UPDATE audit_auditentry SET target_repr = %s, prev_hash = %s, hash = %s, "
            "hash_version = %s WHERE id = %s",
            [entry.target_repr, entry.prev_hash, entry.hash, entry.hash_version, entry.id],
        )
        prev = entry.hash


# HMAC ---------------------------------------------------------------------------------------
def test_entries_are_hashed_with_the_chain_key(tenant_a, settings):
    entry = record(tenant=tenant_a.tenant, action="x.y")
    key = settings.AUDIT_CHAIN_KEY.encode()
    assert entry.hash_version == HMAC_HASH
    assert entry.hash == hmac.new(key, canonical_bytes(entry), hashlib.sha256).hexdigest()
    assert entry.hash != hashlib.sha256(canonical_bytes(entry)).hexdigest()


def test_a_forger_without_the_key_cannot_recompute_the_chain(tenant_a):
    entries = _chain(tenant_a.tenant, 4)
    _rewrite(entries, from_index=1, hasher=lambda e: hashlib.sha256(e.canonical()).hexdigest())
    result = verify_chain(tenant_a.tenant)
    assert not result.ok and result.broken_entry.pk == entries[1].pk
    assert result.reason == "its content does not match its hash"


def test_a_forger_with_another_key_is_detected(tenant_a):
    entries = _chain(tenant_a.tenant, 3)
    wrong = b"guessed-key"
    _rewrite(
        entries,
        from_index=0,
        hasher=lambda e: hmac.new(wrong, canonical_bytes(e), hashlib.sha256).hexdigest(),
    )
    assert not verify_chain(tenant_a.tenant).ok


def test_a_chain_downgraded_to_legacy_hashes_is_detected(tenant_a):
    entries = _chain(tenant_a.tenant, 3)
    for entry in entries[1:]:
        entry.hash_version = LEGACY_HASH
    _rewrite(entries, from_index=1, hasher=lambda e: hashlib.sha256(e.canonical()).hexdigest())
    result = verify_chain(tenant_a.tenant)
    assert not result.ok and result.reason == "its hash version was downgraded"


def test_the_chain_key_is_required_without_debug(settings):
    from portal.checks import check_keys

    settings.DEBUG = False
    settings.AUDIT_CHAIN_KEY = ""
    assert "portal.E013" in {error.id for error in check_keys()}
    settings.AUDIT_CHAIN_KEY = settings.DEV_AUDIT_CHAIN_KEY
    assert "portal.E014" in {error.id for error in check_keys()}


# TRUNCATE -----------------------------------------------------------------------------------
def test_the_database_refuses_truncate(tenant_a):
    _chain(tenant_a.tenant, 2)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # TRUNCATE needs none pending
            cursor.execute("SET LOCAL oneprotect.audit_truncate = 'no'")  # as in production
            cursor.execute("TRUNCATE audit_auditentry CASCADE")
    assert AuditEntry.objects.filter(tenant=tenant_a.tenant).count() == 2


# Saved heads ----------------------------------------------------------------------------------
@pytest.fixture
def saved_head(tenant_a, tmp_path):
    entries = _chain(tenant_a.tenant, 5)
    head = chain_head(tenant_a.tenant)
    path = tmp_path / "heads.txt"
    path.write_text(f"{head}\n", encoding="utf-8")
    return entries, head, path


def test_the_command_prints_heads_that_verify_later(saved_head, tenant_a, capsys):
    _, head, path = saved_head
    call_command("verify_audit_chain", "--tenant", "tenant-a", "--expect-head", str(path))
    assert f"Head: {head}" in capsys.readouterr().out
    record(tenant=tenant_a.tenant, action="later.entry")  # growing past the head is fine
    call_command("verify_audit_chain", "--expect-head", str(path))


def test_the_command_detects_a_chain_cut_off_after_the_saved_head(saved_head, tenant_a, capsys):
    entries, _, path = saved_head
    _bypassing_the_trigger(
        "DELETE FROM audit_auditentry WHERE id >= %s AND tenant_id = %s",
        [entries[-2].id, tenant_a.tenant.pk],
    )
    assert verify_chain(tenant_a.tenant).ok  # the remaining prefix is intact
    with pytest.raises(CommandError, match="tenant-a"):
        call_command("verify_audit_chain", "--expect-head", str(path))
    assert "cut off" in capsys.readouterr().err


def test_the_command_detects_a_chain_rewritten_with_the_key(saved_head, tenant_a, capsys):
    entries, _, path = saved_head
    _rewrite(entries, from_index=2, hasher=lambda e: e.compute_hash())  # an insider with the key
    assert verify_chain(tenant_a.tenant).ok
    with pytest.raises(CommandError):
        call_command("verify_audit_chain", "--expect-head", str(path))
    assert "rewritten after the saved head" in capsys.readouterr().err


def test_the_command_refuses_a_file_without_heads(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("nothing here\n", encoding="utf-8")
    with pytest.raises(CommandError, match="holds no chain head"):
        call_command("verify_audit_chain", "--expect-head", str(path))


def _verify_with(client, head: str) -> str:
    response = client.post(reverse("audit:verify"), {"head": head}, follow=True)
    assert response.status_code == 200
    return response.content.decode()


def test_the_verify_page_checks_a_pasted_head(saved_head, tenant_a, client_for):
    entries, head, _ = saved_head
    client = client_for(tenant_a.auditor)
    assert "up to and including the saved head #" in _verify_with(client, str(head))
    _rewrite(entries, from_index=3, hasher=lambda e: e.compute_hash())
    assert "rewritten after the saved head" in _verify_with(client, str(head))
    assert "not a chain head of this tenant" in _verify_with(client, "garbage")


def test_the_verify_page_refuses_another_tenants_head(tenant_a, tenant_b, client_for):
    other = chain_head(tenant_b.tenant)
    html = _verify_with(client_for(tenant_a.admin), str(other))
    assert "not a chain head of this tenant" in html


def test_the_csv_export_ends_with_the_head(tenant_a, client_for):
    _chain(tenant_a.tenant, 3)
    response = client_for(tenant_a.auditor).get(reverse("audit:export"))
    text = b"".join(response.streaming_content).decode()
    last = text.strip().splitlines()[-1]
    assert last.startswith("chain head,oneprotect-audit-head:tenant-a:")
    [head] = parse_heads(last)
    assert head == chain_head(tenant_a.tenant)
    assert verify_chain(tenant_a.tenant, expect_head=head).ok


# Migration path ------------------------------------------------------------------------------
def _legacy_chain(tenant, length: int) -> list[AuditEntry]:
    prev, entries = GENESIS_HASH, []
    for sequence in range(1, length + 1):
        entry = AuditEntry(
            tenant=tenant,
            sequence=sequence,
            created_at=timezone.now(),
            actor_name="system",
            action="legacy.entry",
            prev_hash=prev,
            hash_version=LEGACY_HASH,
        )
        entry.hash = hashlib.sha256(entry.canonical()).hexdigest()
        entry.save(force_insert=True)
        entries.append(entry)
        prev = entry.hash
    return entries


def test_the_migration_rehashes_intact_legacy_chains_with_the_key(tenant_a, tenant_b):
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE audit_auditentry DISABLE TRIGGER {TRIGGER}")
        cursor.execute(
            "DELETE FROM audit_auditentry WHERE tenant_id IN (%s, %s)",
            [tenant_a.tenant.pk, tenant_b.tenant.pk],
        )
        cursor.execute(f"ALTER TABLE audit_auditentry ENABLE TRIGGER {TRIGGER}")
    _legacy_chain(tenant_a.tenant, 3)
    broken = _legacy_chain(tenant_b.tenant, 3)
    _bypassing_the_trigger(
        "UPDATE audit_auditentry SET action = 'tampered' WHERE id = %s", [broken[1].id]
    )
    assert verify_chain(tenant_a.tenant).ok  # legacy entries still verify before the migration
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    with connection.schema_editor() as editor:
        MIGRATION.rehash_with_hmac(apps, editor)
    versions = set(
        AuditEntry.objects.filter(tenant=tenant_a.tenant).values_list("hash_version", flat=True)
    )
    assert versions == {HMAC_HASH}
    assert verify_chain(tenant_a.tenant).ok
    new = record(tenant=tenant_a.tenant, action="after.migration")
    assert new.sequence == 4 and verify_chain(tenant_a.tenant).ok
    # The broken legacy chain is left as it was: still reported where it broke.
    result = verify_chain(tenant_b.tenant)
    assert not result.ok and result.broken_entry.pk == broken[1].pk
