"""The request a destination receives: body serialized once, signed, with its headers."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass

from django.conf import settings

from integrations import crypto
from integrations.models import Batching, Destination, Provider, SignatureScheme

MASK = "••••••••"
TIMESTAMP_HEADER = "X-OneProtect-Timestamp"
DELIVERY_HEADER = "X-OneProtect-Delivery"
# Standard Webhooks (standardwebhooks.com): the id, timestamp and signature headers.
WEBHOOK_ID_HEADER = "webhook-id"
WEBHOOK_TIMESTAMP_HEADER = "webhook-timestamp"
WEBHOOK_SIGNATURE_HEADER = "webhook-signature"
WHSEC_PREFIX = "whsec_"
WHSEC_MIN_BYTES = 24
WHSEC_MAX_BYTES = 64
SPLUNK_HOST = "oneprotect"
SPLUNK_SOURCE = "oneprotect"


def event_envelope(*, event_id, event_type, event_time, severity, tenant_slug, payload) -> dict:
    """One entry of the `events` array (docs/design.md#request-body); event_time in Unix
    milliseconds."""
    return {
        "event_id": str(event_id),
        "event_type": event_type,
        "event_time": int(event_time.timestamp() * 1000),
        "severity": severity,
        "tenant": tenant_slug,
        "event": payload,
    }


def _compact(document: dict) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def splunk_event(destination: Destination, envelope: dict) -> dict:
    """One event in Splunk's HEC event format (for /services/collector/event): time in
    seconds, host, source, sourcetype, the index when one is set, and the event itself."""
    event = {
        "time": envelope["event_time"] / 1000,
        "host": SPLUNK_HOST,
        "source": SPLUNK_SOURCE,
        "sourcetype": f"{SPLUNK_SOURCE}:{envelope['event_type']}",
    }
    if destination.splunk_index:
        event["index"] = destination.splunk_index
    event["event"] = envelope
    return event


def serialize_body(destination: Destination, envelopes: list[dict]) -> bytes:
    """The exact bytes that are signed and sent. Batched: `{"events": [...]}` (Splunk: one
    HEC event object per line). One event per request: the event object alone."""
    if destination.provider == Provider.SPLUNK_HEC:
        return "\n".join(_compact(splunk_event(destination, e)) for e in envelopes).encode()
    if destination.batching == Batching.SINGLE:
        if len(envelopes) != 1:
            raise ValueError("A destination with one event per request takes exactly one event.")
        return _compact(envelopes[0]).encode()
    return _compact({"events": envelopes}).encode()


def sign(body: bytes, secret: str) -> str:
    """`sha256=<hex HMAC-SHA256 of the exact body bytes>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_value(body: bytes, secret: str, previous_secret: str | None) -> str:
    """One signature, or during a rotation's overlap `sha256=<new>,sha256=<previous>`."""
    value = sign(body, secret)
    if previous_secret:
        value += "," + sign(body, previous_secret)
    return value


# Standard Webhooks --------------------------------------------------------------------------
def generate_whsec() -> str:
    """A Standard Webhooks secret: `whsec_` and the base64 of 32 random bytes."""
    return WHSEC_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def whsec_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret: its base64-decoded bytes (a secret without
    the prefix, which the forms refuse for this scheme, is keyed by its UTF-8 bytes)."""
    if secret.startswith(WHSEC_PREFIX):
        try:
            return base64.b64decode(secret.removeprefix(WHSEC_PREFIX) + "==")
        except (binascii.Error, ValueError):
            pass
    return secret.encode()


def whsec_is_valid(secret: str) -> bool:
    """`whsec_` and the base64 of 24 to 64 bytes, as the Standard Webhooks spec requires."""
    if not secret.startswith(WHSEC_PREFIX):
        return False
    try:
        key = base64.b64decode(secret.removeprefix(WHSEC_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        return False
    return WHSEC_MIN_BYTES <= len(key) <= WHSEC_MAX_BYTES


def sign_standard(message_id: str, timestamp: str, body: bytes, secret: str) -> str:
    """`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">` keyed by the decoded secret."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(whsec_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def standard_signature_value(
    message_id: str, timestamp: str, body: bytes, secret: str, previous_secret: str | None
) -> str:
    """One signature, or during a rotation's overlap both, space-separated (current first)."""
    value = sign_standard(message_id, timestamp, body, secret)
    if previous_secret:
        value += " " + sign_standard(message_id, timestamp, body, previous_secret)
    return value


def derived_message_id(destination: Destination, body: bytes) -> str:
    """A stable id when the caller gives none: the same batch body gives the same id."""
    digest = hashlib.sha256(str(destination.pk).encode() + b"\n" + body).hexdigest()
    return f"msg_{digest[:32]}"


def generate_secret_for(scheme: str) -> str:
    """A new secret in the format the scheme's receivers expect."""
    if scheme == SignatureScheme.STANDARD_WEBHOOKS:
        return generate_whsec()
    return crypto.generate_secret()


@dataclass
class PreparedRequest:
    body: bytes
    headers: dict[str, str]
    shown_headers: dict[str, str]  # what the portal may display: no secret, no custom values
    delivery_uuid: uuid.UUID


def prepare(
    destination: Destination, body: bytes, *, message_id: str | None = None
) -> PreparedRequest:
    """Headers for one attempt: a new delivery UUID and timestamp, signed with current keys.

    `message_id` is the Standard Webhooks `webhook-id`: stable for a batch across its retries
    (the engine passes one per delivery); when None, one is derived from the body."""
    delivery_uuid = uuid.uuid4()
    secret = destination.secret()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": settings.WEBHOOK_USER_AGENT,
    }
    if destination.signature_scheme == SignatureScheme.STANDARD_WEBHOOKS:
        message_id = message_id or derived_message_id(destination, body)
        headers[WEBHOOK_ID_HEADER] = message_id
        headers[WEBHOOK_TIMESTAMP_HEADER] = timestamp
        headers[WEBHOOK_SIGNATURE_HEADER] = standard_signature_value(
            message_id, timestamp, body, secret, destination.previous_secret()
        )
    else:
        headers[destination.signature_header] = signature_value(
            body, secret, destination.previous_secret()
        )
        headers[TIMESTAMP_HEADER] = timestamp
    headers[DELIVERY_HEADER] = str(delivery_uuid)
    shown = dict(headers)
    if destination.provider == Provider.SPLUNK_HEC:
        headers["Authorization"] = f"Splunk {secret}"
        shown["Authorization"] = f"Splunk {MASK}"
    for name, value in destination.custom_headers().items():
        if destination.provider == Provider.SPLUNK_HEC and name.lower() == "authorization":
            continue  # the HEC token is the Authorization on a Splunk destination
        headers[name] = value
        shown[name] = MASK
    return PreparedRequest(body, headers, shown, delivery_uuid)
