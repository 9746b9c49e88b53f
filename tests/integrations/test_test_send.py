"""Send test event: the action and its result."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from integrations.catalogue import EXAMPLE_PAYLOADS, EventType
from integrations.delivery import drain
from integrations.models import (
    Delivery,
    DeliveryState,
    Health,
)
from integrations.services import (
    destination_test_queue,
    send_queued_test,
)
from tests.integrations.page_helpers import (
    READ_ONLY_ROLES,
    XSS_RESPONSE,
    action_url,
    add_delivery,
    detail_url,
    main_html,
    other_destination,
    publish,
    queued_test,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("quiet_queue")]


def test_admin_sends_a_test_event_and_sees_the_outcome(tenant_a, client_for, hook, receiver):
    receiver.script([(200, {"Content-Type": "text/plain"}, "thanks <b>ok</b>")])
    admin = client_for(tenant_a.admin)
    response = admin.post(action_url("destination_send_test", hook))
    # Queued for a worker: the web request never holds the send.
    delivery = queued_test(hook)
    assert response.status_code == 302
    assert response["Location"] == f"{detail_url(hook)}?test={delivery.pk}#test-result"
    assert delivery.state == DeliveryState.PENDING and len(receiver) == 0
    pending = main_html(admin.get(response["Location"]))
    assert "Sending a test event…" in pending

    send_queued_test(delivery.pk)  # what the worker runs

    result = re.search(
        r'<div id="test-result".*?</pre>', main_html(admin.get(response["Location"])), re.S
    ).group(0)
    assert "Test event delivered</strong>" in result and "HTTP 200 in " in result
    assert "thanks &lt;b&gt;ok&lt;/b&gt;" in result
    [request] = receiver.received
    [event] = request.json["events"]
    assert request.signature_ok and event["event"]["test"] is True
    # A realistic sample of a type the destination forwards (the catalogue's example).
    assert event["event_type"] == hook.event_types[0]
    assert event["event"]["detection"] == EXAMPLE_PAYLOADS[EventType.DETECTION_ALERT]["detection"]
    assert AuditEntry.objects.filter(
        tenant=tenant_a.tenant, action="destination.test_sent"
    ).exists()
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.DELIVERED
    hook.refresh_from_db()  # a delivered test is proof of health
    assert hook.health == Health.HEALTHY and hook.last_success_at is not None


def test_a_failed_test_event_explains_what_to_do(tenant_a, client_for, hook, receiver):
    receiver.script([(401, {"Content-Type": "text/html"}, XSS_RESPONSE)])
    admin = client_for(tenant_a.admin)
    response = admin.post(action_url("destination_send_test", hook), HTTP_HX_REQUEST="true")
    body = response.content.decode()
    delivery = queued_test(hook)
    poll_url = reverse(
        "integrations:destination_test_result", kwargs={"test_delivery_id": delivery.pk}
    )
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="test-result"') and "<html" not in body
    assert f'hx-get="{poll_url}"' in body and "Sending a test event…" in body

    send_queued_test(delivery.pk)

    response = admin.get(poll_url, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response["HX-Trigger"] == "deliveries-changed"  # the list refreshes at once
    assert "hx-get" not in body  # polling stops once the result is known
    assert "Test event failed</strong>" in body and "HTTP 401" in body
    assert "Authentication / Permission denied (HTTP 401)" in body
    assert "Check the credentials your endpoint expects" in body
    assert XSS_RESPONSE not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    hook.refresh_from_db()  # nothing real was sent yet: the health names the problem
    assert hook.health == Health.AUTH_DENIED


def test_a_failed_test_does_not_overrule_the_streams_health(tenant_a, hook, receiver):
    publish(tenant_a.tenant)
    receiver.script([200, 404])
    drain.drain(hook.pk)
    send_queued_test(destination_test_queue(destination=hook, actor=tenant_a.admin).pk)
    hook.refresh_from_db()
    assert hook.health == Health.HEALTHY


def test_the_test_result_is_only_for_admins_of_the_tenant(
    tenant_a, tenant_b, client_for, hook, receiver
):
    delivery = destination_test_queue(destination=hook, actor=tenant_a.admin)
    url = reverse("integrations:destination_test_result", kwargs={"test_delivery_id": delivery.pk})
    assert client_for(tenant_a.admin).get(url).status_code == 200
    for role in READ_ONLY_ROLES:
        assert client_for(tenant_a.user(role)).get(url).status_code == 403
    assert client_for(tenant_b.admin).get(url).status_code == 404
    stream = add_delivery(hook, DeliveryState.DELIVERED)  # not a test: not shown here
    other = reverse("integrations:destination_test_result", kwargs={"test_delivery_id": stream.pk})
    assert client_for(tenant_a.admin).get(other).status_code == 404


def test_send_test_page_offers_the_htmx_swap(tenant_a, client_for, hook):
    html = main_html(client_for(tenant_a.admin).get(detail_url(hook)))
    url = action_url("destination_send_test", hook)
    assert f'hx-post="{url}" hx-target="#test-result" hx-swap="outerHTML"' in html
    assert '<div id="test-result" aria-live="polite">' in html


@pytest.mark.parametrize("role", READ_ONLY_ROLES)
def test_operator_and_auditor_cannot_send_a_test_event(role, tenant_a, client_for, hook, receiver):
    response = client_for(tenant_a.user(role)).post(action_url("destination_send_test", hook))
    assert response.status_code == 403
    assert len(receiver) == 0


def test_another_tenants_destination_gets_no_test_event(tenant_a, tenant_b, client_for, receiver):
    destination = other_destination(tenant_b.tenant)
    response = client_for(tenant_a.admin).post(action_url("destination_send_test", destination))
    assert response.status_code == 404
    assert not Delivery.objects.exists()


def test_send_test_requires_post(tenant_a, client_for, hook, receiver):
    response = client_for(tenant_a.admin).get(action_url("destination_send_test", hook))
    assert response.status_code == 405
    assert len(receiver) == 0
