"""The audit log API (`/api/v1/audit-logs`), mounted by portal/api.py beside integrations'
router: every role may read its tenant's entries."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query, Router

from audit.api_schemas import AuditFilters, AuditPage
from audit.models import AuditEntry
from audit.selectors import audit_entry_list
from portal.api_common import DENIED, INVALID, paginate, request_principal
from portal.permissions import Capability
from portal.tokens import requires

router = Router()


def _audit_entry_out(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.pk,
        "sequence": entry.sequence,
        "created_at": entry.created_at,
        "actor": entry.actor_name,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "target": entry.target_repr,
        "before": entry.before or {},
        "after": entry.after or {},
        "ip": entry.ip,
        "user_agent": entry.user_agent,
        "request_id": entry.request_id,
        "hash": entry.hash,
    }


@router.get(
    "/audit-logs",
    response={200: AuditPage, **INVALID, **DENIED},
    tags=["Audit"],
    summary="List audit log entries",
    **requires(Capability.VIEW_AUDIT),
)
def list_audit_logs(request: HttpRequest, filters: Query[AuditFilters]):
    """The tenant's audit entries, newest first; filter by exact action or actor email."""
    entries = audit_entry_list(
        tenant=request_principal(request).tenant, action=filters.action, actor=filters.actor
    )
    rows, next_cursor = paginate(entries, cursor=filters.cursor, limit=filters.limit)
    return {"items": [_audit_entry_out(row) for row in rows], "next_cursor": next_cursor}
