"""The append-only, hash-chained audit log."""

from __future__ import annotations

import hashlib
import hmac
import json

from django.conf import settings
from django.db import models

from portal.models import Tenant
from portal.scoping import TenantManager

GENESIS_HASH = "0" * 64
# 1: SHA-256 of the canonical bytes (entries written before the HMAC chain, kept only while a
#    tenant's legacy chain could not be re-hashed because it was already broken).
# 2: HMAC-SHA256 keyed with AUDIT_CHAIN_KEY (from the environment, never in the database).
LEGACY_HASH = 1
HMAC_HASH = 2


def canonical_bytes(entry) -> bytes:
    """The exact bytes the hash covers: every recorded field and the previous hash.

    A plain function so that migrations (historical models) hash exactly as the model does."""
    data = {
        "tenant": entry.tenant_id,
        "sequence": entry.sequence,
        "created_at": entry.created_at.isoformat(),
        "actor": entry.actor_name,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "target_repr": entry.target_repr,
        "before": entry.before,
        "after": entry.after,
        "ip": entry.ip,
        "user_agent": entry.user_agent,
        "request_id": entry.request_id,
        "prev_hash": entry.prev_hash,
    }
    if entry.hash_version != LEGACY_HASH:
        data["hash_version"] = entry.hash_version
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()


def hash_entry(entry, key: str | None = None) -> str:
    """The entry's hash for its version: HMAC-SHA256 with the chain key, or legacy SHA-256."""
    if entry.hash_version == LEGACY_HASH:
        return hashlib.sha256(canonical_bytes(entry)).hexdigest()
    key = key if key is not None else settings.AUDIT_CHAIN_KEY
    return hmac.new(key.encode(), canonical_bytes(entry), hashlib.sha256).hexdigest()


class AuditEntry(models.Model):
    """One configuration change or sensitive action, chained to the tenant's previous entry."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="audit_entries")
    sequence = models.PositiveBigIntegerField()
    created_at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=300, blank=True)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=400, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    hash_version = models.PositiveSmallIntegerField(default=HMAC_HASH)

    objects = TenantManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "sequence"], name="audit_sequence_per_tenant")
        ]
        indexes = [
            models.Index(fields=["tenant", "-created_at", "-id"], name="audit_tenant_time"),
            models.Index(fields=["tenant", "action", "-id"], name="audit_tenant_action"),
            models.Index(fields=["tenant", "actor_name", "-id"], name="audit_tenant_actor"),
        ]
        ordering = ["-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_name or 'system'} {self.action}"

    def canonical(self) -> bytes:
        return canonical_bytes(self)

    def compute_hash(self) -> str:
        return hash_entry(self)
