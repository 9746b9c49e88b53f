"""Tenant scoping by default (NetBox's RestrictedQuerySet idea, enforced at query time).

Every tenant-owned model's manager is a :class:`TenantQuerySet`. While a view or API handler
runs (`TenantScopeMiddleware`), a query on such a model must say whose rows it reads: it
filters on a `tenant_id` (`for_tenant(tenant)` is the easy way), comes from a related manager
of an object already loaded (`destination.deliveries`, scoped by its parent), or says
`unscoped(reason)` out loud (signing in with a token, staff pages, the Django admin). Anything
else raises :class:`UnscopedQuery` before it reaches the database, so an unscoped read cannot
leak another tenant's rows; the permission sweeps run every view and handler under this guard.

Workers, commands and the shell are not requests: there the guard is off.
"""

from __future__ import annotations

import contextvars
from typing import Any, cast

from django.db import models
from django.db.models.expressions import Col
from django.db.models.lookups import Lookup
from django.db.models.sql import Query

_guarded: contextvars.ContextVar[bool] = contextvars.ContextVar("tenant_scope_guard", default=False)


class UnscopedQuery(RuntimeError):
    """A query on tenant-owned rows, during a request, that names no tenant."""


def guarded() -> bool:
    return _guarded.get()


class guard:
    """Turn the guard on (or off) for the block: the middleware and the tests use it."""

    def __init__(self, on: bool = True):
        self.on = on

    def __enter__(self) -> None:
        self._token = _guarded.set(self.on)

    def __exit__(self, *exc: object) -> None:
        _guarded.reset(self._token)


def _names_a_tenant(node: Any) -> bool:
    """Whether a WHERE tree constrains some `tenant_id` column (exact or in)."""
    if isinstance(node, Lookup):
        lhs = node.lhs
        return (
            isinstance(lhs, Col)
            and lhs.target.attname == "tenant_id"
            and node.lookup_name in ("exact", "in")
        )
    if getattr(node, "negated", False):
        return False  # exclude(tenant=a) reads every other tenant's rows
    children = getattr(node, "children", [])
    if getattr(node, "connector", "AND") != "AND":
        return bool(children) and all(_names_a_tenant(child) for child in children)  # an OR
    return any(_names_a_tenant(child) for child in children)


class TenantQuery(Query):
    """A Query that checks, when compiled under the guard, that it is scoped."""

    scope: str = ""  # "related" or "unscoped: <reason>" when scoped another way

    def get_compiler(self, using=None, connection=None, elide_empty=True):
        if _guarded.get() and not self.scope and not _names_a_tenant(self.where):
            raise UnscopedQuery(  # the caller's frame is in the traceback
                f"A query on {self.model._meta.label} names no tenant during a request: "
                "use .for_tenant(tenant), a related manager, or .unscoped(reason)."
            )
        return super().get_compiler(using, connection, elide_empty)


class TenantQuerySet(models.QuerySet):
    """The one place where tenant-owned rows are scoped to a tenant."""

    def __init__(self, model=None, query=None, using=None, hints=None):
        super().__init__(model, query or TenantQuery(model), using, hints)

    def for_tenant(self, tenant) -> TenantQuerySet:
        if tenant is None:
            return _with_scope(self.none(), "no tenant: no rows")
        return self.filter(tenant=tenant)

    def unscoped(self, reason: str) -> TenantQuerySet:
        """Every tenant's rows, on purpose (say why: it shows in reviews and greps)."""
        return _with_scope(self.all(), f"unscoped: {reason}")

    def _scoped_by_parent(self) -> TenantQuerySet:
        return _with_scope(self.all(), "related")

    # Writes run through UpdateQuery/DeleteQuery, not TenantQuery: check them here.
    def update(self, **kwargs):
        self._check_write()
        return super().update(**kwargs)

    def delete(self):
        self._check_write()
        return super().delete()

    def _check_write(self) -> None:
        query = self.query
        if (
            _guarded.get()
            and isinstance(query, TenantQuery)
            and not query.scope
            and not _names_a_tenant(query.where)
        ):
            raise UnscopedQuery(f"An unscoped write to {self.model._meta.label} during a request.")


def _with_scope(queryset: TenantQuerySet, scope: str) -> TenantQuerySet:
    cast(TenantQuery, queryset.query).scope = scope
    return queryset


class TenantManager(models.Manager):
    """The manager of tenant-owned models: for_tenant(tenant), or unscoped(reason)."""

    def get_queryset(self) -> TenantQuerySet:
        queryset = TenantQuerySet(self.model, using=self._db)
        if getattr(self, "instance", None) is not None:  # a related manager: its parent scopes
            return queryset._scoped_by_parent()
        return queryset

    def for_tenant(self, tenant) -> TenantQuerySet:
        return self.get_queryset().for_tenant(tenant)

    def unscoped(self, reason: str) -> TenantQuerySet:
        return self.get_queryset().unscoped(reason)


class TenantScopeMiddleware:
    """Run views and API handlers under the guard (the Django admin is staff-only and spans
    tenants by design: it is left out)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with guard(not request.path.startswith("/admin/")):
            return self.get_response(request)
