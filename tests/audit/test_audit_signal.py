"""`audit_entry_recorded`: sent inside the entry's transaction; integrations publishes each
entry as an `audit_log` event; with no receiver connected, recording still works."""

from __future__ import annotations

import pytest
from django.db import transaction

from audit.models import AuditEntry
from audit.services import record
from audit.signals import audit_entry_recorded
from integrations.audit_events import on_audit_entry_recorded
from integrations.models import Event


@pytest.mark.django_db
def test_every_entry_becomes_an_audit_log_event(tenant_a):
    entry = record(tenant=tenant_a.tenant, action="test.happened", actor_name="tester")
    event = Event.objects.for_tenant(tenant_a.tenant).get(event_type="audit_log")
    assert event.payload["hash"] == entry.hash


@pytest.mark.django_db
def test_recording_works_without_a_receiver(tenant_a):
    disconnected = audit_entry_recorded.disconnect(dispatch_uid="integrations.audit_events")
    try:
        entry = record(tenant=tenant_a.tenant, action="test.happened", actor_name="tester")
    finally:
        audit_entry_recorded.connect(
            on_audit_entry_recorded, dispatch_uid="integrations.audit_events"
        )
    assert disconnected
    assert AuditEntry.objects.filter(pk=entry.pk).exists()
    assert not Event.objects.for_tenant(tenant_a.tenant).filter(event_type="audit_log").exists()


@pytest.mark.django_db
def test_the_signal_is_sent_inside_the_entrys_transaction(tenant_a):
    seen = []

    def receiver(sender, *, entry, **kwargs):
        seen.append((sender, entry.pk, transaction.get_connection().in_atomic_block))

    audit_entry_recorded.connect(receiver, dispatch_uid="test-receiver")
    try:
        entry = record(tenant=tenant_a.tenant, action="test.happened", actor_name="tester")
    finally:
        audit_entry_recorded.disconnect(dispatch_uid="test-receiver")
    assert seen == [(AuditEntry, entry.pk, True)]
