"""Audit chain hashed with HMAC-SHA256 (AUDIT_CHAIN_KEY, from the environment), and TRUNCATE
refused too.

Migration path for existing chains: each tenant's chain is verified with the legacy SHA-256
first; an intact chain is re-hashed with the HMAC (links included), so from now on nobody
without the key can recompute it. A chain that is already broken is left exactly as it is
(version 1) so that verification keeps reporting where it was broken.
"""

import hashlib
import hmac

from django.conf import settings
from django.db import migrations, models

from audit.models import GENESIS_HASH, HMAC_HASH, LEGACY_HASH, canonical_bytes

TRIGGER = """
CREATE OR REPLACE FUNCTION audit_entry_append_only() RETURNS trigger AS $$
BEGIN
    -- Test databases are flushed with TRUNCATE: their connections set this option.
    IF TG_OP = 'TRUNCATE'
       AND current_setting('oneprotect.audit_truncate', true) = 'allow' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit entries are append-only (% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_entry_no_truncate
    BEFORE TRUNCATE ON audit_auditentry
    FOR EACH STATEMENT EXECUTE FUNCTION audit_entry_append_only();
"""

UNDO_TRIGGER = """
DROP TRIGGER IF EXISTS audit_entry_no_truncate ON audit_auditentry;
CREATE OR REPLACE FUNCTION audit_entry_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit entries are append-only (% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;
"""


def _legacy_chain_intact(entries) -> bool:
    expected_prev, expected_sequence = GENESIS_HASH, 1
    for entry in entries:
        digest = hashlib.sha256(canonical_bytes(entry)).hexdigest()
        if (
            entry.sequence != expected_sequence
            or entry.prev_hash != expected_prev
            or entry.hash_version != LEGACY_HASH
            or digest != entry.hash
        ):
            return False
        expected_prev, expected_sequence = entry.hash, expected_sequence + 1
    return True


def rehash_with_hmac(apps, schema_editor):
    AuditEntry = apps.get_model("audit", "AuditEntry")
    if not AuditEntry.objects.exists():
        return
    key = settings.AUDIT_CHAIN_KEY.encode()
    schema_editor.execute("ALTER TABLE audit_auditentry DISABLE TRIGGER audit_entry_append_only")
    tenant_ids = AuditEntry.objects.values_list("tenant_id", flat=True).distinct()
    for tenant_id in list(tenant_ids):
        entries = list(AuditEntry.objects.filter(tenant_id=tenant_id).order_by("sequence"))
        if not _legacy_chain_intact(entries):
            continue
        prev = GENESIS_HASH
        for entry in entries:
            entry.hash_version = HMAC_HASH
            entry.prev_hash = prev
            entry.hash = hmac.new(key, canonical_bytes(entry), hashlib.sha256).hexdigest()
            prev = entry.hash
        AuditEntry.objects.bulk_update(entries, ["hash_version", "prev_hash", "hash"], 1000)
    schema_editor.execute("ALTER TABLE audit_auditentry ENABLE TRIGGER audit_entry_append_only")


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_append_only_trigger")]

    operations = [
        # Existing entries are legacy (SHA-256) until re-hashed below; new ones are HMAC.
        migrations.AddField(
            model_name="auditentry",
            name="hash_version",
            field=models.PositiveSmallIntegerField(default=LEGACY_HASH),
        ),
        migrations.AlterField(
            model_name="auditentry",
            name="hash_version",
            field=models.PositiveSmallIntegerField(default=HMAC_HASH),
        ),
        migrations.RunPython(rehash_with_hmac, migrations.RunPython.noop),
        migrations.RunSQL(TRIGGER, UNDO_TRIGGER),
    ]
