"""The Integrations page: delivery health (cards, chart, backlog, banners) and recent deliveries."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from integrations import selectors
from integrations.catalogue import EventType
from integrations.delivery import drain
from integrations.models import (
    DeliveryEvent,
    DeliveryState,
    Destination,
)
from integrations.services import (
    destination_create,
    destination_set_active,
)
from tests.integrations.engine_helpers import SECRET, allow_receiver, make_destination
from tests.integrations.page_helpers import (
    add_attempt,
    add_delivery,
    detail_url,
    health_cards,
    main_html,
    other_destination,
    publish,
    section,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("quiet_queue")]


def test_health_cards_name_each_state_in_customer_words(
    tenant_a, client_for, receiver, make_receiver, settings
):
    dead = make_receiver()
    dead_url, dead_port = dead.url, dead.port
    dead.stop()  # nothing listens there any more: connection refused
    allow_receiver(settings, receiver)
    settings.WEBHOOK_ALLOWED_PRIVATE_TARGETS += [f"127.0.0.1:{dead_port}"]
    tenant = tenant_a.tenant
    names = ["Healthy hook", "Retrying hook", "Denied hook", "Limited hook", "Unreachable hook"]
    destinations = [
        make_destination(tenant, receiver, name=name, event_types=[EventType.DETECTION_ALERT])
        for name in names
    ]
    destination_create(
        tenant=tenant,
        actor=None,
        data={
            "name": "Unreachable hook 2",
            "endpoint_url": dead_url,
            "secret": SECRET,
            "event_types": [EventType.AUDIT_LOG],
        },
    )
    Destination.objects.filter(name="Unreachable hook").update(endpoint_url=dead_url)
    paused = other_destination(tenant, name="Paused hook")
    destination_set_active(destination=paused, actor=None, active=False)
    other_destination(tenant, name="Quiet hook")
    publish(tenant)
    receiver.script([200, 500, 401, (429, {"Retry-After": "60"})])
    for destination in destinations:
        drain.drain(destination.pk)

    html = main_html(client_for(tenant_a.operator).get(reverse("integrations:index")))
    cards = health_cards(section(html, "delivery-health"))
    expected = {
        "Healthy hook": ("healthy", "Healthy"),
        "Retrying hook": ("retrying", "Retrying"),
        "Denied hook": ("auth_denied", "Authentication / Permission denied"),
        "Limited hook": ("rate_limited", "Rate limited"),
        "Unreachable hook": ("unreachable", "Endpoint unreachable"),
        "Paused hook": ("paused", "Paused"),
        "Quiet hook": ("no_events", "No events yet"),
    }
    for name, (value, label) in expected.items():
        assert f'<span class="badge health-{value}">{label}</span>' in cards[name], name


def test_health_card_shows_success_rate_p95_latency_and_last_success(
    tenant_a, client_for, settings
):
    destination = other_destination(tenant_a.tenant)
    now = timezone.now()
    Destination.objects.filter(pk=destination.pk).update(
        last_success_at=now - timedelta(minutes=3),
        last_attempt_at=now,
        last_outcome_ok=True,
    )
    open_delivery = add_delivery(destination, DeliveryState.RETRYING)
    for number in range(1, 20):  # 19 attempts of 100 ms, 17 acknowledged
        add_attempt(open_delivery, ok=number > 2, duration_ms=100, number=number)
    add_attempt(open_delivery, ok=True, duration_ms=1000, number=20)
    # Outside the window or not part of the stream: left out.
    add_attempt(open_delivery, ok=False, duration_ms=99_999, started_at=now - timedelta(hours=25))
    old = add_delivery(destination, finished_at=now - timedelta(days=2))
    add_attempt(old, ok=False, duration_ms=99_999, started_at=now - timedelta(days=2))
    test_send = add_delivery(destination, DeliveryState.FAILED, is_test=True)
    add_attempt(test_send, ok=False, duration_ms=99_999)

    html = main_html(client_for(tenant_a.auditor).get(reverse("integrations:index")))
    card = health_cards(html)["Other hook"]
    # percentile_cont(0.95) of nineteen 100s and one 1000: 100 + 0.05 × 900 = 145.
    assert re.search(r'<dd class="value">90%</dd>\s*<dd class="small muted">20 attempts</dd>', card)
    assert '<dd class="value">145 ms</dd>' in card
    assert ">3 min ago</time>" in card
    assert re.search(r'<time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">', card)
    assert "18 delivered and 2 failed attempts in the last 24 hours" in card


def test_health_card_without_attempts_says_so(tenant_a, client_for):
    other_destination(tenant_a.tenant)
    card = health_cards(main_html(client_for(tenant_a.admin).get(reverse("integrations:index"))))
    card = card["Other hook"]
    assert "Never" in card and "0 attempts" in card
    assert "No delivery attempts in the last 24 hours." in card
    assert card.count('<g class="bar">') == 24


def test_chart_has_24_hourly_bars_of_delivered_and_failed(tenant_a, client_for):
    destination = other_destination(tenant_a.tenant)
    delivery = add_delivery(destination, DeliveryState.RETRYING)
    # The middle of the last full hour: "2 minutes ago" never falls into the hour before.
    now = timezone.now().replace(minute=30, second=0, microsecond=0) - timedelta(hours=1)
    add_attempt(delivery, ok=True, started_at=now - timedelta(minutes=1), number=1)
    add_attempt(delivery, ok=False, started_at=now - timedelta(minutes=2), number=2)
    add_attempt(delivery, ok=False, started_at=now - timedelta(hours=5), number=3)

    [card] = selectors.destinations_health([destination], now=now)
    assert len(card.bars) == 24
    assert (card.bars[-1].delivered, card.bars[-1].failed) == (1, 1)
    five_hours_ago = selectors.chart_start(now) + timedelta(hours=18)
    assert (card.bars[18].start, card.bars[18].failed) == (five_hours_ago, 1)
    assert sum(bar.delivered + bar.failed for bar in card.bars) == 3

    html = health_cards(main_html(client_for(tenant_a.admin).get(reverse("integrations:index"))))
    svg = re.search(r"<svg.*?</svg>", html["Other hook"], re.S).group(0)
    assert 'role="img"' in svg and "<desc id=" in svg
    assert svg.count('<g class="bar">') == 24
    assert svg.count('class="delivered"') == 1 and svg.count('class="failed"') == 2
    assert re.search(r"<title>\d\d:00–\d\d:00 UTC: 1 delivered, 1 failed</title>", svg)


def test_backlog_counts_waiting_events_and_events_in_open_deliveries(
    tenant_a, client_for, hook, receiver
):
    client = client_for(tenant_a.admin)
    publish(tenant_a.tenant, 3)

    def backlog() -> str:
        card = health_cards(main_html(client.get(reverse("integrations:index"))))["SOC hook"]
        return re.search(r"<dt>Backlog</dt>\s*<dd class=\"value\">([^<]*)</dd>", card).group(1)

    assert backlog() == "3"
    receiver.script([503])
    drain.drain(hook.pk)  # the three events are now in a retrying delivery
    assert DeliveryEvent.objects.filter(destination=hook, delivery__isnull=True).count() == 0
    assert backlog() == "3"


def test_disabled_destination_shows_a_banner(tenant_a, client_for):
    destination = other_destination(tenant_a.tenant, name="Tired hook")
    Destination.objects.filter(pk=destination.pk).update(
        disabled_at=timezone.now(),
        disabled_reason="No successful delivery for 120 hours. Last error: HTTP 500",
    )
    html = main_html(client_for(tenant_a.operator).get(reverse("integrations:index")))
    assert (
        "Tired hook was disabled after failing for a long time: No successful delivery for 120 "
        "hours. Last error: HTTP 500. Fix the endpoint, then Activate it to resume; its backlog "
        "is kept." in " ".join(html.split())
    )
    assert '<span class="badge health-disabled">Disabled</span>' in html


def test_no_banner_without_a_disabled_destination(tenant_a, client_for):
    other_destination(tenant_a.tenant)
    html = main_html(client_for(tenant_a.admin).get(reverse("integrations:index")))
    assert "was disabled after failing" not in html


def test_egress_ips_are_shown_with_a_copy_button(tenant_a, client_for, settings):
    settings.WEBHOOK_EGRESS_IPS = ["203.0.113.10"]
    html = main_html(client_for(tenant_a.operator).get(reverse("integrations:index")))
    egress = section(html, "egress")
    assert '<code id="egress-ip-list">203.0.113.10</code>' in egress
    assert 'data-copy="egress-ip-list"' in egress


def test_missing_egress_ips_are_explained(tenant_a, client_for, settings):
    settings.WEBHOOK_EGRESS_IPS = []
    html = main_html(client_for(tenant_a.admin).get(reverse("integrations:index")))
    assert "Egress IP addresses are not configured for this deployment." in html


def test_the_destination_name_links_only_from_the_destinations_list(tenant_a, client_for):
    destination = other_destination(tenant_a.tenant, name="Tenant SOC webhook")
    add_delivery(destination)
    html = main_html(client_for(tenant_a.admin).get(reverse("integrations:index")))
    exact_links = re.findall(r"<a [^>]*>\s*Tenant SOC webhook\s*</a>", html)
    assert exact_links == [f'<a href="{detail_url(destination)}">Tenant SOC webhook</a>']
    assert exact_links[0] in section(html, "destinations")
    assert "<h3 id=" in health_cards(html)["Tenant SOC webhook"]


def test_health_and_recent_deliveries_refresh_without_the_create_card(tenant_a, client_for):
    destination = other_destination(tenant_a.tenant)
    add_delivery(destination)
    client = client_for(tenant_a.admin)
    html = main_html(client.get(reverse("integrations:index")))
    live = re.search(r'<div id="live-health"[^>]*>', html).group(0)
    assert f'hx-get="{reverse("integrations:live")}"' in live
    assert 'hx-trigger="every 5s"' in live and 'hx-swap="outerHTML"' in live
    # The create card is outside the polled element, so typed input survives a refresh.
    assert html.index('id="live-health"') < html.index('id="delivery-health"')
    assert html.index('id="create-destination"') > html.index('id="delivery-health"')

    fragment = client.get(reverse("integrations:live"))
    body = fragment.content.decode()
    assert fragment.status_code == 200
    assert body.lstrip().startswith('<div id="live-health"')
    assert '<section class="card" id="delivery-health"' in body
    assert '<section class="card" id="recent-deliveries"' in body and 'hx-swap-oob="true"' in body
    assert "create-destination" not in body and "<form" not in body and "<html" not in body


def test_recent_deliveries_are_the_tenants_latest(tenant_a, tenant_b, client_for):
    first = other_destination(tenant_a.tenant, name="First hook")
    second = other_destination(tenant_a.tenant, name="Second hook")
    outsider = other_destination(tenant_b.tenant, name="Outsider hook")
    now = timezone.now()
    for minutes in range(12):
        add_delivery(first if minutes % 2 else second, created_at=now - timedelta(minutes=minutes))
    add_delivery(outsider, created_at=now)
    add_delivery(
        second,
        DeliveryState.FAILED,
        created_at=now + timedelta(seconds=1),
        last_status_code=401,
        event_count=7,
    )
    html = main_html(client_for(tenant_a.operator).get(reverse("integrations:index")))
    recent = section(html, "recent-deliveries")
    assert recent.count("<tr>") == 11  # header + 10 rows
    assert "Outsider hook" not in html
    newest = re.search(r"<tbody>\s*<tr>(.*?)</tr>", recent, re.S).group(1)
    assert "<td>Second hook</td>" in newest and "<td>7</td>" in newest
    assert "HTTP 401" in newest and '<span class="badge state-failed">Failed</span>' in newest


def test_integrations_queries_do_not_grow_with_destinations(
    tenant_a, client_for, django_assert_max_num_queries
):
    client = client_for(tenant_a.admin)

    def add(number: int) -> None:
        destination = other_destination(tenant_a.tenant, name=f"Hook {number:02}")
        delivery = add_delivery(destination)
        add_attempt(delivery)
        add_attempt(add_delivery(destination, DeliveryState.FAILED), ok=False)

    add(0)
    client.get(reverse("integrations:index"))  # warm the session
    with CaptureQueriesContext(connection) as one:
        client.get(reverse("integrations:index"))
    with CaptureQueriesContext(connection) as one_live:
        client.get(reverse("integrations:live"))
    for number in range(1, 10):
        add(number)
    with django_assert_max_num_queries(len(one)):
        response = client.get(reverse("integrations:index"))
    assert len(health_cards(response.content.decode())) == 10
    with django_assert_max_num_queries(len(one_live)):
        client.get(reverse("integrations:live"))
