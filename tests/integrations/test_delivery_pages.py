"""Delivery pages: health on the Integrations page, a destination's deliveries, a delivery's
events and attempts, the admin actions (send test, resend, resend all failed), the signature
check and the receiver guide.

Real PostgreSQL and, where something is sent, a real receiver on 127.0.0.1. Every action view is
tested for STYLE §10's cases: it works for an admin; 403 for an operator and an auditor; another
tenant's object is 404; a GET is 405.
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEntry
from integrations import selectors, views
from integrations.catalogue import EXAMPLE_PAYLOADS, EventType
from integrations.delivery import drain
from integrations.delivery.signing import sign
from integrations.events import event_publish
from integrations.models import (
    Attempt,
    Delivery,
    DeliveryEvent,
    DeliveryState,
    Destination,
    Health,
    ResendJob,
    ResendJobState,
)
from integrations.services import (
    destination_create,
    destination_rotate_secret,
    destination_set_active,
    destination_test_queue,
    resend_job_run,
    send_queued_test,
)
from integrations.verification import receiver_snippets
from tests.integrations.engine_helpers import SECRET, allow_receiver, make_destination

pytestmark = pytest.mark.django_db

HEADER_VALUE = "header-value-Qm42-never-shown"
ROLES = ["admin", "operator", "auditor"]
READ_ONLY_ROLES = ["operator", "auditor"]
XSS_RESPONSE = "<script>alert(1)</script>"
XSS_PAYLOAD = "<img src=x onerror=alert(1)>"


# Fixtures and helpers ----------------------------------------------------------------------------
@pytest.fixture(autouse=True)
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


def publish(tenant, n: int = 1, **payload) -> list:
    return [
        event_publish(
            tenant=tenant,
            event_type=EventType.DETECTION_ALERT,
            severity="high",
            payload={"n": i, **payload},
        ).event
        for i in range(n)
    ]


def other_destination(tenant, name: str = "Other hook", **data) -> Destination:
    """A destination that is never sent to (no DNS lookup: the service skips the form)."""
    values = {
        "name": name,
        "endpoint_url": "https://hooks.example.com/other",
        "event_types": [EventType.AUDIT_LOG],
        "secret": SECRET,
        **data,
    }
    return destination_create(tenant=tenant, actor=None, data=values)[0]


def add_delivery(destination, state=DeliveryState.DELIVERED, **fields) -> Delivery:
    values = {
        "tenant_id": destination.tenant_id,
        "destination": destination,
        "state": state,
        "event_count": 1,
        "attempt_count": 1,
        "attempt_limit": 10,
        **fields,
    }
    if state in (DeliveryState.DELIVERED, DeliveryState.FAILED):
        values.setdefault("finished_at", timezone.now())
    return Delivery.objects.create(**values)


def add_attempt(delivery, *, ok=True, duration_ms=100, started_at=None, number=1, **fields):
    fields.setdefault("destination_id", None if delivery.is_test else delivery.destination_id)
    return Attempt.objects.create(
        delivery=delivery,
        number=number,
        delivery_uuid="00000000-0000-4000-8000-000000000001",
        started_at=started_at or timezone.now() - timedelta(minutes=5),
        duration_ms=duration_ms,
        status_code=200 if ok else 500,
        error_kind="" if ok else "http",
        ok=ok,
        **fields,
    )


def page(client, name: str, **kwargs):
    return client.get(reverse(f"integrations:{name}", kwargs=kwargs))


def detail_url(destination, **query) -> str:
    url = reverse("integrations:destination_detail", kwargs={"destination_id": destination.pk})
    if query:
        url += "?" + "&".join(f"{key}={value}" for key, value in query.items())
    return url


def action_url(name: str, obj) -> str:
    kwarg = {"destination": "destination_id", "delivery": "delivery_id"}[obj._meta.model_name]
    return reverse(f"integrations:{name}", kwargs={kwarg: obj.pk})


def main_html(response) -> str:
    html = response.content.decode()
    match = re.search(r'<main class="content">(.*)</main>', html, re.S)
    assert match, html[:500]
    return match.group(1)


def section(html: str, section_id: str) -> str:
    match = re.search(rf'<section class="card" id="{section_id}".*?</section>', html, re.S)
    assert match, f"no section #{section_id}"
    return match.group(0)


def health_cards(html: str) -> dict[str, str]:
    """Health card HTML by destination name."""
    cards = re.findall(r'<article class="health-card".*?</article>', html, re.S)
    return {re.search(r">Delivery to (.*?)</h3>", card).group(1): card for card in cards}


def delivery_rows(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr id="delivery-(\d+)">', html)]


# Integrations page: delivery health --------------------------------------------------------------
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


# Destination page: deliveries --------------------------------------------------------------------
def test_deliveries_are_listed_newest_first_with_their_columns(tenant_a, client_for, hook):
    now = timezone.now()
    delivered = add_delivery(hook, created_at=now - timedelta(minutes=3), event_count=4)
    failed = add_delivery(
        hook,
        DeliveryState.FAILED,
        created_at=now - timedelta(minutes=2),
        last_status_code=410,
        failure_reason="HTTP 410",
    )
    retrying = add_delivery(
        hook,
        DeliveryState.RETRYING,
        created_at=now - timedelta(minutes=1),
        attempt_count=3,
        next_attempt_at=now + timedelta(minutes=10),
        last_error_kind="timeout",
        failure_reason="The endpoint did not answer within the timeout.",
    )
    response = client_for(tenant_a.operator).get(detail_url(hook))
    html = section(main_html(response), "deliveries")
    assert delivery_rows(html) == [retrying.pk, failed.pk, delivered.pk]
    rows = dict(zip(delivery_rows(html), re.findall(r"<tr id=.*?</tr>", html, re.S), strict=True))
    assert "<td>4</td>" in rows[delivered.pk] and "<td>1 of 10</td>" in rows[delivered.pk]
    assert '<span class="badge state-delivered">Delivered</span>' in rows[delivered.pk]
    assert "HTTP 410" in rows[failed.pk]
    assert "attempt 3 of 10, next try at <time" in rows[retrying.pk]
    assert "Timeout" in rows[retrying.pk]
    assert reverse("integrations:delivery_detail", kwargs={"delivery_id": failed.pk}) in html


def test_a_retrying_delivery_shows_attempt_k_of_n_and_the_next_try(
    tenant_a, client_for, hook, receiver
):
    publish(tenant_a.tenant)
    receiver.script([503])
    drain.drain(hook.pk)
    delivery = Delivery.objects.get(destination=hook)
    assert delivery.state == DeliveryState.RETRYING
    when = timezone.localtime(delivery.next_attempt_at).strftime("%Y-%m-%d %H:%M:%S")
    html = main_html(client_for(tenant_a.operator).get(detail_url(hook)))
    assert "attempt 1 of 10, next try at <time datetime=" in html
    assert f"{when} UTC</time>" in html
    assert '<span class="badge state-retrying">Retrying</span>' in html


def test_deliveries_filter_by_state(tenant_a, client_for, hook):
    made = {
        state: add_delivery(hook, state)
        for state in ("pending", "delivering", "delivered", "retrying", "failed")
    }
    client = client_for(tenant_a.admin)
    expected = {
        "delivered": [made["delivered"].pk],
        "retrying": [made["retrying"].pk],
        "failed": [made["failed"].pk],
        "pending": [made["delivering"].pk, made["pending"].pk],
    }
    for state, pks in expected.items():
        response = client.get(detail_url(hook, state=state))
        assert response.status_code == 200
        assert delivery_rows(main_html(response)) == pks, state
    assert len(delivery_rows(main_html(client.get(detail_url(hook))))) == 5


def test_state_tabs_keep_the_time_range_and_mark_the_current_state(tenant_a, client_for, hook):
    html = main_html(
        client_for(tenant_a.operator).get(detail_url(hook, state="failed", to="2030-01-01"))
    )
    tabs = re.search(r'<nav class="state-tabs".*?</nav>', html, re.S).group(0)
    labels = re.findall(r">([^<]+)</a>", tabs)
    assert labels == ["All", "Delivered", "Retrying", "Failed", "Pending"]
    base = detail_url(hook)
    assert f'<a href="{base}?to=2030-01-01#deliveries">All</a>' in tabs
    assert (
        f'<a href="{base}?state=failed&amp;to=2030-01-01#deliveries" '
        'class="current" aria-current="true">Failed</a>'
    ) in tabs
    # The time form keeps the chosen state.
    assert '<input type="hidden" name="state" value="failed">' in html


def test_deliveries_filter_by_time_range(tenant_a, client_for, hook):
    now = timezone.now().replace(second=0, microsecond=0)
    old = add_delivery(hook, created_at=now - timedelta(days=3))
    middle = add_delivery(hook, created_at=now - timedelta(days=1))
    new = add_delivery(hook, created_at=now)
    client = client_for(tenant_a.operator)

    def shown(**query) -> list[int]:
        response = client.get(detail_url(hook, **query))
        assert response.status_code == 200
        return delivery_rows(main_html(response))

    two_days_ago = (now - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    assert shown(**{"from": two_days_ago}) == [new.pk, middle.pk]
    assert shown(to=two_days_ago) == [old.pk]
    # An end given to the minute includes that minute; a date alone includes the whole day.
    assert shown(to=now.strftime("%Y-%m-%dT%H:%M")) == [new.pk, middle.pk, old.pk]
    yesterday = (now - timedelta(days=1)).strftime("%Y-%m-%d")
    assert shown(**{"from": yesterday, "to": yesterday}) == [middle.pk]
    assert shown(state="failed", **{"from": two_days_ago}) == []


@pytest.mark.parametrize(
    "query", ["to=9999-12-31", "to=9999-12-31T23:59", "from=0001-01-01T00:00", "after=0"]
)
def test_extreme_but_valid_filters_work(query, tenant_a, client_for, hook):
    delivery = add_delivery(hook)
    response = client_for(tenant_a.operator).get(f"{detail_url(hook)}?{query}")
    assert response.status_code == 200
    assert delivery_rows(main_html(response)) == [delivery.pk]


def test_out_of_range_ids_are_404(tenant_a, client_for):
    client = client_for(tenant_a.admin)
    huge = 10**30
    assert page(client, "delivery_detail", delivery_id=huge).status_code == 404
    assert page(client, "resend_job_status", job_id=huge).status_code == 404
    resend = reverse("integrations:delivery_resend", kwargs={"delivery_id": huge})
    assert client.post(resend).status_code == 404


def test_no_matching_deliveries_says_so(tenant_a, client_for, hook):
    add_delivery(hook)
    html = main_html(client_for(tenant_a.operator).get(detail_url(hook, state="failed")))
    assert "No deliveries match these filters." in html


@pytest.mark.parametrize(
    "query, message",
    [
        ("state=bogus", "State: Choose one of the states shown."),
        ("from=yesterday", "Enter the start as YYYY-MM-DD HH:MM."),
        ("to=2024-13-40", "Enter the end as YYYY-MM-DD HH:MM."),
        ("from=2024-05-02&to=2024-05-01", "The end is before the start."),
        ("before=-1", "Page cursor (before)"),
        ("before=99999999999999999999999", "Page cursor"),
        ("after=abc", "Page cursor (after): Enter a whole number."),
        ("before=5&after=3", "Page with either"),
        ("state=failed%00", "Null characters are not allowed."),
    ],
)
def test_invalid_filters_are_400_with_a_message(query, message, tenant_a, client_for, hook):
    add_delivery(hook)
    client = client_for(tenant_a.operator)
    response = client.get(f"{detail_url(hook)}?{query}")
    assert response.status_code == 400
    html = main_html(response)
    assert "The filters could not be applied" in html and message in html
    assert delivery_rows(html) == []
    fragment = client.get(
        reverse("integrations:destination_deliveries", kwargs={"destination_id": hook.pk})
        + f"?{query}"
    )
    assert fragment.status_code == 400


def test_deliveries_are_keyset_paginated(tenant_a, client_for, hook):
    made = [add_delivery(hook).pk for _ in range(30)]
    newest_first = made[::-1]
    client = client_for(tenant_a.operator)
    with CaptureQueriesContext(connection) as queries:
        first = main_html(client.get(detail_url(hook)))
    sql = " ".join(query["sql"].upper() for query in queries.captured_queries)
    assert "OFFSET" not in sql and "COUNT(" not in sql
    assert delivery_rows(first) == newest_first[:25]
    assert "← Newer" not in first
    older = re.search(r'href="([^"]*before=(\d+)[^"]*)"', first)
    assert older.group(2) == str(newest_first[24])

    second = main_html(client.get(older.group(1).replace("&amp;", "&")))
    assert delivery_rows(second) == newest_first[25:]
    assert "Older →" not in second
    newer = re.search(r'href="([^"]*after=(\d+)[^"]*)"', second)
    back = main_html(client.get(newer.group(1).replace("&amp;", "&")))
    assert delivery_rows(back) == newest_first[:25]


def test_pagination_keeps_the_filters(tenant_a, client_for, hook):
    for _ in range(27):
        add_delivery(hook, DeliveryState.FAILED)
    add_delivery(hook)
    today = timezone.localdate().isoformat()
    client = client_for(tenant_a.operator)
    html = main_html(client.get(detail_url(hook, state="failed", to=today)))
    assert len(delivery_rows(html)) == 25
    older = re.search(rf'href="([^"]*\?state=failed&amp;to={today}&amp;before=\d+)#', html)
    assert older, "the Older link keeps the filters as typed"
    second = main_html(client.get(older.group(1).replace("&amp;", "&")))
    assert len(delivery_rows(second)) == 2  # a date alone still means the whole day


def test_the_newest_page_refreshes_live(tenant_a, client_for, hook):
    made = [add_delivery(hook).pk for _ in range(30)]
    client = client_for(tenant_a.operator)
    fragment_url = reverse(
        "integrations:destination_deliveries", kwargs={"destination_id": hook.pk}
    )
    html = main_html(client.get(detail_url(hook, state="delivered")))
    live = re.search(r'<div id="delivery-list"[^>]*>', html).group(0)
    assert f'hx-get="{fragment_url}?state=delivered"' in live
    assert 'hx-trigger="every 5s, deliveries-changed from:body"' in live

    older = main_html(client.get(detail_url(hook, before=made[-1])))
    assert "hx-get" not in re.search(r'<div id="delivery-list"[^>]*>', older).group(0)

    fragment = client.get(f"{fragment_url}?state=delivered")
    assert fragment.status_code == 200
    body = fragment.content.decode()
    assert body.lstrip().startswith('<div id="delivery-list"') and "<html" not in body
    assert delivery_rows(body) == made[::-1][:25]


def test_a_new_destination_invites_a_test_event(tenant_a, client_for, hook):
    admin = main_html(client_for(tenant_a.admin).get(detail_url(hook)))
    operator = main_html(client_for(tenant_a.operator).get(detail_url(hook)))
    assert "No events yet: send a test event" in admin
    assert '<button type="submit" class="btn btn-primary">Send test event</button>' in admin
    assert "No events yet: send a test event" in operator
    assert "Send test event</button>" not in operator


def test_deliveries_queries_do_not_grow_with_rows(
    tenant_a, client_for, hook, django_assert_max_num_queries
):
    client = client_for(tenant_a.admin)
    for _ in range(3):
        add_delivery(hook, DeliveryState.FAILED)
    client.get(detail_url(hook))
    with CaptureQueriesContext(connection) as few:
        client.get(detail_url(hook))
    for _ in range(27):
        add_delivery(hook, DeliveryState.FAILED)
    with django_assert_max_num_queries(len(few)):
        response = client.get(detail_url(hook))
    assert len(delivery_rows(main_html(response))) == 25


# Delivery page -----------------------------------------------------------------------------------
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


# Send test event ---------------------------------------------------------------------------------
def queued_test(destination) -> Delivery:
    return Delivery.objects.get(destination=destination, is_test=True)


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


# Resend ------------------------------------------------------------------------------------------
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


# Signature check ---------------------------------------------------------------------------------
@pytest.fixture
def received(tenant_a, hook, receiver):
    """A real delivery's raw body and signature header value, as the receiver got them."""
    publish(tenant_a.tenant, 2, note="café")
    drain.drain(hook.pk)
    [request] = receiver.received
    return request.body.decode(), request.header("X-OneProtect-Signature")


def check(client, destination, body: str, signature: str, **extra):
    return client.post(
        action_url("destination_verify_signature", destination),
        {"body": body, "signature": signature},
        **extra,
    )


def result_of(response) -> str:
    html = response.content.decode()
    match = re.search(r'<div class="result[^"]*" role="status">(.*?)</div>', html, re.S)
    assert match, html[-2000:]
    return " ".join(match.group(1).split())


@pytest.mark.parametrize("role", ROLES)
def test_every_role_can_verify_a_raw_body(role, tenant_a, client_for, hook, received):
    body, signature = received
    response = check(client_for(tenant_a.user(role)), hook, body, signature)
    assert response.status_code == 200
    assert "Verified with the current secret" in result_of(response)
    assert SECRET not in response.content.decode()
    assert "no-store" in response["Cache-Control"]


def test_a_re_serialized_body_is_detected(tenant_a, client_for, hook, received):
    body, signature = received
    pretty = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    result = result_of(check(client_for(tenant_a.operator), hook, pretty, signature))
    assert result.startswith("<p><strong>Does not verify</strong>")
    assert "re-serialized the JSON before verifying" in result and "verify the raw bytes" in result
    assert "With that change undone, the body verifies with the current secret." in result


def test_an_ascii_escaped_body_is_detected_as_re_serialized(tenant_a, client_for, hook, received):
    body, signature = received
    escaped = json.dumps(json.loads(body), separators=(",", ":"))  # café → caf\u00e9
    assert escaped != body
    result = result_of(check(client_for(tenant_a.admin), hook, escaped, signature))
    assert "re-serialized the JSON" in result


def test_a_trailing_newline_is_detected(tenant_a, client_for, hook, received):
    body, signature = received
    result = result_of(check(client_for(tenant_a.admin), hook, body + "\n", signature))
    assert "Does not verify" in result and "A trailing newline was added" in result


def test_a_removed_trailing_newline_is_detected(tenant_a, client_for, hook):
    body = '{"events":[]}\n'
    signature = sign(body.encode(), SECRET)
    result = result_of(check(client_for(tenant_a.admin), hook, body.rstrip("\n"), signature))
    assert "A trailing newline was removed" in result


def test_crlf_from_the_browser_is_compared_as_lf(tenant_a, client_for, hook):
    body = '{"a":1}\n{"b":2}'  # a Splunk HEC body has one event per line
    signature = sign(body.encode(), SECRET)
    submitted = body.replace("\n", "\r\n")  # what a browser posts from a textarea
    result = result_of(check(client_for(tenant_a.admin), hook, submitted, signature))
    assert "Verified with the current secret" in result
    assert "Line breaks were compared as LF" in result


def test_a_body_signed_over_crlf_is_explained(tenant_a, client_for, hook):
    body = '{"a":1}\n{"b":2}'
    signature = sign(body.replace("\n", "\r\n").encode(), SECRET)
    result = result_of(check(client_for(tenant_a.admin), hook, body, signature))
    assert "Line endings were converted (LF ↔ CRLF)" in result


def test_the_previous_secret_verifies_during_the_overlap(tenant_a, client_for, hook, received):
    body, signature = received
    destination_rotate_secret(destination=hook, actor=None, new_secret="n" * 40, overlap_hours=24)
    client = client_for(tenant_a.admin)
    result = result_of(check(client, hook, body, signature))
    assert "Verified with the previous secret (rotation overlap)" in result
    both = f"{sign(body.encode(), 'n' * 40)},{signature}"
    assert "Verified with the current secret" in result_of(check(client, hook, body, both))
    destination_rotate_secret(destination=hook, actor=None, new_secret="m" * 40, overlap_hours=0)
    assert "Does not verify" in result_of(check(client, hook, body, signature))


def test_a_wrong_secret_does_not_verify(tenant_a, client_for, hook, received):
    body, _ = received
    response = check(client_for(tenant_a.admin), hook, body, sign(body.encode(), "not-the-secret"))
    result = result_of(response)
    assert "Does not verify" in result and "uses a different secret" in result
    assert SECRET not in response.content.decode()


def test_a_pasted_header_line_is_accepted(tenant_a, client_for, hook, received):
    body, signature = received
    line = f"X-OneProtect-Signature: {signature.upper().replace('SHA256=', 'sha256=')}"
    assert "Verified with the current secret" in result_of(
        check(client_for(tenant_a.admin), hook, body, line)
    )


@pytest.mark.parametrize(
    "body, signature, message",
    [
        ("{}", "not a signature", "sha256=&lt;64 hex digits&gt;"),
        ("{}", "", "This field is required."),
        ("", "sha256=" + "0" * 64, "This field is required."),
        ("x" * (1024 * 1024 + 1), "sha256=" + "0" * 64, "larger than 1 MiB"),
        ("{}", "sha256=" + "0" * 5000, "Ensure this value has at most 4096 characters"),
    ],
)
def test_unusable_signature_input_is_400(body, signature, message, tenant_a, client_for, hook):
    response = check(client_for(tenant_a.operator), hook, body, signature)
    assert response.status_code == 400
    html = section(main_html(response), "signature-check")
    assert message in html
    assert '<div class="result' not in html


def test_signature_check_over_htmx_returns_the_card(tenant_a, client_for, hook, received):
    body, signature = received
    client = client_for(tenant_a.auditor)
    response = check(client, hook, body, signature, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.lstrip().startswith('<section class="card" id="signature-check"')
    assert "<html" not in html and "Verified with the current secret" in html
    bad = check(client, hook, body, "nope", HTTP_HX_REQUEST="true")
    assert bad.status_code == 400 and "sha256=&lt;64 hex digits&gt;" in bad.content.decode()


def test_another_tenants_destination_cannot_be_checked(tenant_a, tenant_b, client_for):
    destination = other_destination(tenant_b.tenant)
    response = check(client_for(tenant_a.admin), destination, "{}", sign(b"{}", SECRET))
    assert response.status_code == 404


def test_signature_check_requires_post(tenant_a, client_for, hook):
    response = client_for(tenant_a.operator).get(action_url("destination_verify_signature", hook))
    assert response.status_code == 405


# Receiver guide ----------------------------------------------------------------------------------
def test_receiver_guide_lists_the_headers_this_destination_sends(tenant_a, client_for, settings):
    destination = other_destination(
        tenant_a.tenant,
        signature_header="X-Acme-Sig",
        custom_headers={"X-Api-Key": HEADER_VALUE, "X-Env": "prod-value-hidden"},
    )
    response = client_for(tenant_a.operator).get(detail_url(destination))
    guide = section(main_html(response), "receiver-guide")
    for name in ("Content-Type", "X-Acme-Sig", "X-OneProtect-Timestamp", "X-OneProtect-Delivery"):
        assert f"<td><code>{name}</code></td>" in guide
    assert settings.WEBHOOK_USER_AGENT in guide
    assert "<td><code>X-Api-Key</code></td>" in guide and "<td><code>X-Env</code></td>" in guide
    assert "Authorization" not in guide
    assert "SIGNATURE_HEADER = &quot;X-Acme-Sig&quot;" in guide  # in both snippets
    assert guide.count("X-Acme-Sig") >= 4
    assert "timingSafeEqual" in guide and "hmac.compare_digest" in guide
    assert HEADER_VALUE not in response.content.decode()
    assert "prod-value-hidden" not in response.content.decode()


def test_receiver_guide_for_splunk_shows_the_authorization_form(tenant_a, client_for):
    destination = other_destination(tenant_a.tenant, provider="splunk_hec")
    guide = section(
        main_html(client_for(tenant_a.admin).get(detail_url(destination))), "receiver-guide"
    )
    assert (
        "<td><code>Authorization</code></td><td><code>Splunk &lt;HEC token&gt;</code></td>" in guide
    )


def test_the_python_snippet_verifies_a_real_delivery(tenant_a, hook, received, monkeypatch):
    body, signature = received
    monkeypatch.setenv("ONEPROTECT_WEBHOOK_SECRET", SECRET)
    code = receiver_snippets(hook)["python"].split("# Flask")[0]
    namespace: dict = {}
    exec(compile(code, "snippet", "exec"), namespace)  # noqa: S102 - our own snippet
    assert namespace["SIGNATURE_HEADER"] == "X-OneProtect-Signature"
    stamp = str(int(time.time()))
    is_valid = namespace["signature_is_valid"]
    assert is_valid(body.encode(), signature, stamp)
    assert is_valid(body.encode(), f"sha256={'0' * 64}, {signature}", stamp)  # rotation overlap
    assert not is_valid(body.encode() + b"\n", signature, stamp)
    assert not is_valid(body.encode(), "", stamp)
    assert os.environ["ONEPROTECT_WEBHOOK_SECRET"] == SECRET


# Secrets never shown -----------------------------------------------------------------------------
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


# Read-only roles ---------------------------------------------------------------------------------
@pytest.mark.parametrize("role", READ_ONLY_ROLES)
def test_read_only_roles_see_deliveries_without_actions(role, tenant_a, client_for, hook):
    failed = add_delivery(hook, DeliveryState.FAILED)
    client = client_for(tenant_a.user(role))
    html = main_html(client.get(detail_url(hook)))
    assert delivery_rows(html) == [failed.pk]
    for label in ("Send test event</button>", "Resend</button>", "Resend all failed", "Pause"):
        assert label not in html
    post_actions = re.findall(r'<form method="post" action="([^"]+)"', html)
    assert post_actions == [action_url("destination_verify_signature", hook)]
