"""The API instance (`/api/`): bearer-token auth, one JSON error shape, the OpenAPI document
(`/api/openapi.json`) and Swagger UI (`/api/docs`, assets served from our own static files).

Error shape: every error is `{"detail": "..."}`; a 400 also has `"errors"`, messages by field
name (`"body"` for the body as a whole). Bad input is never a 500: malformed JSON, wrong types,
NUL characters and unknown enum values are 400; a body over EVENTS_BATCH_MAX_BYTES (or Django's
DATA_UPLOAD_MAX_MEMORY_SIZE, if lower) is 413.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI, Swagger
from ninja.errors import HttpError
from ninja.errors import ValidationError as RequestValidationError
from ninja.parser import Parser

from audit.api import router as audit_router
from integrations.api import router as v1_router
from integrations.api_schemas import BODY_TAGS
from portal.ratelimits import RateLimited
from portal.tokens import ApiTokenAuth

DESCRIPTION = """
The OneProtect Integrations API. Every call acts in the tenant of its API token, as the
token's user, with that user's current role (the same permissions as the portal).

**Authentication**: create a token in the portal under *Settings → API tokens*, then send
`Authorization: Bearer <token>` (in Swagger: **Authorize**). Session cookies are not accepted.

**Errors**: `{"detail": "..."}`; validation errors are 400 with `"errors"`, the messages
per field name, e.g.
`{"detail": "Validation failed", "errors": {"endpoint_url": ["endpoint_url must not target a
private or reserved address"]}}`.

**Publishing events**: `POST /api/v1/events` takes one event, or a batch of up to 1,000
(EVENTS_BATCH_MAX_COUNT; a body of at most EVENTS_BATCH_MAX_BYTES, 5 MiB by default):
`{"events": [{"event_type": "detection.alert", "event": {...}}, ...]}`. A batch is stored all
or nothing: a 400 names each bad item, e.g. `{"errors": {"events[3].event_type": ["..."]}}`.
Publishing is idempotent on `event_id`; a batch's answer gives each item's `event_id` and
`status` (`created` or `duplicate`).

**Roles**: reads need any role; writes (destinations, test, rotate-secret, resend) and
publishing events need the admin role; the audit log is readable by every role.
"""

VALIDATION_FAILED = "Validation failed"
BODY_REQUIRED = "Send a JSON object in the request body."


class NotAnObject(ValueError):
    pass


class JsonObjectParser(Parser):
    """Request bodies are JSON objects; anything else is refused before validation."""

    # ninja declares a dict, but its caller takes None as no body (params.models.BodyModel).
    def parse_body(self, request: HttpRequest) -> dict | None:  # type: ignore[override]
        if len(request.body) > settings.EVENTS_BATCH_MAX_BYTES:
            raise RequestDataTooBig  # the largest body the API takes: a full batch of events
        data = json.loads(request.body)
        if data is None:
            return None  # JSON null: as if no body was sent
        if not isinstance(data, dict):
            raise NotAnObject("The request body must be a JSON object.")
        return data

    def parse_querydict(self, data, list_fields: list[str], request: HttpRequest) -> dict:
        """A parameter given twice stays a list, so that a single-valued one is refused
        instead of silently taking the last value."""
        result = {}
        for key in data:
            values = data.getlist(key)
            result[key] = values if key in list_fields or len(values) > 1 else values[0]
        return result


class OneProtectApi(NinjaAPI):
    def get_openapi_operation_id(self, operation) -> str:
        """Plain operation ids (`create_destination`) for generated clients."""
        return operation.view_func.__name__


api = OneProtectApi(
    title="OneProtect Integrations API",
    version="1.0.0",
    description=DESCRIPTION,
    urls_namespace="api",
    parser=JsonObjectParser(),
    auth=ApiTokenAuth(),  # operations add their capability with portal.tokens.requires()
    # The validator badge would call validator.swagger.io: keep the docs page self-contained.
    docs=Swagger(settings={"validatorUrl": None, "persistAuthorization": False}),
)
api.add_router("/v1/", v1_router)
api.add_router("/v1/", audit_router)  # /v1/audit-logs, after integrations' operations


def _json(request: HttpRequest, body: dict, status: int) -> HttpResponse:
    response = api.create_response(request, body, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def _invalid(request: HttpRequest, errors: dict[str, list[str]]) -> HttpResponse:
    return _json(request, {"detail": VALIDATION_FAILED, "errors": errors}, 400)


def _field_of(location: tuple) -> str:
    """The top-level field an input error is about: ("body", "payload", "name") → "name"."""
    source, *rest = location or ("body",)
    if source == "body":
        rest = rest[1:]  # the operation's parameter name
    names = [str(part) for part in rest if not isinstance(part, int) and part not in BODY_TAGS]
    return names[0] if names else str(source)


def _message(error: dict, field: str) -> str:
    if error.get("type") == "missing":
        return BODY_REQUIRED if field == "body" else "This field is required."
    return str(error.get("msg", "Invalid value.")).removeprefix("Value error, ")


@api.exception_handler(RequestValidationError)
def wrong_types(request: HttpRequest, exc: RequestValidationError) -> HttpResponse:
    """Pydantic's type errors (ninja would answer 422) in the one 400 shape."""
    errors: dict[str, list[str]] = {}
    for error in exc.errors:
        field = _field_of(tuple(error.get("loc", ())))
        errors.setdefault(field, []).append(_message(error, field))
    return _invalid(request, errors)


@api.exception_handler(ValidationError)
def invalid_input(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """Field errors raised by operations (from DestinationForm, validate_event, ...)."""
    if hasattr(exc, "error_dict"):
        return _invalid(request, exc.message_dict)
    return _invalid(request, {"body": exc.messages})


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    """401, 403, 409 and ninja's own 400 for a body it cannot read."""
    cause = exc.__cause__
    if isinstance(cause, RequestDataTooBig):  # refused by JsonObjectParser
        return too_large(request, cause)
    if exc.status_code == 400:
        reason = "The request body is not valid JSON."
        if isinstance(cause, NotAnObject):
            reason = str(cause)
        elif isinstance(cause, json.JSONDecodeError):
            reason = f"The request body is not valid JSON: {cause.msg} at position {cause.pos}."
        return _invalid(request, {"body": [reason]})
    return _json(request, {"detail": exc.message}, exc.status_code)


@api.exception_handler(RequestDataTooBig)
def too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    limit = min(settings.EVENTS_BATCH_MAX_BYTES, settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2**63)
    detail = f"The request body is too large: the limit is {limit} bytes."
    return _json(request, {"detail": detail}, 413)


@api.exception_handler(RateLimited)
def rate_limited(request: HttpRequest, exc: RateLimited) -> HttpResponse:
    response = _json(request, {"detail": str(exc)}, 429)
    response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(Http404)
def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _json(request, {"detail": "Not found."}, 404)


@api.exception_handler(PermissionDenied)
def permission_denied(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    return _json(request, {"detail": str(exc) or "Your role does not allow this."}, 403)


def unknown_endpoint(request: HttpRequest, path: str = "") -> JsonResponse:
    """Any other /api/ URL: a JSON 404 rather than the portal's page."""
    return JsonResponse({"detail": "Not found: see /api/docs for the endpoints."}, status=404)
