"""Resend a delivery, and resend all failed with its progress."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEntry
from integrations.delivery import drain
from integrations.models import (
    Delivery,
    DeliveryState,
    Destination,
    ResendJob,
    ResendJobState,
)
from integrations.services import resend_job_run
from tests.integrations.page_helpers import (
    READ_ONLY_ROLES,
    ROLES,
    action_url,
    add_delivery,
    detail_url,
    main_html,
    other_destination,
    page,
    publish,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("quiet_queue")]


def test_admin_resends_a_failed_delivery_which_then_delivers(tenant_a, client_for, hook, receiver):
    # The receiver accepted deliveries before (a new one holds its stream instead of failing).
    Destination.objects.filter(pk=hook.pk).update(last_success_at=timezone.now())
    publish(tenant_a.tenant)
    receiver.script([400])
    drain.drain(hook.pk)
    delivery = Delivery.objects.get(destination=hook)
    assert delivery.state == DeliveryState.FAILED
    client = client_for(tenant_a.admin)
    html = main_html(client.get(detail_url(hook)))
    assert f'action="{action_url("delivery_resend", delivery)}"' in html

    back = detail_url(hook) + "#deliveries"
    response = client.post(action_url("delivery_resend", delivery), {"next": back})
    assert response.status_code == 302 and response["Location"] == back
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.PENDING
    assert AuditEntry.objects.filter(tenant=tenant_a.tenant, action="delivery.resend").exists()

    drain.drain(hook.pk)
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.DELIVERED
    assert len(receiver) == 2
    row = re.search(
        rf'<tr id="delivery-{delivery.pk}">.*?</tr>', client.get(back).content.decode(), re.S
    )
    assert '<span class="badge state-delivered">Delivered</span>' in row.group(0)
    assert "<td>2 of " in row.group(0)


def test_resend_from_the_delivery_page(tenant_a, client_for, hook):
    delivery = add_delivery(hook, DeliveryState.FAILED)
    client = client_for(tenant_a.admin)
    html = main_html(page(client, "delivery_detail", delivery_id=delivery.pk))
    assert '<button type="submit" class="btn btn-primary">Resend</button>' in html
    response = client.post(action_url("delivery_resend", delivery))
    assert response["Location"] == reverse(
        "integrations:delivery_detail", kwargs={"delivery_id": delivery.pk}
    )
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.PENDING


def test_resend_ignores_a_next_url_elsewhere(tenant_a, client_for, hook):
    delivery = add_delivery(hook, DeliveryState.FAILED)
    response = client_for(tenant_a.admin).post(
        action_url("delivery_resend", delivery), {"next": "https://evil.example/"}
    )
    assert response["Location"].startswith("/integrations/deliveries/")


def test_a_delivered_delivery_cannot_be_resent(tenant_a, client_for, hook):
    delivery = add_delivery(hook)
    client = client_for(tenant_a.admin)
    assert "Resend</button>" not in main_html(
        page(client, "delivery_detail", delivery_id=delivery.pk)
    )
    response = client.post(action_url("delivery_resend", delivery), follow=True)
    assert "Only failed deliveries can be resent." in response.content.decode()
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.DELIVERED


@pytest.mark.parametrize("role", READ_ONLY_ROLES)
def test_operator_and_auditor_cannot_resend(role, tenant_a, client_for, hook):
    delivery = add_delivery(hook, DeliveryState.FAILED)
    client = client_for(tenant_a.user(role))
    html = main_html(page(client, "delivery_detail", delivery_id=delivery.pk))
    assert "<form" not in html and "Resend" not in html
    assert client.post(action_url("delivery_resend", delivery)).status_code == 403
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.FAILED


def test_another_tenants_delivery_cannot_be_resent(tenant_a, tenant_b, client_for):
    delivery = add_delivery(other_destination(tenant_b.tenant), DeliveryState.FAILED)
    response = client_for(tenant_a.admin).post(action_url("delivery_resend", delivery))
    assert response.status_code == 404
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.FAILED


def test_resend_requires_post(tenant_a, client_for, hook):
    delivery = add_delivery(hook, DeliveryState.FAILED)
    assert (
        client_for(tenant_a.admin).get(action_url("delivery_resend", delivery)).status_code == 405
    )


# Resend all failed -------------------------------------------------------------------------------
def test_admin_resends_all_failed_with_live_progress(tenant_a, client_for, hook):
    failed = [add_delivery(hook, DeliveryState.FAILED) for _ in range(3)]
    client = client_for(tenant_a.admin)
    html = main_html(client.get(detail_url(hook)))
    assert '<button type="submit" class="btn">Resend all failed</button>' in html

    response = client.post(action_url("destination_resend_failed", hook))
    assert response.status_code == 302
    assert response["Location"] == detail_url(hook) + "#resend-job"
    job = ResendJob.objects.get(destination=hook)
    assert (job.total, job.state) == (3, ResendJobState.QUEUED)
    assert AuditEntry.objects.filter(tenant=tenant_a.tenant, action="delivery.resend_all").exists()

    # The page shows the job from the database: it survives a reload, and polls its progress.
    status_url = reverse("integrations:resend_job_status", kwargs={"job_id": job.pk})
    html = main_html(client.get(detail_url(hook)))
    assert "Resending 3 failed deliveries." in html
    panel = re.search(r'<div id="resend-job".*?</div>\s*<p', html, re.S).group(0)
    assert f'hx-get="{status_url}"' in panel and 'hx-trigger="every 2s"' in panel
    assert '<span style="width: 0%"></span>' in panel

    ResendJob.objects.filter(pk=job.pk).update(state=ResendJobState.RUNNING, total=4, done=1)
    fragment = client.get(status_url).content.decode()
    assert '<span style="width: 25%"></span>' in fragment and 'aria-valuenow="25"' in fragment
    assert "hx-trigger" in fragment

    ResendJob.objects.filter(pk=job.pk).update(state=ResendJobState.QUEUED, total=3, done=0)
    resend_job_run(job.pk)
    fragment = client.get(status_url).content.decode()
    assert '<span style="width: 100%"></span>' in fragment and "Resend finished" in fragment
    assert "hx-trigger" not in fragment  # done: the polling stops
    assert all(Delivery.objects.get(pk=d.pk).state == DeliveryState.PENDING for d in failed)
    assert "Resend finished" in main_html(client.get(detail_url(hook)))


def test_resend_all_is_offered_only_with_failed_deliveries(tenant_a, client_for, hook):
    add_delivery(hook)
    html = main_html(client_for(tenant_a.admin).get(detail_url(hook)))
    assert "Resend all failed" not in html


@pytest.mark.parametrize("role", READ_ONLY_ROLES)
def test_operator_and_auditor_cannot_resend_all(role, tenant_a, client_for, hook):
    add_delivery(hook, DeliveryState.FAILED)
    client = client_for(tenant_a.user(role))
    assert "Resend all failed" not in main_html(client.get(detail_url(hook)))
    assert client.post(action_url("destination_resend_failed", hook)).status_code == 403
    assert not ResendJob.objects.exists()


def test_another_tenants_destination_cannot_resend_all(tenant_a, tenant_b, client_for):
    destination = other_destination(tenant_b.tenant)
    add_delivery(destination, DeliveryState.FAILED)
    response = client_for(tenant_a.admin).post(action_url("destination_resend_failed", destination))
    assert response.status_code == 404
    assert not ResendJob.objects.exists()


def test_resend_all_requires_post(tenant_a, client_for, hook):
    response = client_for(tenant_a.admin).get(action_url("destination_resend_failed", hook))
    assert response.status_code == 405


def test_every_role_can_watch_the_progress_but_not_another_tenants(
    tenant_a, tenant_b, client_for, hook
):
    job = ResendJob.objects.create(tenant=tenant_a.tenant, destination=hook, total=2, done=1)
    outsider = ResendJob.objects.create(
        tenant=tenant_b.tenant, destination=other_destination(tenant_b.tenant)
    )
    for role in ROLES:
        response = page(client_for(tenant_a.user(role)), "resend_job_status", job_id=job.pk)
        assert response.status_code == 200 and "50%" in response.content.decode()
    response = page(client_for(tenant_a.admin), "resend_job_status", job_id=outsider.pk)
    assert response.status_code == 404
