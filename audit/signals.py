"""Signals the audit app sends, so that other apps can react without audit importing them."""

from __future__ import annotations

from django.dispatch import Signal

# Sent by `audit.services.record` with `entry` (the saved AuditEntry), inside the entry's
# transaction: a receiver's writes commit or roll back with the entry, and an exception in a
# receiver undoes the entry. Integrations publishes every entry as an `audit_log` event.
audit_entry_recorded = Signal()
