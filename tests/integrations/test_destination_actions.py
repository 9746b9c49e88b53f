"""A destination's actions: pause and activate, rotate the secret, delete, and their audit."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from integrations.models import Destination
from integrations.services import destination_set_active
from tests.integrations.destination_helpers import (
    GIVEN_SECRET,
    HEADER_VALUE,
    ROLES_WITHOUT_MANAGE,
    actions,
    card,
    create_url,
    destination_entries,
    form_data,
    make_destination,
    url,
)

pytestmark = pytest.mark.usefixtures("no_network")


# Pause and activate ----------------------------------------------------------------------------
@pytest.mark.django_db
def test_admin_pauses_and_activates_a_destination(tenant_a, client_for):
    destination = make_destination(tenant_a)
    client = client_for(tenant_a.admin)
    response = client.post(url("destination_pause", destination), follow=True)
    assert response.redirect_chain[-1][0] == url("destination_detail", destination)
    assert "Destination paused." in response.content.decode()
    destination.refresh_from_db()
    assert destination.active is False
    response = client.post(url("destination_activate", destination), follow=True)
    assert "Destination activated." in response.content.decode()
    destination.refresh_from_db()
    assert destination.active is True
    assert actions(tenant_a.tenant) == [
        "destination.created",
        "destination.paused",
        "destination.activated",
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["destination_pause", "destination_activate"])
@pytest.mark.parametrize("role", ROLES_WITHOUT_MANAGE)
def test_operator_and_auditor_cannot_pause_or_activate(name, role, tenant_a, client_for):
    destination = make_destination(tenant_a)
    if name == "destination_activate":
        destination_set_active(destination=destination, actor=tenant_a.admin, active=False)
    response = client_for(tenant_a.user(role)).post(url(name, destination))
    assert response.status_code == 403
    destination.refresh_from_db()
    assert destination.active is (name == "destination_pause")


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["destination_pause", "destination_activate"])
def test_another_tenants_destination_cannot_be_paused_or_activated(
    name, tenant_a, tenant_b, client_for
):
    destination = make_destination(tenant_b)
    assert client_for(tenant_a.admin).post(url(name, destination)).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["destination_pause", "destination_activate"])
def test_pause_and_activate_require_post(name, tenant_a, client_for):
    destination = make_destination(tenant_a)
    assert client_for(tenant_a.admin).get(url(name, destination)).status_code == 405
    destination.refresh_from_db()
    assert destination.active is True


# Rotate secret ---------------------------------------------------------------------------------
@pytest.mark.django_db
def test_admin_rotates_the_secret_and_sees_the_new_one_once(tenant_a, client_for):
    destination = make_destination(tenant_a)
    client = client_for(tenant_a.admin)
    response = client.post(
        url("destination_rotate_secret", destination), {"secret": "", "overlap_hours": "24"}
    )
    assert response.status_code == 200
    destination.refresh_from_db()
    new_secret = destination.secret()
    assert new_secret != GIVEN_SECRET
    html = response.content.decode()
    assert html.count(new_secret) == 1
    assert 'data-copy="generated-secret"' in html
    assert "Copy this secret now. It will not be shown again." in html
    assert "Secret rotated." in html
    assert "no-store" in response["Cache-Control"]
    assert destination.previous_secret() == GIVEN_SECRET
    assert "previous secret valid until" in html
    page = client.get(url("destination_detail", destination)).content.decode()
    assert new_secret not in page and GIVEN_SECRET not in page
    assert "previous secret valid until" in page
    entry = AuditEntry.objects.filter(action="destination.secret_rotated").get()
    assert entry.before["secret"] == entry.after["secret"] == "changed"


@pytest.mark.django_db
def test_rotate_to_a_given_secret_redirects_without_showing_it(tenant_a, client_for):
    destination = make_destination(tenant_a)
    new_secret = "rotated-secret-abcdefghijkl"
    response = client_for(tenant_a.admin).post(
        url("destination_rotate_secret", destination),
        {"secret": new_secret, "overlap_hours": "0"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == url("destination_detail", destination)
    html = response.content.decode()
    assert "Secret rotated." in html and new_secret not in html
    destination.refresh_from_db()
    assert destination.secret() == new_secret
    assert destination.previous_secret() is None


@pytest.mark.django_db
def test_invalid_rotation_changes_nothing(tenant_a, client_for):
    destination = make_destination(tenant_a)
    response = client_for(tenant_a.admin).post(
        url("destination_rotate_secret", destination), {"secret": "short", "overlap_hours": "999"}
    )
    assert response.status_code == 400
    assert (
        "short"
        not in card(response, "rotate-secret")
        .split("</form>")[0]
        .split('name="secret"')[1]
        .split(">")[0]
    )
    destination.refresh_from_db()
    assert destination.secret() == GIVEN_SECRET


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES_WITHOUT_MANAGE)
def test_operator_and_auditor_cannot_rotate_the_secret(role, tenant_a, client_for):
    destination = make_destination(tenant_a)
    response = client_for(tenant_a.user(role)).post(
        url("destination_rotate_secret", destination), {"secret": "", "overlap_hours": "24"}
    )
    assert response.status_code == 403
    destination.refresh_from_db()
    assert destination.secret() == GIVEN_SECRET


@pytest.mark.django_db
def test_another_tenants_secret_cannot_be_rotated(tenant_a, tenant_b, client_for):
    destination = make_destination(tenant_b)
    response = client_for(tenant_a.admin).post(
        url("destination_rotate_secret", destination), {"secret": "", "overlap_hours": "24"}
    )
    assert response.status_code == 404
    destination.refresh_from_db()
    assert destination.secret() == GIVEN_SECRET


@pytest.mark.django_db
def test_rotate_requires_post(tenant_a, client_for):
    destination = make_destination(tenant_a)
    response = client_for(tenant_a.admin).get(url("destination_rotate_secret", destination))
    assert response.status_code == 405


# Delete ----------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_admin_deletes_a_destination(tenant_a, client_for):
    destination = make_destination(tenant_a)
    response = client_for(tenant_a.admin).post(
        url("destination_delete", destination), {"confirm": "yes"}, follow=True
    )
    assert response.redirect_chain[-1][0] == reverse("integrations:index")
    assert "Destination deleted." in response.content.decode()
    assert not Destination.objects.exists()
    entry = AuditEntry.objects.filter(action="destination.deleted").get()
    assert entry.before["name"] == "Existing hook"


@pytest.mark.django_db
def test_delete_needs_the_confirmation(tenant_a, client_for):
    destination = make_destination(tenant_a)
    response = client_for(tenant_a.admin).post(url("destination_delete", destination))
    assert response.status_code == 400
    assert "Tick the confirmation box to delete this destination." in response.content.decode()
    assert Destination.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES_WITHOUT_MANAGE)
def test_operator_and_auditor_cannot_delete_destination(role, tenant_a, client_for):
    destination = make_destination(tenant_a)
    response = client_for(tenant_a.user(role)).post(
        url("destination_delete", destination), {"confirm": "yes"}
    )
    assert response.status_code == 403
    assert Destination.objects.exists()


@pytest.mark.django_db
def test_another_tenants_destination_cannot_be_deleted(tenant_a, tenant_b, client_for):
    destination = make_destination(tenant_b)
    response = client_for(tenant_a.admin).post(
        url("destination_delete", destination), {"confirm": "yes"}
    )
    assert response.status_code == 404
    assert Destination.objects.exists()


@pytest.mark.django_db
def test_delete_requires_post(tenant_a, client_for):
    destination = make_destination(tenant_a)
    assert client_for(tenant_a.admin).get(url("destination_delete", destination)).status_code == 405
    assert Destination.objects.exists()


# Audit -----------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_every_change_is_audited_without_secrets(tenant_a, client_for):
    client = client_for(tenant_a.admin)
    client.post(
        create_url(),
        form_data(secret=GIVEN_SECRET, header_name=["X-Api-Key"], header_value=[HEADER_VALUE]),
    )
    destination = Destination.objects.get()
    client.post(
        url("destination_edit", destination),
        form_data(name="Renamed", header_name=["X-Api-Key"], header_value=["second-value-77"]),
    )
    client.post(url("destination_pause", destination))
    client.post(url("destination_activate", destination))
    client.post(url("destination_rotate_secret", destination), {"overlap_hours": "24"})
    client.post(url("destination_delete", destination), {"confirm": "yes"})
    assert actions(tenant_a.tenant) == [
        "destination.created",
        "destination.updated",
        "destination.paused",
        "destination.activated",
        "destination.secret_rotated",
        "destination.deleted",
    ]
    for entry in destination_entries(tenant_a.tenant):
        assert entry.actor == tenant_a.admin
        assert entry.target_id == str(destination.pk)
        recorded = str(entry.before) + str(entry.after)
        for secret in (GIVEN_SECRET, HEADER_VALUE, "second-value-77"):
            assert secret not in recorded
