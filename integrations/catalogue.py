"""The event catalogue (docs/design.md#events) with an example payload for each type."""

from __future__ import annotations

from django.db import models


class EventType(models.TextChoices):
    INBOUND_MALICIOUS = "inbound_protection.malicious", "Inbound Protection: malicious cases"
    INBOUND_SPAM = "inbound_protection.spam", "Inbound Protection: spam cases"
    REPORT_PHISHING = "ai_response.report_phishing", "AI Response: report phishing"
    QUARANTINE_RELEASE = "ai_response.quarantine_release", "AI Response: quarantine release"
    DETECTION_ALERT = "detection.alert", "Detection alerts"
    AUDIT_LOG = "audit_log", "Audit Logs"
    SYSTEM_HEALTH = "system.health", "System health"


class Severity(models.TextChoices):
    INFO = "info", "Info"
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


SEVERITY_RANK = {value: rank for rank, value in enumerate(Severity.values)}

EVENT_TYPE_DESCRIPTIONS = {
    EventType.INBOUND_MALICIOUS: "A message classified as malicious by Inbound Protection.",
    EventType.INBOUND_SPAM: "A message classified as spam by Inbound Protection.",
    EventType.REPORT_PHISHING: "A user reported a message as phishing; AI Response's verdict.",
    EventType.QUARANTINE_RELEASE: "A quarantined message was released.",
    EventType.DETECTION_ALERT: "Detection name, severity, outcome, match count and run details.",
    EventType.AUDIT_LOG: "An entry of this portal's audit log.",
    EventType.SYSTEM_HEALTH: "A destination became failing, disabled or recovered.",
}

EXAMPLE_PAYLOADS: dict[str, dict] = {
    EventType.INBOUND_MALICIOUS: {
        "case_id": "IP-2026-004211",
        "message_id": "<CAF9x2k@mail.example.net>",
        "sender": "billing@invoices-example.net",
        "recipients": ["j.doe@acme.example"],
        "subject": "Overdue invoice #88412",
        "verdict": "malicious",
        "threats": [{"type": "url", "value": "https://login-example.net/verify", "score": 97}],
        "action": "quarantined",
    },
    EventType.INBOUND_SPAM: {
        "case_id": "IP-2026-004212",
        "sender": "promo@deals-example.com",
        "recipients": ["a.smith@acme.example"],
        "subject": "You won a gift card",
        "verdict": "spam",
        "spam_score": 8.7,
        "action": "moved_to_junk",
    },
    EventType.REPORT_PHISHING: {
        "report_id": "RP-77120",
        "reporter": "k.lee@acme.example",
        "subject": "Password expires today",
        "ai_verdict": "phishing",
        "confidence": 0.96,
        "action": "removed_from_all_mailboxes",
        "affected_mailboxes": 14,
    },
    EventType.QUARANTINE_RELEASE: {
        "message_id": "<a81b2c@mail.example.org>",
        "released_by": "admin@acme.example",
        "recipient": "m.ortiz@acme.example",
        "reason": "false positive",
    },
    EventType.DETECTION_ALERT: {
        "detection": "Impossible travel sign-in",
        "severity": "high",
        "outcome": "alerted",
        "match_count": 3,
        "run": {"id": "run-5521", "started_at": "2026-11-23T10:00:00Z", "duration_ms": 842},
    },
    EventType.AUDIT_LOG: {
        "action": "destination.created",
        "actor": "admin@acme.example",
        "target": "Tenant SOC webhook",
        "ip": "203.0.113.7",
    },
    EventType.SYSTEM_HEALTH: {
        "destination": "Tenant SOC webhook",
        "health": "failing",
        "reason": "Endpoint unreachable: connection refused",
    },
}
