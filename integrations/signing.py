"""The request a destination receives: body serialized once, signed, with its headers."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass

from django.conf import settings

from integrations.models import Destination, Provider

MASK = "••••••••"
TIMESTAMP_HEADER = "X-OneProtect-Timestamp"
DELIVERY_HEADER = "X-OneProtect-Delivery"


def event_envelope(*, event_id, event_type, event_time, severity, tenant_slug, payload) -> dict:
    """One entry of the `events` array (SPEC §5); event_time in Unix milliseconds."""
    return {
        "event_id": str(event_id),
        "event_type": event_type,
        "event_time": int(event_time.timestamp() * 1000),
        "severity": severity,
        "tenant": tenant_slug,
        "event": payload,
    }


def serialize_body(destination: Destination, envelopes: list[dict]) -> bytes:
    """The exact bytes that are signed and sent."""
    if destination.provider == Provider.SPLUNK_HEC:
        lines = [
            json.dumps(
                {
                    "time": envelope["event_time"] / 1000,
                    "host": "oneprotect",
                    "source": "oneprotect",
                    "sourcetype": f"oneprotect:{envelope['event_type']}",
                    "event": envelope,
                },
                separators=(",", ":"),
                ensure_ascii=False,
            )
            for envelope in envelopes
        ]
        return "\n".join(lines).encode()
    return json.dumps({"events": envelopes}, separators=(",", ":"), ensure_ascii=False).encode()


def sign(body: bytes, secret: str) -> str:
    """`sha256=<hex HMAC-SHA256 of the exact body bytes>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_value(body: bytes, secret: str, previous_secret: str | None) -> str:
    """One signature, or during a rotation's overlap `sha256=<new>,sha256=<previous>`."""
    value = sign(body, secret)
    if previous_secret:
        value += "," + sign(body, previous_secret)
    return value


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

    `message_id` names the batch, the same across its retries (signature schemes that
    cover an id use it).
    """
    delivery_uuid = uuid.uuid4()
    secret = destination.secret()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": settings.WEBHOOK_USER_AGENT,
        destination.signature_header: signature_value(body, secret, destination.previous_secret()),
        TIMESTAMP_HEADER: str(int(time.time())),
        DELIVERY_HEADER: str(delivery_uuid),
    }
    shown = dict(headers)
    if destination.provider == Provider.SPLUNK_HEC:
        headers["Authorization"] = f"Splunk {secret}"
        shown["Authorization"] = f"Splunk {MASK}"
    for name, value in destination.custom_headers().items():
        headers[name] = value
        shown[name] = MASK
    return PreparedRequest(body, headers, shown, delivery_uuid)
