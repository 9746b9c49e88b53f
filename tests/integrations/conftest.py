"""Fixtures of the delivery page tests: a quiet queue, a destination on the loopback receiver
and a real delivery it received. (No network: tests/conftest.py.)

The portal page tests here (test_overview_page, test_deliveries_page, test_delivery_detail_page,
test_test_send, test_resend, test_signature_check, test_receiver_guide,
test_pages_never_show_secrets; test_destination_list, _form, _page, _actions) test every view
that changes data for the house's four cases: it works for an admin; it is 403 for an operator
and an auditor; another tenant's object is 404; a GET is 405 where the view is POST-only. They
use real PostgreSQL and, where something is sent, a real receiver on 127.0.0.1; the destination
page tests never touch the network (the `no_network` fixture).
"""

from __future__ import annotations

import pytest

from integrations.catalogue import EventType
from integrations.delivery import drain
from tests.integrations.engine_helpers import allow_receiver, make_destination
from tests.integrations.page_helpers import HEADER_VALUE, publish


@pytest.fixture
def quiet_queue(settings):
    """Nothing is queued to django-q2: tests drive the engine and the resend job directly."""
    settings.WEBHOOK_ENQUEUE = False
    settings.WEBHOOK_RETRY_JITTER = 0


@pytest.fixture
def hook(tenant_a, receiver, settings):
    """A destination of tenant A on the loopback receiver, with a custom header."""
    allow_receiver(settings, receiver)
    return make_destination(
        tenant_a.tenant,
        receiver,
        name="SOC hook",
        event_types=[EventType.DETECTION_ALERT],
        custom_headers={"X-Api-Key": HEADER_VALUE},
    )


@pytest.fixture
def received(tenant_a, hook, receiver):
    """A real delivery's raw body and signature header value, as the receiver got them."""
    publish(tenant_a.tenant, 2, note="café")
    drain.drain(hook.pk)
    [request] = receiver.received
    return request.body.decode(), request.header("X-OneProtect-Signature")
