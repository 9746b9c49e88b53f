"""The audit page, its CSV export and the integrity check."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from audit.forms import AuditFilterForm
from audit.models import AuditEntry
from audit.selectors import audit_entry_list
from audit.services import chain_head, parse_heads, verify_chain
from portal.filters import keyset_page
from portal.http import TenantRequest
from portal.permissions import Capability, require_capability

PAGE_SIZE = 50
CHANGE_VALUE_LIMIT = 120
EXPORT_CHUNK = 2000
CSV_HEADER = (
    "sequence",
    "time",
    "actor",
    "action",
    "target_type",
    "target_id",
    "target",
    "before",
    "after",
    "ip",
    "user_agent",
    "request_id",
    "prev_hash",
    "hash",
)
# Spreadsheets run cells that start with these as formulas.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# (field, before, after) of an entry, values shortened; None where absent.
Change = tuple[str, str | None, str | None]


@dataclass
class Page:
    """One page of entries and the ids to page from (None: no page that way)."""

    entries: list[AuditEntry]
    newer_cursor: int | None = None
    older_cursor: int | None = None

    @property
    def rows(self) -> list[tuple[AuditEntry, list[Change]]]:
        """Each entry with its recorded changes, as the page shows them."""
        return [(entry, _changes(entry.before, entry.after)) for entry in self.entries]


@require_capability(Capability.VIEW_AUDIT)
@require_GET
def index(request: TenantRequest) -> HttpResponse:
    """The tenant's audit entries, newest first, filtered and keyset-paginated."""
    form = AuditFilterForm(request.GET)
    context: dict[str, Any] = {"form": form, "page": Page([]), "filter_query": ""}
    if not form.is_valid():
        return render(request, "audit/index.html", context, status=400)
    entries = form.apply(audit_entry_list(tenant=request.tenant))
    page = _page(entries, before=form.cleaned_data["before"], after=form.cleaned_data["after"])
    context["page"] = page
    context["filtered"] = form.has_filters()
    context["paged"] = bool(form.cleaned_data["before"] or form.cleaned_data["after"])
    context["filter_query"] = urlencode(form.filter_params())
    return render(request, "audit/index.html", context)


@require_capability(Capability.EXPORT_AUDIT)
@require_GET
@never_cache
def export(request: TenantRequest) -> HttpResponse | StreamingHttpResponse:
    """Stream the filtered entries as CSV, newest first, without loading them all."""
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        context = {"form": form, "page": Page([]), "filter_query": ""}
        return render(request, "audit/index.html", context, status=400)
    entries = form.apply(audit_entry_list(tenant=request.tenant))  # newest first
    filename = f"audit-{request.tenant.slug}-{timezone.localdate():%Y%m%d}.csv"
    return StreamingHttpResponse(
        _csv_lines(entries, head=str(chain_head(request.tenant))),
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@require_capability(Capability.EXPORT_AUDIT, post_only=True)
def verify(request: TenantRequest) -> HttpResponse:
    """Recompute the tenant's hash chain (against a pasted saved head, if one is given) and
    report the outcome on the audit page."""
    pasted = request.POST.get("head", "")[:400].strip()
    expect = None
    if pasted:
        heads = [h for h in parse_heads(pasted) if h.tenant_slug == request.tenant.slug]
        if len(heads) != 1:
            messages.error(
                request,
                "That is not a chain head of this tenant: paste one line "
                f"oneprotect-audit-head:{request.tenant.slug}:<sequence>:<hash>.",
            )
            return redirect("audit:index")
        expect = heads[0]
    result = verify_chain(request.tenant, expect_head=expect)
    if result.ok:
        against = f" up to and including the saved head #{expect.sequence}" if expect else ""
        messages.success(
            request,
            f"Chain intact{against}: {result.checked} entries verified. Head: {result.head}",
        )
    elif result.broken_entry is None:
        messages.error(request, f"The audit chain has been tampered with: {result.reason}.")
    else:
        entry = result.broken_entry
        when = timezone.localtime(entry.created_at).strftime("%Y-%m-%d %H:%M:%S %Z")
        messages.error(
            request,
            f"Entry #{entry.sequence} at {when} ({entry.action}) has been altered or removed: "
            f"{result.reason}",
        )
    return redirect("audit:index")


def _page(entries: QuerySet, *, before: int | None, after: int | None) -> Page:
    rows, newer, older = keyset_page(entries, before=before, after=after, size=PAGE_SIZE)
    return Page(rows, newer_cursor=newer, older_cursor=older)


def _changes(before: Any, after: Any) -> list[Change]:
    """(field, before, after) per recorded field, values shortened; None where absent."""
    before = before if isinstance(before, dict) else {"value": before}
    after = after if isinstance(after, dict) else {"value": after}
    fields = dict.fromkeys([*before, *after])
    return [(str(field), _short(before, field), _short(after, field)) for field in fields]


def _short(values: dict[str, Any], field: str) -> str | None:
    if field not in values:
        return None
    value = values[field]
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= CHANGE_VALUE_LIMIT else text[: CHANGE_VALUE_LIMIT - 1] + "…"


class _Echo:
    """A file-like object whose write hands the line back, for csv.writer over a stream."""

    def write(self, value: str) -> str:
        return value


def _csv_lines(entries: QuerySet, *, head: str) -> Iterator[str]:
    """The rows, then the chain head as of the export (save it: `verify_audit_chain
    --expect-head` and the Verify integrity form detect a later cut or rewrite)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    for entry in entries.iterator(chunk_size=EXPORT_CHUNK):
        yield writer.writerow([_safe_cell(value) for value in _csv_row(entry)])
    yield writer.writerow(["chain head", head])


def _csv_row(entry: AuditEntry) -> list[Any]:
    return [
        entry.sequence,
        entry.created_at.isoformat(),
        entry.actor_name,
        entry.action,
        entry.target_type,
        entry.target_id,
        entry.target_repr,
        json.dumps(entry.before, sort_keys=True, default=str),
        json.dumps(entry.after, sort_keys=True, default=str),
        entry.ip or "",
        entry.user_agent,
        entry.request_id,
        entry.prev_hash,
        entry.hash,
    ]


def _safe_cell(value: Any) -> Any:
    """Neutralise CSV formula injection: a leading quote makes spreadsheets show text."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value
