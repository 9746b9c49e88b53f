"""Audit entries published as `audit_log` events, and the engine's own audit entries."""

from __future__ import annotations

import uuid

from audit.models import AuditEntry
from audit.services import record
from integrations.catalogue import EventType, Severity
from integrations.events import event_publish
from integrations.models import Destination

AUDIT_EVENT_NAMESPACE = uuid.UUID("6f1c6a55-5a4e-4f5b-9a43-0a6f1f7d2b11")


def publish_audit_entry(entry: AuditEntry) -> None:
    """Publish in the entry's transaction; the id derives from the entry, so once only."""
    event_publish(
        tenant=entry.tenant,
        event_type=EventType.AUDIT_LOG,
        severity=Severity.INFO,
        event_id=uuid.uuid5(AUDIT_EVENT_NAMESPACE, entry.hash),
        event_time=entry.created_at,
        payload={
            "sequence": entry.sequence,
            "action": entry.action,
            "actor": entry.actor_name,
            "target_type": entry.target_type,
            "target_id": entry.target_id,
            "target": entry.target_repr,
            "before": entry.before,
            "after": entry.after,
            "ip": entry.ip,
            "request_id": entry.request_id,
            "hash": entry.hash,
        },
    )


def on_audit_entry_recorded(sender, *, entry: AuditEntry, **kwargs) -> None:
    """Receiver of `audit.signals.audit_entry_recorded`: every entry is an event
    (docs/design.md#audit)."""
    publish_audit_entry(entry)


ENGINE_ACTOR = "system (delivery engine)"


def record_auto_disable(destination_id, reason: str) -> None:
    """Audit the engine disabling a destination that kept failing (docs/design.md#auto-disable).

    For the engine to call once the disable is committed (e.g. on_commit beside its `disabled`
    health event). Idempotent for one disable: nothing is written unless the destination is
    still disabled and its latest audit entry for this is older than the disable."""
    destination = Destination.objects.select_related("tenant").filter(pk=destination_id).first()
    if destination is None or destination.disabled_at is None:
        return
    already = AuditEntry.objects.filter(
        tenant=destination.tenant,
        action="destination.auto_disabled",
        target_id=str(destination.pk),
        created_at__gte=destination.disabled_at,
    ).exists()
    if already:
        return
    record(
        tenant=destination.tenant,
        action="destination.auto_disabled",
        actor_name=ENGINE_ACTOR,
        target=destination,
        before={"disabled": False},
        after={"disabled": True, "reason": reason[:300]},
    )
