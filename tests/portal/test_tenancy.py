import pytest
from django.urls import reverse

from portal.models import Membership, Role
from tests.factories import MembershipFactory


@pytest.mark.django_db
def test_user_in_two_tenants_can_switch(client_for, tenant_a, tenant_b):
    MembershipFactory(user=tenant_a.operator, tenant=tenant_b.tenant, role=Role.ADMIN)
    client = client_for(tenant_a.operator)
    page = client.get(reverse("integrations:index"))
    assert b'id="tenant-select"' in page.content
    response = client.post(reverse("switch_tenant"), {"tenant": "tenant-b", "next": "/audit/"})
    assert response.status_code == 302
    assert response["Location"] == "/audit/"
    page = client.get(reverse("integrations:index"))
    assert page.wsgi_request.tenant == tenant_b.tenant
    assert page.wsgi_request.membership.role == Role.ADMIN


@pytest.mark.django_db
def test_switching_to_a_tenant_without_membership_is_refused(client_for, tenant_a, tenant_b):
    client = client_for(tenant_a.admin)
    response = client.post(reverse("switch_tenant"), {"tenant": "tenant-b"})
    assert response.status_code == 403
    page = client.get(reverse("integrations:index"))
    assert page.wsgi_request.tenant == tenant_a.tenant


@pytest.mark.django_db
def test_switch_ignores_offsite_next(client_for, tenant_a):
    client = client_for(tenant_a.admin)
    response = client.post(
        reverse("switch_tenant"), {"tenant": "tenant-a", "next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("home")


@pytest.mark.django_db
def test_switch_requires_post(client_for, tenant_a):
    assert client_for(tenant_a.admin).get(reverse("switch_tenant")).status_code == 405


@pytest.mark.django_db
def test_user_without_membership_gets_no_tenant_pages(client_for, django_user_model):
    user = django_user_model.objects.create_user(email="lonely@example.test", password="x")
    client = client_for(user)
    assert client.get(reverse("integrations:index")).status_code == 403
    assert client.get(reverse("home")).status_code == 403


@pytest.mark.django_db
def test_management_commands_create_tenant_and_member(capsys):
    from django.core.management import call_command

    call_command("create_tenant", "--name", "Initech", "--slug", "initech")
    call_command(
        "add_member",
        "--email",
        "Boss@Initech.test",
        "--tenant",
        "initech",
        "--role",
        "auditor",
        "--password",
        "a-long-enough-password-1",
    )
    membership = Membership.objects.get(user__email="boss@initech.test")
    assert membership.role == Role.AUDITOR
    assert membership.tenant.slug == "initech"


@pytest.mark.django_db
def test_demo_is_idempotent():
    from django.core.management import call_command

    call_command("demo")
    call_command("demo")
    assert Membership.objects.filter(user__email="multi@acme.test").count() == 2
    assert Membership.objects.get(user__email="multi@acme.test", tenant__slug="globex").role == (
        Role.ADMIN
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "target", ["' OR 1=1 --", "//evil.example/", "javascript:alert(1)", "x" * 5000]
)
def test_switch_ignores_a_hostile_next(client_for, tenant_a, target):
    response = client_for(tenant_a.admin).post(
        reverse("switch_tenant"), {"tenant": "tenant-a", "next": target}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("home")
