"""A destination's page: its deliveries (columns, filters, paging, live refresh) and what read-only
roles see."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from integrations.delivery import drain
from integrations.models import (
    Delivery,
    DeliveryState,
)
from tests.integrations.page_helpers import (
    READ_ONLY_ROLES,
    action_url,
    add_delivery,
    delivery_rows,
    detail_url,
    main_html,
    page,
    publish,
    section,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("quiet_queue")]


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
