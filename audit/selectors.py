"""Reads of the audit log, always within one tenant's chain."""

from __future__ import annotations

from django.db.models import QuerySet

from audit.models import AuditEntry
from portal.models import Tenant


def audit_entry_list(
    *, tenant: Tenant, action: str | None = None, actor: str | None = None
) -> QuerySet[AuditEntry]:
    """The tenant's entries, newest first; optionally of one action, or by one actor (the
    actor's email, in any case)."""
    entries = AuditEntry.objects.for_tenant(tenant)
    if action:
        entries = entries.filter(action=action)
    if actor:
        entries = entries.filter(actor_name__iexact=actor)
    return entries.order_by("-id")
