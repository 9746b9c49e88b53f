"""Writing and verifying audit entries."""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from audit.models import GENESIS_HASH, HMAC_HASH, LEGACY_HASH, AuditEntry
from audit.signals import audit_entry_recorded
from portal.logging import client_var, request_id_var
from portal.models import Tenant

SECRET_MARK = "changed"  # noqa: S105 (the word shown in place of a secret)


def lock_chain(tenant_id: int) -> None:
    """Serialize appends to one tenant's chain until the transaction ends.

    Lock order (no deadlocks): a service that will audit takes this lock *before* any
    destination row lock, because recording fans the entry out as an `audit_log` event, which
    locks the tenant's destination rows. Taking it again later in the transaction is free."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [0x0A0D17, tenant_id])


def record(
    *,
    tenant: Tenant,
    actor=None,
    action: str,
    target=None,
    target_repr: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    actor_name: str = "",
) -> AuditEntry:
    """Append one entry to the tenant's chain, in the caller's transaction."""
    with transaction.atomic():
        lock_chain(tenant.pk)
        last = (
            AuditEntry.objects.filter(tenant=tenant)
            .order_by("-sequence")
            .values("sequence", "hash")
            .first()
        )
        client = client_var.get() or {}
        entry = AuditEntry(
            tenant=tenant,
            sequence=(last["sequence"] + 1) if last else 1,
            created_at=timezone.now(),
            actor=actor if actor is not None and actor.pk else None,
            actor_name=actor_name or (actor.email if actor is not None else "system"),
            action=action,
            target_type=type(target).__name__.lower() if target is not None else "",
            target_id=str(target.pk) if target is not None and target.pk is not None else "",
            target_repr=(target_repr or (str(target) if target is not None else ""))[:300],
            before=before or {},
            after=after or {},
            ip=client.get("ip"),
            user_agent=client.get("user_agent", ""),
            request_id=request_id_var.get() if request_id_var.get() != "-" else "",
            prev_hash=last["hash"] if last else GENESIS_HASH,
        )
        entry.hash = entry.compute_hash()
        entry.save(force_insert=True)
        # Each entry is also an `audit_log` event for the tenant's destinations (integrations
        # receives this; audit does not import it). Sent in the transaction, like the entry.
        audit_entry_recorded.send(sender=AuditEntry, entry=entry)
        return entry


def diff(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict, dict]:
    """Only the fields that changed, as (before, after)."""
    keys = [k for k in after if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}


@dataclass(frozen=True)
class ChainHead:
    """A tenant's last entry, saved somewhere safe to detect a later cut or rewrite."""

    tenant_slug: str
    sequence: int
    hash: str

    def __str__(self) -> str:
        return f"{HEAD_PREFIX}{self.tenant_slug}:{self.sequence}:{self.hash}"


HEAD_PREFIX = "oneprotect-audit-head:"
HEAD_RE = re.compile(r"oneprotect-audit-head:([A-Za-z0-9_-]{1,100}):(\d{1,18}):([0-9a-f]{64})")


def chain_head(tenant: Tenant) -> ChainHead:
    last = (
        AuditEntry.objects.filter(tenant=tenant)
        .order_by("-sequence")
        .values("sequence", "hash")
        .first()
    )
    if last is None:
        return ChainHead(tenant.slug, 0, GENESIS_HASH)
    return ChainHead(tenant.slug, last["sequence"], last["hash"])


def parse_heads(text: str) -> list[ChainHead]:
    """Every head written in a text (a saved file, a pasted line, the CSV export's last row)."""
    return [
        ChainHead(slug, int(sequence), digest) for slug, sequence, digest in HEAD_RE.findall(text)
    ]


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    broken_entry: AuditEntry | None = None
    reason: str = ""
    head: ChainHead | None = None


def verify_chain(
    tenant: Tenant, *, chunk: int = 2000, expect_head: ChainHead | None = None
) -> VerifyResult:
    """Recompute the tenant's chain; report the first entry that was altered or removed.

    With `expect_head` (saved earlier), also report a chain cut off before that entry or
    rewritten up to it (the entry at that sequence must still carry that hash)."""
    expected_prev = GENESIS_HASH
    expected_sequence = 1
    checked = 0
    seen_hmac = False
    head_seen = expect_head is None or expect_head.sequence == 0
    entries: Iterable[AuditEntry] = (
        AuditEntry.objects.filter(tenant=tenant).order_by("sequence").iterator(chunk_size=chunk)
    )
    for entry in entries:
        if entry.sequence != expected_sequence:
            reason = f"entry #{expected_sequence} is missing before #{entry.sequence}"
            return VerifyResult(False, checked, entry, reason)
        if entry.prev_hash != expected_prev:
            return VerifyResult(False, checked, entry, "its link to the previous entry is broken")
        if entry.hash_version not in (LEGACY_HASH, HMAC_HASH) or (
            entry.hash_version == LEGACY_HASH and seen_hmac
        ):
            return VerifyResult(False, checked, entry, "its hash version was downgraded")
        seen_hmac = seen_hmac or entry.hash_version == HMAC_HASH
        if not hmac.compare_digest(entry.compute_hash(), entry.hash):
            return VerifyResult(False, checked, entry, "its content does not match its hash")
        if expect_head is not None and entry.sequence == expect_head.sequence:
            if not hmac.compare_digest(entry.hash, expect_head.hash):
                reason = "the chain was rewritten after the saved head (its hash differs)"
                return VerifyResult(False, checked, entry, reason)
            head_seen = True
        expected_prev = entry.hash
        expected_sequence += 1
        checked += 1
    if expect_head is not None and not head_seen:  # head_seen starts True without one
        reason = (
            f"the chain was cut off: it ends at #{expected_sequence - 1}, before the saved "
            f"head #{expect_head.sequence}"
        )
        return VerifyResult(False, checked, None, reason)
    head = ChainHead(tenant.slug, expected_sequence - 1, expected_prev)
    return VerifyResult(True, checked, head=head)
