"""Signing secrets and custom header values never leave the encrypted columns in plaintext:
not in the database, pages, audit entries, audit_log events or logs; keys can be rotated."""

from __future__ import annotations

import io
import json
import logging

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from audit.models import AuditEntry
from integrations.catalogue import EventType
from integrations.models import Destination, Event
from integrations.services import destination_create, destination_rotate_secret

SECRET = "first-secret-Q7wz-0123456789"
ROTATED_SECRET = "second-secret-Km3p-9876543210"
HEADER_VALUE = "header-value-Lp4x-api-key"
EDITED_HEADER_VALUE = "edited-header-value-Rt6y"
ALL_PLAINTEXTS = (SECRET, ROTATED_SECRET, HEADER_VALUE, EDITED_HEADER_VALUE)


pytestmark = pytest.mark.usefixtures("no_network")


def make_destination(setup, name: str = "Secret keeper") -> Destination:
    """A destination in its rotation overlap: a current and a previous secret, two headers."""
    destination, _ = destination_create(
        tenant=setup.tenant,
        actor=setup.admin,
        data={
            "name": name,
            "endpoint_url": "https://hooks.example.com/hook",
            "event_types": list(EventType.values),
            "secret": SECRET,
            "custom_headers": {"X-Api-Key": HEADER_VALUE, "X-Other": EDITED_HEADER_VALUE},
        },
    )
    destination, _ = destination_rotate_secret(
        destination=destination, actor=setup.admin, new_secret=ROTATED_SECRET, overlap_hours=24
    )
    return destination


def drive_the_portal(client) -> str:
    """Create, edit and rotate through the pages; returns the generated secret shown once."""
    client.post(
        reverse("integrations:destination_create"),
        {
            "name": "Portal hook",
            "endpoint_url": "https://hooks.example.com/portal",
            "secret": SECRET,
            "provider": "custom",
            "event_types": list(EventType.values),
            "signature_header": "X-OneProtect-Signature",
            "header_name": ["X-Api-Key"],
            "header_value": [HEADER_VALUE],
            "timeout_seconds": "30",
            "active": "on",
        },
    )
    destination = Destination.objects.get(name="Portal hook")
    client.post(
        reverse("integrations:destination_edit", args=[destination.pk]),
        {
            "name": "Portal hook",
            "endpoint_url": "https://hooks.example.com/portal",
            "secret": ROTATED_SECRET,
            "provider": "custom",
            "event_types": list(EventType.values),
            "signature_header": "X-OneProtect-Signature",
            "header_name": ["X-Api-Key"],
            "header_value": [EDITED_HEADER_VALUE],
            "timeout_seconds": "30",
            "active": "on",
        },
    )
    client.post(
        reverse("integrations:destination_rotate_secret", args=[destination.pk]),
        {"secret": "", "overlap_hours": "24"},
    )
    destination.refresh_from_db()
    assert destination.previous_secret() == ROTATED_SECRET
    assert destination.custom_headers() == {"X-Api-Key": EDITED_HEADER_VALUE}
    return destination.secret()


@pytest.mark.django_db
def test_database_columns_never_hold_plaintext(tenant_a):
    make_destination(tenant_a)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT secret_encrypted, previous_secret_encrypted, custom_headers_encrypted "
            "FROM integrations_destination"
        )
        rows = cursor.fetchall()
        cursor.execute("SELECT row_to_json(d)::text FROM integrations_destination d")
        whole_rows = [row[0] for row in cursor.fetchall()]
    assert len(rows) == 1
    secret_column, previous_column, headers_column = rows[0]
    assert secret_column and previous_column and headers_column
    for plaintext in ALL_PLAINTEXTS:
        assert all(plaintext not in column for column in rows[0])
        assert all(plaintext not in row for row in whole_rows)
    # Header names are configuration, not secrets: they are kept readable for the pages.
    assert "X-Api-Key" in whole_rows[0]


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["admin", "operator", "auditor"])
@pytest.mark.parametrize("page", ["index", "destination_detail", "destination_edit"])
def test_no_page_shows_a_secret_or_header_value(page, role, tenant_a, client_for):
    destination = make_destination(tenant_a)
    kwargs = {} if page == "index" else {"destination_id": destination.pk}
    response = client_for(tenant_a.user(role)).get(reverse(f"integrations:{page}", kwargs=kwargs))
    assert response.status_code == (403 if page == "destination_edit" and role != "admin" else 200)
    html = response.content.decode()
    for plaintext in ALL_PLAINTEXTS:
        assert plaintext not in html


@pytest.mark.django_db
def test_pages_after_portal_changes_show_no_secrets(tenant_a, client_for):
    client = client_for(tenant_a.admin)
    generated = drive_the_portal(client)
    destination = Destination.objects.get()
    for page in (
        reverse("integrations:index"),
        reverse("integrations:destination_detail", args=[destination.pk]),
        reverse("integrations:destination_edit", args=[destination.pk]),
    ):
        html = client.get(page).content.decode()
        for plaintext in (*ALL_PLAINTEXTS, generated):
            assert plaintext not in html


@pytest.mark.django_db
def test_audit_entries_and_audit_events_hold_no_secrets(tenant_a, client_for):
    generated = drive_the_portal(client_for(tenant_a.admin))
    make_destination(tenant_a, name="Service-made")
    entries = AuditEntry.objects.filter(tenant=tenant_a.tenant, action__startswith="destination.")
    assert {entry.action for entry in entries} >= {
        "destination.created",
        "destination.updated",
        "destination.secret_rotated",
    }
    recorded = [json.dumps([entry.before, entry.after, entry.target_repr]) for entry in entries]
    recorded += [
        json.dumps(event.payload) for event in Event.objects.filter(event_type="audit_log")
    ]
    for text in recorded:
        for plaintext in (*ALL_PLAINTEXTS, generated):
            assert plaintext not in text


@pytest.mark.django_db
def test_logs_hold_no_secrets(tenant_a, client_for, caplog):
    caplog.set_level(logging.DEBUG)
    generated = drive_the_portal(client_for(tenant_a.admin))
    assert caplog.records, "expected at least the request log lines"
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        for plaintext in (*ALL_PLAINTEXTS, generated):
            assert plaintext not in text, record.name


# Key rotation ----------------------------------------------------------------------------------
@pytest.fixture
def old_key(settings) -> str:
    key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [key]
    return key


@pytest.mark.django_db
def test_rotate_encryption_keys_re_encrypts_every_value(tenant_a, settings, old_key):
    destination = make_destination(tenant_a)
    second = make_destination(tenant_a, name="Second")
    new_key = Fernet.generate_key().decode()

    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    out = io.StringIO()
    call_command("rotate_encryption_keys", "--batch-size", "1", stdout=out)
    assert "2 destination" in out.getvalue()

    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    for row in (destination, second):
        row.refresh_from_db()
        assert row.secret() == ROTATED_SECRET
        assert row.previous_secret() == SECRET
        assert row.custom_headers() == {"X-Api-Key": HEADER_VALUE, "X-Other": EDITED_HEADER_VALUE}

    settings.FIELD_ENCRYPTION_KEYS = [old_key]
    with pytest.raises(ValueError, match="cannot be decrypted"):
        destination.secret()


@pytest.mark.django_db
def test_rotate_encryption_keys_changes_nothing_when_a_value_cannot_be_decrypted(
    tenant_a, settings, old_key
):
    destination = make_destination(tenant_a)
    before = Destination.objects.values_list("secret_encrypted", flat=True).get()
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the old key is missing
    with pytest.raises(CommandError, match="cannot be decrypted"):
        call_command("rotate_encryption_keys", stdout=io.StringIO())
    destination.refresh_from_db()
    assert destination.secret_encrypted == before


@pytest.mark.django_db
def test_rotate_encryption_keys_with_no_destinations(settings, old_key):
    out = io.StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    assert "0 destination" in out.getvalue()
