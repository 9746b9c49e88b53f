"""Every router mounted on the API instance: each operation's auth enforces the capability it
declares, and the audit log keeps its place (`/api/v1/audit-logs`, `list_audit_logs`, tag
Audit) now that audit/api.py serves it."""

from __future__ import annotations

from audit.api import router as audit_router
from integrations.api import router as integrations_router
from portal.api import api
from portal.permissions import Capability
from portal.tokens import ApiTokenAuth


def _mounted_routers():
    return [router for _, router in api._routers if router.path_operations]


def test_the_integrations_and_audit_routers_are_mounted_under_v1():
    mounted = {id(router): prefix for prefix, router in api._routers}
    assert mounted[id(integrations_router)] == "/v1/"
    assert mounted[id(audit_router)] == "/v1/"


def test_every_mounted_operation_enforces_its_declared_capability():
    names = []
    for router in _mounted_routers():
        for path_view in router.path_operations.values():
            for operation in path_view.operations:
                [auth] = operation.auth_callbacks
                assert isinstance(auth, ApiTokenAuth), operation.view_func.__name__
                declared = operation.openapi_extra["x-required-capability"]
                assert auth.capability == declared, operation.view_func.__name__
                names.append(operation.view_func.__name__)
    assert "list_audit_logs" in names and "list_destinations" in names


def test_the_audit_log_operation_is_unchanged_in_the_schema():
    operation = api.get_openapi_schema()["paths"]["/api/v1/audit-logs"]["get"]
    assert operation["operationId"] == "list_audit_logs"
    assert operation["tags"] == ["Audit"]
    assert operation["x-required-capability"] == Capability.VIEW_AUDIT
    assert operation["responses"][200]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AuditPage"
    }
