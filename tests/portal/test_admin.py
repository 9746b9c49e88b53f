"""Staff change memberships in Django's admin: every change is audited like anywhere else."""

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from portal.models import Membership, Role
from tests.factories import UserFactory


@pytest.fixture
def staff_client(client, db):
    staff = UserFactory(email="staff@platform.test", is_staff=True, is_superuser=True)
    client.force_login(staff)
    return client


def _actions(tenant):
    return list(
        AuditEntry.objects.filter(tenant=tenant, action__startswith="membership.")
        .order_by("sequence")
        .values_list("action", "actor_name")
    )


@pytest.mark.django_db
def test_membership_added_changed_and_removed_in_the_admin_are_audited(staff_client, tenant_a):
    newcomer = UserFactory(email="new@tenant-a.test")
    response = staff_client.post(
        reverse("admin:portal_membership_add"),
        {"user": newcomer.pk, "tenant": tenant_a.tenant.pk, "role": Role.OPERATOR},
    )
    assert response.status_code == 302, response.content[:2000]
    membership = Membership.objects.get(user=newcomer)
    response = staff_client.post(
        reverse("admin:portal_membership_change", args=[membership.pk]),
        {"user": newcomer.pk, "tenant": tenant_a.tenant.pk, "role": Role.AUDITOR},
    )
    assert response.status_code == 302
    assert Membership.objects.get(user=newcomer).role == Role.AUDITOR
    response = staff_client.post(
        reverse("admin:portal_membership_delete", args=[membership.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert not Membership.objects.filter(user=newcomer).exists()
    added = [a for a in _actions(tenant_a.tenant) if a[1] == "staff@platform.test"]
    assert [a[0] for a in added] == [
        "membership.added",
        "membership.changed",
        "membership.removed",
    ]


@pytest.mark.django_db
def test_membership_added_through_the_user_page_inline_is_audited(staff_client, tenant_a):
    newcomer = UserFactory(email="inline@tenant-a.test")
    page = staff_client.get(reverse("admin:portal_user_change", args=[newcomer.pk]))
    form = page.context["adminform"].form
    data = {
        name: value
        for name, value in form.initial.items()
        if value is not None and name not in ("password", "groups", "user_permissions")
    }
    for name in ("last_login", "date_joined"):
        value = form.initial.get(name)
        data[f"{name}_0"] = value.strftime("%Y-%m-%d") if value else ""
        data[f"{name}_1"] = value.strftime("%H:%M:%S") if value else ""
        data.pop(name, None)
    data.update(
        {
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "0",
            "memberships-0-tenant": tenant_a.tenant.pk,
            "memberships-0-role": Role.AUDITOR,
        }
    )
    response = staff_client.post(reverse("admin:portal_user_change", args=[newcomer.pk]), data)
    assert response.status_code == 302, response.context["errors"] if response.context else ""
    assert Membership.objects.get(user=newcomer).role == Role.AUDITOR
    assert ("membership.added", "staff@platform.test") in _actions(tenant_a.tenant)
