"""Helping receivers verify our signatures: the exact headers a destination sends, code to check
them, and a checker that says why a pasted body does not verify.

The checker is an oracle for "does this body verify with this destination's secret" only; the
secret itself is never shown, logged or echoed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.conf import settings

from integrations.delivery.signing import (
    DELIVERY_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_ID_HEADER,
    WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_TIMESTAMP_HEADER,
    sign,
    sign_standard,
)
from integrations.models import Batching, Destination, Provider, SignatureScheme

MAX_BODY_BYTES = 1024 * 1024
MAX_SIGNATURE_CHARS = 4096
SIGNATURE_RE = re.compile(r"sha256=([0-9a-fA-F]{64})(?![0-9a-fA-F])")
STANDARD_SIGNATURE_RE = re.compile(r"v1,([A-Za-z0-9+/]{43}=)")
MAX_MESSAGE_ID_CHARS = 256
TOLERANCE_SECONDS = 5 * 60

CURRENT = "current"
PREVIOUS = "previous"

REVERIFY_RAW = "Verify the raw bytes exactly as received, before any parsing or decoding."
CAUSE_RESERIALIZED = (
    "Your code re-serialized the JSON before verifying (parsed it and wrote it out again, "
    "which changes spaces, key order or escapes): verify the raw bytes."
)
CAUSE_NEWLINE_ADDED = "A trailing newline was added to the body. " + REVERIFY_RAW
CAUSE_NEWLINE_REMOVED = "A trailing newline was removed from the body. " + REVERIFY_RAW
CAUSE_LINE_ENDINGS = "Line endings were converted (LF ↔ CRLF). " + REVERIFY_RAW
CAUSE_MISMATCH = (
    "If the body is exactly what you received, your receiver uses a different secret than "
    "this destination's current (or, during a rotation overlap, previous) secret, or the "
    "signature belongs to another request."
)


@dataclass(frozen=True)
class SignatureCheck:
    """The checker's answer: which secret verified (if any) and the likely cause if none."""

    verified_with: str | None  # CURRENT, PREVIOUS or None
    cause: str = ""
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.verified_with is not None

    @property
    def message(self) -> str:
        if self.verified_with == CURRENT:
            return "Verified with the current secret"
        if self.verified_with == PREVIOUS:
            return "Verified with the previous secret (rotation overlap)"
        return "Does not verify"


class SignatureInputError(ValueError):
    """The pasted input cannot be checked (too large, empty, not a signature value)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_signatures(value: str) -> list[str]:
    """The lower-case hex digests of every `sha256=<hex>` in a header value (or a pasted line)."""
    return [digest.lower() for digest in SIGNATURE_RE.findall(value)]


def parse_standard_signatures(value: str) -> list[str]:
    """The base64 digests of every `v1,<base64>` in a `webhook-signature` value."""
    return STANDARD_SIGNATURE_RE.findall(value)


def check_signature(
    *,
    destination: Destination,
    body: str,
    signature: str,
    message_id: str = "",
    timestamp: str = "",
) -> SignatureCheck:
    """Verify a pasted body against the destination's current and previous secret; if neither
    verifies, find the usual cause by trying the changes receivers' code tends to make.

    For Standard Webhooks destinations the `webhook-id` and `webhook-timestamp` are signed
    with the body: `message_id` and `timestamp` are required."""
    if len(signature) > MAX_SIGNATURE_CHARS:
        raise SignatureInputError(
            "signature", "The signature value is too long: paste the header's value."
        )
    standard = destination.signature_scheme == SignatureScheme.STANDARD_WEBHOOKS
    note = ""
    if standard:
        digests = parse_standard_signatures(signature)
        if not digests:
            raise SignatureInputError(
                "signature",
                "Paste the webhook-signature header's value: v1,<base64> (two, space "
                "separated, during a rotation overlap).",
            )
        message_id = message_id.strip()
        timestamp = timestamp.strip()
        if not message_id or len(message_id) > MAX_MESSAGE_ID_CHARS or not message_id.isascii():
            raise SignatureInputError("webhook_id", "Paste the webhook-id header's value.")
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            raise SignatureInputError(
                "webhook_timestamp",
                "Paste the webhook-timestamp header's value: Unix time in seconds.",
            )
        if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
            note = (
                "The timestamp is more than 5 minutes from now: a receiver must refuse this "
                "request (replay protection) even though it is signed."
            )
    else:
        digests = parse_signatures(signature)
        if not digests:
            raise SignatureInputError(
                "signature",
                "Paste the signature header's value: sha256=<64 hex digits> (two, comma "
                "separated, during a rotation overlap).",
            )
    # Browsers submit a textarea's line breaks as CRLF; we never send CR, so compare as LF.
    text = body.replace("\r\n", "\n")
    raw = text.encode("utf-8")
    if len(raw) > MAX_BODY_BYTES:
        raise SignatureInputError(
            "body", "The body is larger than 1 MiB, the most a delivery carries."
        )
    if not raw:
        raise SignatureInputError("body", "Paste the request body you received.")
    secrets = [(CURRENT, destination.secret())]
    previous = destination.previous_secret()
    if previous:
        secrets.append((PREVIOUS, previous))
    if standard:
        verify = _standard_verifier(digests, secrets, message_id, timestamp)
    else:
        verify = _verifier(digests, secrets)

    verified_with = verify(raw)
    if verified_with:
        if "\n" in text:
            note = " ".join(
                filter(
                    None,
                    [
                        note,
                        "Line breaks were compared as LF, as we send them. If your code sees "
                        "CRLF, something converted the line endings: verify the raw bytes.",
                    ],
                )
            )
        return SignatureCheck(verified_with, note=note)
    for cause, candidates in _likely_changes(text):
        for candidate in candidates:
            verified_with = verify(candidate)
            if verified_with:
                return SignatureCheck(None, cause=cause, note=_secret_note(verified_with))
    return SignatureCheck(None, cause=CAUSE_MISMATCH)


def _standard_verifier(
    digests: list[str], secrets: list[tuple[str, str]], message_id: str, timestamp: str
) -> Callable:
    given = []
    for digest in digests:
        try:
            given.append(base64.b64decode(digest, validate=True))
        except (binascii.Error, ValueError):
            continue

    def verify(candidate: bytes) -> str | None:
        """Which secret signs id.timestamp.candidate, comparing bytes in constant time."""
        for name, secret in secrets:
            value = sign_standard(message_id, timestamp, candidate, secret)
            expected = base64.b64decode(value.removeprefix("v1,"))
            matched = False
            for digest in given:
                matched = hmac.compare_digest(digest, expected) or matched
            if matched:
                return name
        return None

    return verify


def _verifier(digests: list[str], secrets: list[tuple[str, str]]) -> Callable:
    def verify(candidate: bytes) -> str | None:
        """Which secret signs the candidate, comparing every digest in constant time."""
        for name, secret in secrets:
            expected = sign(candidate, secret).removeprefix("sha256=").encode()
            matched = False
            for digest in digests:
                matched = hmac.compare_digest(digest.encode(), expected) or matched
            if matched:
                return name
        return None

    return verify


def _secret_note(verified_with: str) -> str:
    which = "current" if verified_with == CURRENT else "previous (rotation overlap)"
    return f"With that change undone, the body verifies with the {which} secret."


def _likely_changes(text: str) -> Iterator[tuple[str, list[bytes]]]:
    """(cause, bodies as we may have sent them) for the usual ways a body gets changed."""
    stripped = text.rstrip("\n")
    if stripped != text:
        yield CAUSE_NEWLINE_ADDED, [stripped.encode()]
    yield CAUSE_NEWLINE_REMOVED, [(text + "\n").encode()]
    if "\n" in text:
        yield CAUSE_LINE_ENDINGS, [text.replace("\n", "\r\n").encode()]
    yield CAUSE_RESERIALIZED, list(_reserializations(text))


def _reserializations(text: str) -> Iterator[bytes]:
    """The JSON written out the ways common libraries do: ours first (compact, as sent)."""
    documents = _parse_json(text)
    if documents is None:
        return
    seen: set[bytes] = set()
    try:
        yield from _dumped(documents, seen)
    except (ValueError, RecursionError):
        return


def _dumped(documents: list, seen: set[bytes]) -> Iterator[bytes]:
    for separators in ((",", ":"), (", ", ": ")):
        for sort_keys in (False, True):
            for ensure_ascii in (False, True):
                candidate = "\n".join(
                    json.dumps(
                        document,
                        separators=separators,
                        sort_keys=sort_keys,
                        ensure_ascii=ensure_ascii,
                    )
                    for document in documents
                ).encode()
                if candidate not in seen:
                    seen.add(candidate)
                    yield candidate


def _parse_json(text: str) -> list | None:
    """One JSON document, or one per line (Splunk HEC bodies); None when it is not JSON."""
    # RecursionError: deeply nested JSON is not worth re-serializing (and must never be a 500).
    try:
        return [json.loads(text)]
    except (ValueError, RecursionError):
        pass
    lines = [line for line in text.split("\n") if line.strip()]
    try:
        return [json.loads(line) for line in lines] if len(lines) > 1 else None
    except (ValueError, RecursionError):
        return None


# Receiver guide -------------------------------------------------------------------------------
@dataclass(frozen=True)
class SentHeader:
    name: str
    value: str
    note: str = ""


def sent_headers(destination: Destination) -> list[SentHeader]:
    """The headers every request to this destination carries; custom headers by name only."""
    if destination.signature_scheme == SignatureScheme.STANDARD_WEBHOOKS:
        headers = [
            SentHeader("Content-Type", "application/json"),
            SentHeader(
                WEBHOOK_ID_HEADER,
                "msg_<id>",
                "The message id: the same for every retry of a batch. Refuse an id seen in "
                "the last 5 minutes (replay).",
            ),
            SentHeader(
                WEBHOOK_TIMESTAMP_HEADER,
                "<Unix time in seconds>",
                "Signed: refuse a request more than 5 minutes old.",
            ),
            SentHeader(
                WEBHOOK_SIGNATURE_HEADER,
                "v1,<base64 HMAC-SHA256 of id.timestamp.body>",
                "Keyed by the base64-decoded part of your whsec_ secret. During a rotation's "
                "overlap: two, space separated; accept the request if any matches.",
            ),
            SentHeader(
                DELIVERY_HEADER, "<UUID>", "New for every attempt; not signed (informational)."
            ),
            SentHeader("User-Agent", settings.WEBHOOK_USER_AGENT),
        ]
    else:
        headers = _oneprotect_headers(destination)
    if destination.provider == Provider.SPLUNK_HEC:
        headers.append(
            SentHeader(
                "Authorization",
                "Splunk <HEC token>",
                "The destination's secret is the HEC token; the body is in HEC format.",
            )
        )
    headers.extend(
        SentHeader(name, "<the value you configured>", "Custom header; stored encrypted.")
        for name in destination.custom_header_names
    )
    return headers


def _oneprotect_headers(destination: Destination) -> list[SentHeader]:
    return [
        SentHeader("Content-Type", "application/json"),
        SentHeader(
            destination.signature_header,
            "sha256=<hex HMAC-SHA256 of the raw body>",
            "During a secret rotation's overlap: sha256=<current>,sha256=<previous>. "
            "Accept the request if any of them matches.",
        ),
        SentHeader(
            TIMESTAMP_HEADER,
            "<Unix time in seconds>",
            "When the request was sent; refuse one older than 5 minutes. Not signed: choose "
            "Standard Webhooks for replay protection.",
        ),
        SentHeader(
            DELIVERY_HEADER,
            "<UUID>",
            "New for every attempt; deduplicate events with their event_id.",
        ),
        SentHeader("User-Agent", settings.WEBHOOK_USER_AGENT),
    ]


PYTHON_SNIPPET = """\
import hashlib
import hmac
import json
import os
import time

SECRET = os.environ["ONEPROTECT_WEBHOOK_SECRET"].encode()
SIGNATURE_HEADER = __HEADER__
TIMESTAMP_HEADER = "X-OneProtect-Timestamp"
TOLERANCE_SECONDS = 5 * 60


def signature_is_valid(raw_body: bytes, header_value: str, timestamp: str) -> bool:
    \"\"\"True if the timestamp is fresh and any sha256=<hex> in the header matches (two
    during a rotation overlap). Non-ASCII header values are simply invalid.\"\"\"
    header_value, timestamp = header_value or "", timestamp or ""
    if not (header_value.isascii() and timestamp.isascii() and timestamp.isdigit()):
        return False
    if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    expected = hmac.new(SECRET, raw_body, hashlib.sha256).hexdigest().encode()
    valid = False
    for part in header_value.split(","):
        part = part.strip()
        if part.startswith("sha256="):
            given = part[len("sha256="):].lower().encode()
            valid = hmac.compare_digest(given, expected) or valid
    return valid


# Flask example: verify the raw bytes, before any JSON parsing.
from flask import Flask, abort, request

app = Flask(__name__)


@app.post("/webhook")
def webhook():
    raw_body = request.get_data()
    headers = request.headers
    if not signature_is_valid(
        raw_body, headers.get(SIGNATURE_HEADER, ""), headers.get(TIMESTAMP_HEADER, "")
    ):
        abort(401)
    for event in json.loads(raw_body)["events"]:
        ...  # deduplicate with event["event_id"]
    return "", 204
"""

NODE_SNIPPET = r"""const crypto = require("crypto");
const express = require("express");

const SECRET = process.env.ONEPROTECT_WEBHOOK_SECRET;
const SIGNATURE_HEADER = __HEADER__;
const TIMESTAMP_HEADER = "X-OneProtect-Timestamp";
const TOLERANCE_SECONDS = 5 * 60;
const isAscii = (value) => /^[\x20-\x7e]*$/.test(value);

// True if the timestamp is fresh and any sha256=<hex> in the header matches (two during a
// rotation overlap). Non-ASCII header values are simply invalid.
function signatureIsValid(rawBody, headerValue, timestamp) {
  headerValue = headerValue || "";
  timestamp = timestamp || "";
  if (!isAscii(headerValue) || !/^[0-9]+$/.test(timestamp)) return false;
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > TOLERANCE_SECONDS) return false;
  const expected = Buffer.from(
    crypto.createHmac("sha256", SECRET).update(rawBody).digest("hex"));
  let valid = false;
  for (const part of headerValue.split(",")) {
    const value = part.trim();
    if (!value.startsWith("sha256=")) continue;
    const given = Buffer.from(value.slice("sha256=".length).toLowerCase());
    if (given.length === expected.length && crypto.timingSafeEqual(given, expected)) {
      valid = true;
    }
  }
  return valid;
}

const app = express();
// express.raw keeps the exact bytes (req.body is a Buffer): verify them, not parsed JSON.
app.post("/webhook", express.raw({ type: "application/json", limit: "2mb" }), (req, res) => {
  if (!signatureIsValid(req.body, req.get(SIGNATURE_HEADER), req.get(TIMESTAMP_HEADER))) {
    return res.sendStatus(401);
  }
  for (const event of JSON.parse(req.body).events) {
    // deduplicate with event.event_id
  }
  res.sendStatus(204);
});
app.listen(8080);
"""

STANDARD_PYTHON_SNIPPET = """\
import base64
import hashlib
import hmac
import json
import os
import time

# The destination's secret, whsec_<base64>: the key is its base64-decoded part.
KEY = base64.b64decode(os.environ["ONEPROTECT_WEBHOOK_SECRET"].removeprefix("whsec_"))
TOLERANCE_SECONDS = 5 * 60


def webhook_is_valid(raw_body: bytes, msg_id: str, timestamp: str, signatures: str) -> bool:
    \"\"\"Standard Webhooks: a fresh timestamp and any v1 signature of id.timestamp.body
    matching (two, space separated, during a rotation overlap). Non-ASCII is invalid.\"\"\"
    msg_id, timestamp, signatures = msg_id or "", timestamp or "", signatures or ""
    if not (msg_id.isascii() and signatures.isascii() and timestamp.isascii()):
        return False
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    signed = f"{msg_id}.{timestamp}.".encode() + raw_body
    expected = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest())
    valid = False
    for part in signatures.split(" "):
        version, _, given = part.partition(",")
        if version == "v1":
            valid = hmac.compare_digest(given.encode(), expected) or valid
    return valid


# Flask example: verify the raw bytes, before any JSON parsing. (The standardwebhooks
# package on PyPI does the same: Webhook(secret).verify(raw_body, headers).)
from flask import Flask, abort, request

app = Flask(__name__)


@app.post("/webhook")
def webhook():
    raw_body = request.get_data()
    headers = request.headers
    if not webhook_is_valid(
        raw_body,
        headers.get("webhook-id", ""),
        headers.get("webhook-timestamp", ""),
        headers.get("webhook-signature", ""),
    ):
        abort(401)
    # Remember webhook-id for TOLERANCE_SECONDS and refuse it again: no replay.
    for event in json.loads(raw_body)["events"]:
        ...  # deduplicate with event["event_id"]
    return "", 204
"""

STANDARD_NODE_SNIPPET = r"""const crypto = require("crypto");
const express = require("express");

// The destination's secret, whsec_<base64>: the key is its base64-decoded part.
const KEY = Buffer.from(process.env.ONEPROTECT_WEBHOOK_SECRET.replace(/^whsec_/, ""), "base64");
const TOLERANCE_SECONDS = 5 * 60;
const isAscii = (value) => /^[\x20-\x7e]*$/.test(value);

// Standard Webhooks: a fresh timestamp and any v1 signature of id.timestamp.body matching
// (two, space separated, during a rotation overlap). Non-ASCII header values are invalid.
function webhookIsValid(rawBody, msgId, timestamp, signatures) {
  msgId = msgId || "";
  timestamp = timestamp || "";
  signatures = signatures || "";
  if (!isAscii(msgId) || !isAscii(signatures) || !/^[0-9]+$/.test(timestamp)) return false;
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > TOLERANCE_SECONDS) return false;
  const expected = Buffer.from(crypto.createHmac("sha256", KEY)
    .update(`${msgId}.${timestamp}.`).update(rawBody).digest("base64"));
  let valid = false;
  for (const part of signatures.split(" ")) {
    const comma = part.indexOf(",");
    if (comma < 0 || part.slice(0, comma) !== "v1") continue;
    const given = Buffer.from(part.slice(comma + 1));
    if (given.length === expected.length && crypto.timingSafeEqual(given, expected)) {
      valid = true;
    }
  }
  return valid;
}

const app = express();
// express.raw keeps the exact bytes (req.body is a Buffer): verify them, not parsed JSON.
app.post("/webhook", express.raw({ type: "application/json", limit: "2mb" }), (req, res) => {
  if (!webhookIsValid(req.body, req.get("webhook-id"), req.get("webhook-timestamp"),
                      req.get("webhook-signature"))) {
    return res.sendStatus(401);
  }
  // Remember webhook-id for TOLERANCE_SECONDS and refuse it again: no replay.
  for (const event of JSON.parse(req.body).events) {
    // deduplicate with event.event_id
  }
  res.sendStatus(204);
});
app.listen(8080);
"""


PYTHON_BATCH_LOOP = """\
    for event in json.loads(raw_body)["events"]:
        ...  # deduplicate with event["event_id"]
"""
PYTHON_SINGLE = """\
    event = json.loads(raw_body)  # one event per request: the body is the event
    ...  # deduplicate with event["event_id"]
"""
NODE_BATCH_LOOP = """\
  for (const event of JSON.parse(req.body).events) {
    // deduplicate with event.event_id
  }
"""
NODE_SINGLE = """\
  const event = JSON.parse(req.body); // one event per request: the body is the event
  // deduplicate with event.event_id
"""


def receiver_snippets(destination: Destination) -> dict[str, str]:
    """Verification code in Python and Node.js with this destination's header name filled in,
    reading the body as this destination sends it (batched or one event per request)."""
    # A header name is an RFC 9110 token (no quote or backslash); json.dumps quotes it safely.
    if destination.signature_scheme == SignatureScheme.STANDARD_WEBHOOKS:
        return {"python": STANDARD_PYTHON_SNIPPET, "node": STANDARD_NODE_SNIPPET}
    literal = json.dumps(destination.signature_header)
    python = PYTHON_SNIPPET.replace("__HEADER__", literal)
    node = NODE_SNIPPET.replace("__HEADER__", literal)
    if destination.batching == Batching.SINGLE:
        python = python.replace(PYTHON_BATCH_LOOP, PYTHON_SINGLE)
        node = node.replace(NODE_BATCH_LOOP, NODE_SINGLE)
    return {"python": python, "node": node}
