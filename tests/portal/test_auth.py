import pytest
from django.urls import reverse

from audit.models import AuditEntry
from tests.factories import TEST_PASSWORD


@pytest.mark.django_db
def test_sign_in_with_email_and_password(client, tenant_a):
    response = client.post(
        reverse("login"), {"username": "ADMIN@tenant-a.test", "password": TEST_PASSWORD}
    )
    assert response.status_code == 302
    page = client.get(reverse("integrations:index"))
    assert page.status_code == 200
    assert b"Tenant A" in page.content
    assert AuditEntry.objects.filter(tenant=tenant_a.tenant, action="auth.signed_in").count() == 1


@pytest.mark.django_db
def test_wrong_password_is_refused_and_audited(client, tenant_a):
    response = client.post(
        reverse("login"), {"username": "admin@tenant-a.test", "password": "not-the-password"}
    )
    assert response.status_code == 200
    assert b"Please enter a correct" in response.content
    entry = AuditEntry.objects.get(tenant=tenant_a.tenant, action="auth.sign_in_failed")
    assert "not-the-password" not in str(entry.before) + str(entry.after)


@pytest.mark.django_db
def test_repeated_failures_lock_the_account_out(client, tenant_a, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(reverse("login"), {"username": "admin@tenant-a.test", "password": "wrong"})
    response = client.post(
        reverse("login"), {"username": "admin@tenant-a.test", "password": TEST_PASSWORD}
    )
    assert response.status_code == 429
    assert b"Too many failed sign-ins" in response.content
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_sign_out(client_for, tenant_a):
    client = client_for(tenant_a.operator)
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get(reverse("integrations:index")).status_code == 302
    assert AuditEntry.objects.filter(action="auth.signed_out").count() == 1


@pytest.mark.django_db
def test_anonymous_is_sent_to_sign_in(client):
    response = client.get(reverse("integrations:index"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_login_page_has_no_external_assets(client):
    html = client.get(reverse("login")).content.decode()
    assert "http://" not in html.replace("http://testserver", "")
    assert "https://" not in html
