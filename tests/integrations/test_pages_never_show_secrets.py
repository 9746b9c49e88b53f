"""No delivery page shows a signing secret or a custom header value, for any role."""

from __future__ import annotations

import pytest
from django.urls import reverse

from integrations.catalogue import EventType
from integrations.delivery import drain
from integrations.delivery.signing import sign
from integrations.models import (
    Attempt,
    Delivery,
    DeliveryState,
    ResendJob,
)
from integrations.services import send_queued_test
from tests.integrations.engine_helpers import SECRET, make_destination
from tests.integrations.page_helpers import (
    HEADER_VALUE,
    ROLES,
    action_url,
    check,
    detail_url,
    page,
    publish,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("quiet_queue")]


@pytest.mark.parametrize("role", ROLES)
def test_no_page_shows_a_secret_or_a_custom_header_value(
    role, tenant_a, client_for, hook, receiver, settings
):
    splunk = make_destination(
        tenant_a.tenant,
        receiver,
        name="Splunk hook",
        provider="splunk_hec",
        event_types=[EventType.DETECTION_ALERT],
        custom_headers={"X-Api-Key": HEADER_VALUE},
    )
    publish(tenant_a.tenant)
    receiver.script([500])
    drain.drain(hook.pk)
    drain.drain(splunk.pk)
    admin = client_for(tenant_a.admin)
    admin.post(action_url("destination_send_test", hook))
    admin.post(action_url("destination_send_test", splunk))
    for delivery in Delivery.objects.filter(is_test=True):
        send_queued_test(delivery.pk)
    job = ResendJob.objects.create(tenant=tenant_a.tenant, destination=hook)
    client = client_for(tenant_a.user(role))
    responses = [
        client.get(reverse("integrations:index")),
        client.get(reverse("integrations:live")),
    ]
    for destination in (hook, splunk):
        responses.append(client.get(detail_url(destination)))
        responses.append(page(client, "destination_deliveries", destination_id=destination.pk))
        responses.append(check(client, destination, "{}", sign(b"{}", "x")))
    for delivery in Delivery.objects.filter(tenant=tenant_a.tenant):
        responses.append(page(client, "delivery_detail", delivery_id=delivery.pk))
    responses.append(page(client, "resend_job_status", job_id=job.pk))
    if role == "admin":
        send = client.post(action_url("destination_send_test", splunk), HTTP_HX_REQUEST="true")
        responses.append(send)
        for delivery in Delivery.objects.filter(is_test=True, state=DeliveryState.PENDING):
            send_queued_test(delivery.pk)
            url = reverse(
                "integrations:destination_test_result", kwargs={"test_delivery_id": delivery.pk}
            )
            responses.append(client.get(url))
    assert Attempt.objects.filter(delivery__destination=splunk).count() >= 2
    for response in responses:
        assert response.status_code == 200, response.request["PATH_INFO"]
        html = response.content.decode()
        assert SECRET not in html and HEADER_VALUE not in html, response.request["PATH_INFO"]
    splunk_pages = "".join(r.content.decode() for r in responses)
    assert "Splunk ••••••••" in splunk_pages  # the Authorization header, masked
