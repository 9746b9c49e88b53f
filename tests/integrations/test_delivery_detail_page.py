"""A delivery's page: its events and attempts."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from integrations import views
from integrations.delivery import drain
from integrations.delivery.signing import sign
from integrations.models import (
    Delivery,
    DeliveryEvent,
    DeliveryState,
)
from tests.integrations.engine_helpers import SECRET
from tests.integrations.page_helpers import (
    HEADER_VALUE,
    XSS_PAYLOAD,
    XSS_RESPONSE,
    add_attempt,
    add_delivery,
    main_html,
    other_destination,
    page,
    publish,
    section,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("quiet_queue")]


def test_delivery_page_shows_events_and_attempts_escaped(tenant_a, client_for, hook, receiver):
    publish(tenant_a.tenant, 2, note=XSS_PAYLOAD)
    receiver.script([(500, {"Content-Type": "text/html"}, XSS_RESPONSE)])
    drain.drain(hook.pk)
    delivery = Delivery.objects.get(destination=hook)
    attempt = delivery.attempts.get()
    response = page(client_for(tenant_a.operator), "delivery_detail", delivery_id=delivery.pk)
    assert response.status_code == 200
    html = main_html(response)
    assert XSS_RESPONSE not in html and XSS_PAYLOAD not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    events = section(html, "delivery-events")
    assert events.count('<pre class="payload">') == 2
    assert "&quot;n&quot;: 0" in events  # pretty-printed JSON, escaped
    attempts = section(html, "delivery-attempts")
    assert str(attempt.delivery_uuid) in attempts
    assert f"<dd>{attempt.duration_ms} ms</dd>" in attempts
    assert "<dt>Status code</dt><dd>500</dd>" in attempts
    assert "500: your endpoint failed while handling the request." in attempts
    assert "Check your endpoint&#x27;s logs." in attempts
    # The headers sent: the signature is shown, custom header values are masked.
    assert "<code>X-OneProtect-Signature</code>" in attempts
    assert sign(receiver.received[0].body, SECRET) in attempts
    assert '<code>X-Api-Key</code></td><td class="mono small">••••••••</td>' in attempts
    assert HEADER_VALUE not in response.content.decode()


def test_delivery_page_caps_the_events_shown(tenant_a, client_for, hook, monkeypatch):
    monkeypatch.setattr(views, "EVENTS_SHOWN", 2)
    publish(tenant_a.tenant, 3)
    drain.drain(hook.pk)
    delivery = Delivery.objects.get(destination=hook)
    html = main_html(page(client_for(tenant_a.admin), "delivery_detail", delivery_id=delivery.pk))
    assert "Showing the first 2 of 3 events." in html
    assert html.count('<pre class="payload">') == 2


def test_delivery_page_queries_do_not_grow_with_attempts(
    tenant_a, client_for, hook, django_assert_max_num_queries
):
    client = client_for(tenant_a.admin)
    small = add_delivery(hook, DeliveryState.RETRYING)
    add_attempt(small, ok=False)
    big = add_delivery(hook, DeliveryState.RETRYING, attempt_count=10)
    for number in range(1, 11):
        add_attempt(big, ok=False, number=number, request_headers={"X-Number": str(number)})
    for delivery, events in ((small, publish(tenant_a.tenant, 1)), (big, [])):
        DeliveryEvent.objects.filter(event__in=events).update(delivery=delivery)
    DeliveryEvent.objects.filter(delivery__isnull=True).update(delivery=big)
    page(client, "delivery_detail", delivery_id=small.pk)
    with CaptureQueriesContext(connection) as one:
        page(client, "delivery_detail", delivery_id=small.pk)
    publish_more = publish(tenant_a.tenant, 9)
    DeliveryEvent.objects.filter(event__in=publish_more).update(delivery=big)
    with django_assert_max_num_queries(len(one)):
        response = page(client, "delivery_detail", delivery_id=big.pk)
    assert main_html(response).count('<article class="attempt"') == 10


def test_another_tenants_delivery_is_404(tenant_a, tenant_b, client_for):
    delivery = add_delivery(other_destination(tenant_b.tenant))
    response = page(client_for(tenant_a.admin), "delivery_detail", delivery_id=delivery.pk)
    assert response.status_code == 404
