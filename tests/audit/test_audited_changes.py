"""Issue 13 §4: tenants, user flags and engine auto-disable are audited; users are
deactivated, never deleted; `revoked_at` is read-only; one lock order (no deadlock)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEntry
from audit.services import verify_chain
from integrations import services as integration_services
from integrations.audit_events import ENGINE_ACTOR, record_auto_disable
from integrations.catalogue import EventType
from integrations.models import Destination
from integrations.services import destination_create, destination_update
from portal.models import ApiToken, Membership, Role, Tenant
from portal.services import membership_set, tenant_create, user_save
from portal.tokens import api_token_create
from tests.factories import TenantFactory, UserFactory


@pytest.fixture
def staff(db):
    return UserFactory(email="staff@platform.test", is_staff=True, is_superuser=True)


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def _entries(tenant, prefix: str):
    return list(
        AuditEntry.objects.filter(tenant=tenant, action__startswith=prefix)
        .order_by("sequence")
        .values_list("action", "before", "after")
    )


# Tenants ------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_tenant_create_and_reparent_are_audited(staff):
    parent = tenant_create(name="Acme", slug="acme")
    other = tenant_create(name="Other", slug="other")
    child = tenant_create(name="Acme EMEA", slug="acme-emea", parent=parent, actor=staff)
    assert _entries(child, "tenant.") == [
        ("tenant.created", {}, {"name": "Acme EMEA", "slug": "acme-emea", "parent": "acme"})
    ]
    tenant_create(name="Acme EMEA", slug="acme-emea", parent=other, actor=staff)
    reparented = ("tenant.reparented", {"parent": "acme"}, {"parent": "other"})
    assert _entries(child, "tenant.")[-1] == reparented
    assert _entries(parent, "tenant.reparented") == [reparented]  # the old parent knows
    assert _entries(other, "tenant.reparented") == [reparented]  # and the new one
    assert verify_chain(child).ok


@pytest.mark.django_db
def test_tenant_reparented_in_the_admin_is_audited(staff_client):
    old, new = TenantFactory(slug="old-parent"), TenantFactory(slug="new-parent")
    child = tenant_create(name="Child", slug="child", parent=old)
    response = staff_client.post(
        reverse("admin:portal_tenant_change", args=[child.pk]),
        {"name": "Child", "slug": "child", "parent": new.pk},
    )
    assert response.status_code == 302
    action, before, after = _entries(child, "tenant.")[-1]
    assert (action, before, after) == (
        "tenant.reparented",
        {"parent": "old-parent"},
        {"parent": "new-parent"},
    )
    entry = AuditEntry.objects.filter(tenant=child).order_by("-sequence").first()
    assert entry.actor_name == "staff@platform.test"


# Users --------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_user_flag_changes_are_audited_in_each_of_their_tenants(tenant_a, tenant_b, staff):
    user = tenant_a.operator
    membership_set(user=user, tenant=tenant_b.tenant, role=Role.AUDITOR)
    user.is_staff = True
    user.is_superuser = True
    user_save(user=user, actor=staff)
    expected = (
        "user.flags_changed",
        {"is_staff": False, "is_superuser": False},
        {"is_staff": True, "is_superuser": True},
    )
    assert _entries(tenant_a.tenant, "user.") == [expected]
    assert _entries(tenant_b.tenant, "user.") == [expected]
    user.first_name = "Renamed"
    user_save(user=user, actor=staff)  # no flag changed: nothing more
    assert len(_entries(tenant_a.tenant, "user.")) == 1


@pytest.mark.django_db
def test_deactivating_in_the_admin_is_audited_and_deleting_is_refused(
    staff_client, tenant_a, client_for
):
    user = tenant_a.operator
    client_for(user)  # signs in: the user now has audit entries
    assert AuditEntry.objects.filter(actor=user).exists()
    changelist = reverse("admin:portal_user_changelist")
    response = staff_client.post(
        changelist, {"action": "deactivate", "_selected_action": [user.pk]}
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert not user.is_active
    assert _entries(tenant_a.tenant, "user.") == [
        ("user.flags_changed", {"is_active": True}, {"is_active": False})
    ]
    response = staff_client.post(
        reverse("admin:portal_user_delete", args=[user.pk]), {"post": "yes"}
    )
    assert response.status_code == 403
    response = staff_client.post(
        changelist, {"action": "delete_selected", "_selected_action": [user.pk]}
    )
    assert response.status_code in (200, 302)
    assert type(user).objects.filter(pk=user.pk).exists()
    assert Membership.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_revoked_at_is_read_only_in_the_admin_and_revoking_is_audited(staff_client, tenant_a):
    api_token, _ = api_token_create(user=tenant_a.admin, tenant=tenant_a.tenant, name="ci")
    url = reverse("admin:portal_apitoken_change", args=[api_token.pk])
    form = staff_client.get(url).context["adminform"].form
    assert "revoked_at" not in form.fields
    response = staff_client.post(
        reverse("admin:portal_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [api_token.pk]},
    )
    assert response.status_code == 302
    assert ApiToken.objects.get(pk=api_token.pk).revoked_at is not None
    assert _entries(tenant_a.tenant, "api_token.revoked")


# Engine auto-disable ---------------------------------------------------------------------------
@pytest.mark.django_db
def test_auto_disable_is_audited_once_by_the_engine_helper(tenant_a):
    destination, _ = destination_create(
        tenant=tenant_a.tenant,
        actor=None,
        data={
            "name": "failing",
            "endpoint_url": "https://hooks.example.com/x",
            "event_types": [EventType.DETECTION_ALERT],
        },
    )
    record_auto_disable(destination.pk, "not disabled yet")
    assert not _entries(tenant_a.tenant, "destination.auto_disabled")
    Destination.objects.filter(pk=destination.pk).update(
        disabled_at=timezone.now(), disabled_reason="No successful delivery for 120 hours."
    )
    record_auto_disable(destination.pk, "No successful delivery for 120 hours.")
    record_auto_disable(destination.pk, "No successful delivery for 120 hours.")  # once only
    entries = AuditEntry.objects.filter(tenant=tenant_a.tenant, action="destination.auto_disabled")
    assert entries.count() == 1
    entry = entries.get()
    assert entry.actor_name == ENGINE_ACTOR and entry.target_id == str(destination.pk)
    assert entry.after == {"disabled": True, "reason": "No successful delivery for 120 hours."}


# Lock order ---------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_edits_fanning_out_audit_events_do_not_deadlock(monkeypatch):
    tenant = TenantFactory(slug="locks")
    destinations = [
        destination_create(
            tenant=tenant,
            actor=None,
            data={
                "name": f"hook {n}",
                "endpoint_url": f"https://hooks.example.com/{n}",
                "event_types": list(EventType.values),  # audit_log events fan out to both
            },
        )[0]
        for n in range(2)
    ]
    Destination.objects.filter(tenant=tenant).update(next_due_at=None)
    # Hold each edit between its row lock and its audit entry until the other one got there
    # too (or 2 s passed): with the row locked before the audit lock, that is a deadlock.
    barrier = threading.Barrier(2, timeout=2)
    apply = integration_services._apply

    def meet_then_apply(destination, data):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        apply(destination, data)

    monkeypatch.setattr(integration_services, "_apply", meet_then_apply)
    errors: list[BaseException] = []

    def edit(destination):
        try:
            destination_update(
                destination=destination, actor=None, data={"name": destination.name + " renamed"}
            )
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=edit, args=(d,)) for d in destinations]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    names = sorted(Destination.objects.filter(tenant=tenant).values_list("name", flat=True))
    assert names == ["hook 0 renamed", "hook 1 renamed"]
    assert verify_chain(Tenant.objects.get(pk=tenant.pk)).ok
