"""Request and response shapes of the audit log API (`/api/v1/audit-logs`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ninja import Field, Schema

from portal.api_common import ApiQuery


class AuditFilters(ApiQuery):
    action: str | None = Field(None, examples=["destination.created"])
    actor: str | None = Field(None, description="The actor's email address.")
    cursor: str | None = Field(None, description="`next_cursor` of the previous page.")
    limit: int = Field(50, ge=1, le=200)


class AuditEntryOut(Schema):
    id: int
    sequence: int
    created_at: datetime
    actor: str
    action: str
    target_type: str
    target_id: str
    target: str
    before: dict[str, Any]
    after: dict[str, Any]
    ip: str | None
    user_agent: str
    request_id: str
    hash: str


class AuditPage(Schema):
    items: list[AuditEntryOut]
    next_cursor: str | None
