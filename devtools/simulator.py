"""Realistic synthetic events for demos, the simulator command and benchmarks."""

from __future__ import annotations

import random
import uuid

from integrations.catalogue import EventType
from integrations.events import event_publish_many
from portal.models import Tenant

NAMES = ["j.doe", "a.smith", "k.lee", "m.ortiz", "r.patel", "s.nguyen", "t.müller", "l.rossi"]
DOMAINS = [
    "invoices-example.net",
    "secure-login-example.com",
    "deals-example.com",
    "hr-example.org",
]
SUBJECTS = [
    "Overdue invoice #{n}",
    "Your password expires today",
    "Shared document: Q4 salaries",
    "DocuSign: please review #{n}",
    "Delivery failed: action required",
]
DETECTIONS = [
    "Impossible travel sign-in",
    "Mass mailbox rule creation",
    "OAuth consent to risky app",
    "Credential phishing link clicked",
]
SEVERITY_BY_TYPE = {
    EventType.INBOUND_MALICIOUS: ["high", "critical"],
    EventType.INBOUND_SPAM: ["info", "low"],
    EventType.REPORT_PHISHING: ["medium", "high"],
    EventType.QUARANTINE_RELEASE: ["low", "medium"],
    EventType.DETECTION_ALERT: ["low", "medium", "high", "critical"],
}


def _mailbox(rng: random.Random, domain: str = "acme.example") -> str:
    return f"{rng.choice(NAMES)}@{domain}"


def fake_event(rng: random.Random | None = None, event_type: str | None = None) -> dict:
    """An event dict for event_publish: event_type, severity, payload."""
    rng = rng or random.Random()
    event_type = event_type or rng.choice(list(SEVERITY_BY_TYPE))
    n = rng.randint(10000, 99999)
    subject = rng.choice(SUBJECTS).format(n=n)
    sender = f"{rng.choice(['billing', 'it-support', 'noreply', 'hr'])}@{rng.choice(DOMAINS)}"
    if event_type == EventType.INBOUND_MALICIOUS:
        payload = {
            "case_id": f"IP-2026-{n:06d}",
            "message_id": f"<{uuid.uuid4().hex[:12]}@mail.example.net>",
            "sender": sender,
            "recipients": [_mailbox(rng) for _ in range(rng.randint(1, 3))],
            "subject": subject,
            "verdict": "malicious",
            "threats": [
                {"type": "url", "value": f"https://{rng.choice(DOMAINS)}/verify", "score": 90}
            ],
            "action": "quarantined",
        }
    elif event_type == EventType.INBOUND_SPAM:
        payload = {
            "case_id": f"IP-2026-{n:06d}",
            "sender": sender,
            "recipients": [_mailbox(rng)],
            "subject": subject,
            "verdict": "spam",
            "spam_score": round(rng.uniform(5, 10), 1),
            "action": "moved_to_junk",
        }
    elif event_type == EventType.REPORT_PHISHING:
        payload = {
            "report_id": f"RP-{n}",
            "reporter": _mailbox(rng),
            "subject": subject,
            "ai_verdict": rng.choice(["phishing", "phishing", "benign", "spam"]),
            "confidence": round(rng.uniform(0.6, 0.99), 2),
            "action": "removed_from_all_mailboxes",
            "affected_mailboxes": rng.randint(1, 40),
        }
    elif event_type == EventType.QUARANTINE_RELEASE:
        payload = {
            "message_id": f"<{uuid.uuid4().hex[:12]}@mail.example.org>",
            "released_by": _mailbox(rng),
            "recipient": _mailbox(rng),
            "reason": rng.choice(["false positive", "business need", "user request"]),
        }
    else:
        event_type = EventType.DETECTION_ALERT
        payload = {
            "detection": rng.choice(DETECTIONS),
            "severity": rng.choice(SEVERITY_BY_TYPE[event_type]),
            "outcome": rng.choice(["alerted", "blocked", "observed"]),
            "match_count": rng.randint(1, 25),
            "run": {"id": f"run-{n}", "duration_ms": rng.randint(50, 3000)},
        }
    severity = payload.get("severity") or rng.choice(SEVERITY_BY_TYPE[event_type])
    return {"event_type": event_type, "severity": severity, "payload": payload}


def publish_fake_events(
    *,
    tenant: Tenant,
    count: int,
    rng: random.Random | None = None,
    children: list[Tenant] | None = None,
    child_share: float = 0.2,
) -> int:
    """Publish `count` fake events, about `child_share` of them into child accounts: one
    event_publish_many batch per tenant that gets events."""
    rng = rng or random.Random()
    batches: dict[int, tuple[Tenant, list[dict]]] = {}
    for _ in range(count):
        target = rng.choice(children) if children and rng.random() < child_share else tenant
        batches.setdefault(target.pk, (target, []))[1].append(fake_event(rng))
    for target, events in batches.values():
        event_publish_many(tenant=target, events=events)
    return count
