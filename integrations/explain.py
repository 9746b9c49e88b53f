"""Plain-language explanations of delivery failures, with what to do about each."""

from __future__ import annotations

from dataclasses import dataclass

from integrations.models import Destination, ErrorKind


@dataclass(frozen=True)
class Explanation:
    title: str
    fix: str


EXPLANATIONS: dict[str, Explanation] = {
    ErrorKind.DNS: Explanation(
        "DNS failure: the endpoint's host name did not resolve.",
        "Check the host name in the Endpoint URL and that it has a public DNS record.",
    ),
    ErrorKind.CONNECT: Explanation(
        "Connection refused or reset: nothing accepted the connection.",
        "Check that your endpoint is running, listens on the URL's port and accepts "
        "traffic from the egress IP addresses shown on the Integrations page.",
    ),
    ErrorKind.TLS: Explanation(
        "TLS error: the certificate could not be verified or the handshake failed.",
        "Serve a valid certificate for the host name (full chain, not expired). Skip TLS "
        "verification only for testing.",
    ),
    ErrorKind.TIMEOUT: Explanation(
        "Timeout: the endpoint did not answer in time.",
        "Answer with 2xx quickly and process events asynchronously, or raise the timeout.",
    ),
    ErrorKind.REDIRECT: Explanation(
        "Redirect: the endpoint answered with a redirect, which we never follow.",
        "Use the final URL (often https:// instead of http://, or a trailing slash) as the "
        "Endpoint URL.",
    ),
    ErrorKind.SSRF: Explanation(
        "Refused: the host resolved to a private or reserved address.",
        "Webhooks only go to public addresses. Check your DNS records: the name must not "
        "point to an internal, loopback or cloud metadata address.",
    ),
    ErrorKind.OTHER: Explanation(
        "The request failed unexpectedly.", "Try again; if it persists, contact support."
    ),
}

STATUS_EXPLANATIONS: dict[int, Explanation] = {
    401: Explanation(
        "Authentication / Permission denied (HTTP 401): your endpoint rejected our credentials.",
        "Check the credentials your endpoint expects (an API key or token in the custom "
        "headers, or the HEC token of a Splunk destination), then send a test event.",
    ),
    403: Explanation(
        "Authentication / Permission denied (HTTP 403): your endpoint refused the request.",
        "Check the credentials your endpoint expects (custom headers, or the HEC token of a "
        "Splunk destination) and any IP allowlist: allow our egress IP addresses.",
    ),
    404: Explanation(
        "Endpoint not found (HTTP 404): the path does not exist on your endpoint.",
        "Check the path in the Endpoint URL (for Splunk: /services/collector/event), then "
        "send a test event.",
    ),
    410: Explanation(
        "Endpoint not found (HTTP 410): your endpoint says this URL is permanently retired.",
        "Update the Endpoint URL, or delete the destination.",
    ),
    429: Explanation(
        "429 Too Many Requests: your endpoint is rate limiting us.",
        "No action needed: we retry automatically, honouring Retry-After. Raise your "
        "endpoint's rate limit if it persists.",
    ),
    408: Explanation(
        "408 Request Timeout: your endpoint timed out reading the request.",
        "We retry automatically. Check your endpoint's load and request size limits.",
    ),
}


def explain(*, status_code: int | None, error_kind: str, ok: bool = False) -> Explanation | None:
    """Why an attempt failed and what to do, or None when it succeeded."""
    if ok:
        return None
    if status_code is not None and error_kind != ErrorKind.REDIRECT:
        if status_code in STATUS_EXPLANATIONS:
            return STATUS_EXPLANATIONS[status_code]
        if status_code >= 500:
            return Explanation(
                f"{status_code}: your endpoint failed while handling the request.",
                "Check your endpoint's logs. We retry automatically with backoff.",
            )
        return Explanation(
            f"Rejected by the receiver (HTTP {status_code}): your endpoint refused the "
            "request; we do not retry it.",
            "Check that your endpoint accepts a JSON POST in this format (and, if it takes one "
            "event per request, set Batching to One event per request), then resend.",
        )
    return EXPLANATIONS.get(error_kind, EXPLANATIONS[ErrorKind.OTHER])


def explain_destination(destination: Destination) -> Explanation | None:
    """What the destination's health means and what to do, when its last attempt failed."""
    if destination.disabled_at is not None or not destination.active:
        return None
    if destination.last_attempt_at is None or destination.last_outcome_ok is not False:
        return None
    return explain(status_code=destination.last_status_code, error_kind=destination.last_error_kind)
