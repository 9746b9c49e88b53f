"""The request a destination receives: body serialized once, signed, with its headers."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass

from django.conf import settings

from integrations.models import Batching, Destination, Provider

MASK = "••••••••"
TIMESTAMP_HEADER = "X-OneProtect-Timestamp"
DELIVERY_HEADER = "X-OneProtect-Delivery"
SPLUNK_HOST = "oneprotect"
SPLUNK_SOURCE = "oneprotect"


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


@dataclass
class PreparedRequest:
    body: bytes
    headers: dict[str, str]
    shown_headers: dict[str, str]  # what the portal may display: no secret, no custom values
    delivery_uuid: uuid.UUID


def prepare(destination: Destination, body: bytes) -> PreparedRequest:
    """Headers for one attempt: a new delivery UUID and timestamp, signed with current keys."""
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
        if destination.provider == Provider.SPLUNK_HEC and name.lower() == "authorization":
            continue  # the HEC token is the Authorization on a Splunk destination
        headers[name] = value
        shown[name] = MASK
    return PreparedRequest(body, headers, shown, delivery_uuid)
