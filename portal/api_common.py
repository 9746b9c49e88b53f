"""What every router of the API (`/api/v1/`) shares: the base of request schemas, the error
shapes, the documented error responses and keyset pagination with opaque cursors.

Mounted routers: integrations/api.py (destinations, deliveries, events) and audit/api.py (the
audit log), both on portal/api.py's instance.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Protocol, cast

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Field, Schema
from pydantic import ConfigDict, field_validator

from portal.tokens import ApiPrincipal


def _refuse_nul(value: Any) -> Any:
    """PostgreSQL cannot store NUL in text: refuse it anywhere in the input, keys included."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("Must not contain NUL characters.")
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_nul(key)
            _refuse_nul(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_nul(item)
    return value


class ApiInput(Schema):
    """Base of every request body and query: no NUL characters in any field."""

    @field_validator("*", mode="before")
    @classmethod
    def no_nul_characters(cls, value: Any) -> Any:
        return _refuse_nul(value)


def _query_parameters_are_strings(schema: dict[str, Any]) -> None:
    """A query parameter is absent or a string, never JSON null: document it so."""
    for prop in schema.get("properties", {}).values():
        branches = prop.pop("anyOf", None)
        if branches is None:
            continue
        kept = [branch for branch in branches if branch != {"type": "null"}]
        if len(kept) == 1:
            prop.update(kept[0])
        else:
            prop["anyOf"] = kept


class ApiQuery(ApiInput):
    """Base of query filters (every value arrives as text; repeating a parameter is an error)."""

    model_config = ConfigDict(json_schema_extra=_query_parameters_are_strings)


# Errors -----------------------------------------------------------------------------------------
class ErrorOut(Schema):
    detail: str = Field(..., examples=["Not found."])


class ValidationErrorOut(Schema):
    detail: str = Field(..., examples=["Validation failed"])
    errors: dict[str, list[str]] = Field(
        ...,
        description="Messages per field name; `body` for the request body as a whole.",
        examples=[{"endpoint_url": ["endpoint_url must not target a private or reserved address"]}],
    )


# Destinations -----------------------------------------------------------------------------------


# Documented error responses (one shape each: {"detail": ...}, plus "errors" for 400).
DENIED = {401: ErrorOut, 403: ErrorOut}
NOT_FOUND = {404: ErrorOut}
INVALID = {400: ValidationErrorOut}
BODY = {**INVALID, 413: ErrorOut}
LIMITED = {429: ErrorOut}  # with Retry-After (portal/ratelimits.py)


class _TokenAuthenticatedRequest(Protocol):
    """A request past ApiTokenAuth: ninja sets `auth` to what the auth class returned."""

    auth: ApiPrincipal


def request_principal(request: HttpRequest) -> ApiPrincipal:
    """Who calls: the token's user, tenant and membership (set by ApiTokenAuth; never the
    session)."""
    return cast(_TokenAuthenticatedRequest, request).auth


def invalid(errors: dict[str, list[str]]) -> ValidationError:
    """A 400 with field errors (portal/api.py renders it)."""
    return ValidationError({field: list(messages) for field, messages in errors.items()})


# Pagination -----------------------------------------------------------------------------------
INVALID_CURSOR = "Invalid cursor: pass next_cursor as it was returned."


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = text.partition(":")
        last_id = int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid({"cursor": [INVALID_CURSOR]}) from None
    if kind != "id" or last_id < 1:
        raise invalid({"cursor": [INVALID_CURSOR]})
    return last_id


def paginate(queryset: QuerySet, *, cursor: str | None, limit: int) -> tuple[list, str | None]:
    """Newest first by id (keyset pagination: stable while rows are added)."""
    if cursor:
        queryset = queryset.filter(id__lt=_decode_cursor(cursor))
    rows = list(queryset.order_by("-id")[: limit + 1])
    next_cursor = _encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor
