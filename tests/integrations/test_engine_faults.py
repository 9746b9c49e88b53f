"""The engine against receivers that misbehave: each fault on a real loopback receiver."""

import time
import uuid
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from integrations.catalogue import EventType
from integrations.delivery import client, drain, queue, record
from integrations.events import event_publish
from integrations.models import (
    Attempt,
    Delivery,
    DeliveryState,
    Destination,
    ErrorKind,
)
from integrations.services import (
    delivery_resend,
    destination_delete,
)
from tests.factories import TenantFactory
from tests.integrations.engine_helpers import advance_retries, allow_receiver, make_destination

pytestmark = pytest.mark.django_db


def publish(tenant, n=1):
    return [
        event_publish(
            tenant=tenant, event_type=EventType.DETECTION_ALERT, severity="high", payload={"n": i}
        ).event
        for i in range(n)
    ]


def has_succeeded(destination) -> None:
    Destination.objects.filter(pk=destination.pk).update(last_success_at=timezone.now())


@pytest.fixture
def setup(tenant_a, receiver, settings):
    allow_receiver(settings, receiver)
    settings.WEBHOOK_RETRY_JITTER = 0
    settings.WEBHOOK_RETRY_SCHEDULE = [30, 120, 600]
    destination = make_destination(
        tenant_a.tenant, receiver, event_types=[EventType.DETECTION_ALERT], timeout_seconds=2
    )
    return tenant_a.tenant, destination, receiver


def test_a_dripping_receiver_is_bounded_by_the_attempts_deadline(setup):
    tenant, destination, receiver = setup
    receiver.script(["drip"])
    publish(tenant)
    drain.drain(destination.pk)
    attempt = Attempt.objects.get()
    assert attempt.error_kind == ErrorKind.TIMEOUT
    assert attempt.duration_ms <= (destination.timeout_seconds + 1) * 1000
    assert Delivery.objects.get().state == DeliveryState.RETRYING


def test_retry_after_zero_does_not_burn_attempts(setup):
    tenant, destination, receiver = setup
    receiver.script([(429, {"Retry-After": "0"})] * 5)
    publish(tenant)
    assert drain.drain(destination.pk) == 1  # one attempt, then not due for a while
    delivery = Delivery.objects.get()
    assert delivery.state == DeliveryState.RETRYING
    wait = (delivery.next_attempt_at - delivery.attempts.get().started_at).total_seconds()
    assert wait >= 29
    assert drain.drain(destination.pk) == 0
    assert len(receiver.received) == 1


def test_a_resend_restarts_the_retry_schedule(setup, settings):
    tenant, destination, receiver = setup
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    has_succeeded(destination)
    receiver.default_status = 500
    publish(tenant)
    for _ in range(3):
        drain.drain(destination.pk)
        advance_retries(destination)
    delivery = Delivery.objects.get()
    assert delivery.state == DeliveryState.FAILED
    delivery_resend(delivery=delivery, actor=None)
    drain.drain(destination.pk)
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.RETRYING
    last = delivery.attempts.order_by("number").last()
    assert last.number == 4
    # The first step of the schedule (30 s), not the fourth attempt's (600 s).
    assert 29 <= (delivery.next_attempt_at - last.started_at).total_seconds() <= 32


@pytest.mark.parametrize("status", [200, 500])
def test_an_unknown_response_charset_is_one_recorded_attempt(setup, status):
    tenant, destination, receiver = setup
    receiver.script([(status, {"Content-Type": "text/plain; charset=bogus"}, b"caf\xc3\xa9 ok")])
    publish(tenant)
    assert drain.drain(destination.pk) == 1
    attempt = Attempt.objects.get()
    assert attempt.status_code == status
    assert attempt.response_excerpt == "café ok"
    expected = DeliveryState.DELIVERED if status == 200 else DeliveryState.RETRYING
    assert Delivery.objects.get().state == expected


def test_an_unforeseen_exception_is_one_failed_attempt_that_counts(setup, settings, monkeypatch):
    tenant, destination, receiver = setup
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    has_succeeded(destination)

    async def explode(self, *args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(client.AsyncSender, "_attempt", explode)
    publish(tenant)
    drain.drain(destination.pk)
    attempt = Attempt.objects.get()
    assert (attempt.ok, attempt.error_kind) == (False, ErrorKind.OTHER)
    assert "RuntimeError" in attempt.error_detail
    advance_retries(destination)
    drain.drain(destination.pk)
    assert Delivery.objects.get().state == DeliveryState.FAILED  # it counted toward the limit
    assert Attempt.objects.count() == 2


def test_three_permanent_failures_hold_the_stream_and_a_2xx_resumes_it(setup, settings):
    tenant, destination, receiver = setup
    settings.WEBHOOK_BATCH_SIZE = 1
    has_succeeded(destination)
    receiver.script([401, 401, 401, 401])
    events = publish(tenant, 5)
    drain.drain(destination.pk)
    assert Delivery.objects.filter(state=DeliveryState.FAILED).count() == 2
    held = Delivery.objects.get(state=DeliveryState.RETRYING)
    destination.refresh_from_db()
    assert destination.held_since is not None
    assert "401" in destination.hold_reason
    assert destination.health_label == "Authentication / Permission denied"
    assert drain.drain(destination.pk) == 0  # held: the backlog is not flushed
    advance_retries(destination)
    drain.drain(destination.pk)  # a probe: still 401, still held, nothing failed
    assert Delivery.objects.filter(state=DeliveryState.FAILED).count() == 2
    advance_retries(destination)
    drain.drain(destination.pk)  # the receiver accepts again: the stream resumes by itself
    destination.refresh_from_db()
    assert destination.held_since is None and destination.permanent_failures_in_row == 0
    held.refresh_from_db()
    assert held.state == DeliveryState.DELIVERED
    assert receiver.events_received()[-3:] == [str(e.event_id) for e in events[2:]]


def test_a_new_destination_holds_its_stream_until_the_first_2xx(setup):
    tenant, destination, receiver = setup
    receiver.script([401, 403])
    publish(tenant, 2)
    drain.drain(destination.pk)
    advance_retries(destination)
    drain.drain(destination.pk)
    assert not Delivery.objects.filter(state=DeliveryState.FAILED).exists()
    advance_retries(destination)
    drain.drain(destination.pk)
    assert Delivery.objects.get().state == DeliveryState.DELIVERED
    assert len(receiver.events_received()) == 2


def test_413_splits_the_batch_in_halves_and_keeps_the_order(setup, settings):
    tenant, destination, receiver = setup
    settings.WEBHOOK_BATCH_SIZE = 8
    has_succeeded(destination)
    receiver.script([413, 413])
    events = publish(tenant, 8)
    drain.drain(destination.pk)
    sizes = [len(r.event_ids) for r in receiver.received]
    assert sizes == [8, 4, 2, 2, 4]
    delivered = [r for r in receiver.received if r.status == 200]
    assert [e for r in delivered for e in r.event_ids] == [str(e.event_id) for e in events]
    assert not Delivery.objects.filter(state=DeliveryState.FAILED).exists()


def test_413_for_a_single_event_fails_it_alone(setup, settings):
    tenant, destination, receiver = setup
    settings.WEBHOOK_BATCH_SIZE = 2
    has_succeeded(destination)
    receiver.script([413, 413])
    events = publish(tenant, 2)
    drain.drain(destination.pk)
    failed = Delivery.objects.get(state=DeliveryState.FAILED)
    assert failed.event_count == 1 and "413" in failed.failure_reason
    assert receiver.received[-1].event_ids == [str(events[1].event_id)]
    assert receiver.received[-1].status == 200


def test_deleting_a_destination_mid_send_is_safe(setup):
    tenant, destination, receiver = setup
    publish(tenant)
    claim = drain.claim_batch(destination.pk)
    destination_delete(destination=Destination.objects.get(pk=destination.pk), actor=None)
    outcome = drain.send_claim(claim)  # the send was already under way
    [recorded] = record.record_many([(claim, outcome)])
    assert recorded.action == "gone"
    assert not Destination.objects.filter(pk=destination.pk).exists()
    assert not Attempt.objects.exists()


def test_a_dead_owners_lease_is_free_at_once_and_a_live_one_is_not(setup):
    tenant, destination, receiver = setup
    publish(tenant)
    other = psycopg.connect(**_params(), autocommit=True)
    other.execute("SELECT pg_advisory_lock(%s, %s)", [queue.OWNER_LOCK_NS, 4242])
    claims, _ = queue.claim_many(owner=4242, limit=5, only=[destination.pk])
    assert len(claims) == 1
    assert drain.claim_batch(destination.pk) is None  # the owner lives: its lease holds
    other.close()  # the owner's process died: its session and lock are gone
    _wait_until_lock_released(queue.OWNER_LOCK_NS, 4242)
    claim = drain.claim_batch(destination.pk)
    assert claim is not None
    # The dead owner's attempt is recorded as lost; the new one is attempt 2.
    lost = Attempt.objects.get()
    assert lost.number == 1 and "stopped during this attempt" in lost.error_detail
    assert claim.delivery.attempt_count == 2
    record.record_outcome(claim, drain.send_claim(claim))
    assert Delivery.objects.get().state == DeliveryState.DELIVERED
    # A late outcome of the first claim is discarded (fencing).
    [late] = record.record_many([(claims[0], drain.send_claim(claims[0]))])
    assert late.action == "fenced"
    assert Delivery.objects.get().state == DeliveryState.DELIVERED


def test_a_lease_from_before_a_database_restart_holds_until_its_owner_returns(setup, settings):
    """A restart drops every advisory lock, but not the sends in flight: a lease granted before
    the server started is not taken over for a missing lock (only when it expires, or once its
    owner has taken its key back on reconnecting)."""
    tenant, destination, receiver = setup
    publish(tenant)
    claims, _ = queue.claim_many(owner=4343, limit=5, only=[destination.pk])  # no lock: "dead"
    assert len(claims) == 1
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXTRACT(EPOCH FROM statement_timestamp() - pg_postmaster_start_time())"
        )
        uptime = float(cursor.fetchone()[0])
    longest = 32767 - 1 - settings.WEBHOOK_LEASE_MARGIN  # the largest timeout the column holds
    if uptime > longest - 60:
        pytest.skip("the server has run for longer than a lease can span")
    # The same lease, as if granted before the server started (a long timeout, still running).
    Destination.objects.filter(pk=destination.pk).update(timeout_seconds=longest)
    assert drain.claim_batch(destination.pk) is None  # the lock is missing, the lease holds
    other = psycopg.connect(**_params(), autocommit=True)
    try:  # the owner reconnects and takes its key back: still its lease
        other.execute("SELECT pg_advisory_lock(%s, %s)", [queue.OWNER_LOCK_NS, 4343])
        assert drain.claim_batch(destination.pk) is None
    finally:
        other.close()
    # A lease granted since the server started, whose owner is gone, is free at once.
    Destination.objects.filter(pk=destination.pk).update(timeout_seconds=2)
    _wait_until_lock_released(queue.OWNER_LOCK_NS, 4343)
    assert drain.claim_batch(destination.pk) is not None


def test_a_reconnecting_loop_takes_its_owner_key_back():
    key = queue.owner_key()
    with connection.cursor() as cursor:  # the session (and its lock) is gone
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [queue.OWNER_LOCK_NS, key])
    queue.forget_owner()
    assert queue.owner_key(prefer=key) == key
    assert queue.owner_key() == key  # held by this connection from now on


def _wait_until_lock_released(namespace: int, key: int) -> None:
    """The server ends a closed session's backend (and frees its locks) a moment after the
    client hangs up: wait for that (bounded), as a worker's next claim would."""
    for _ in range(200):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND classid = %s AND objid = %s AND objsubid = 2",
                [namespace, key],
            )
            if cursor.fetchone()[0] == 0:
                return
        time.sleep(0.025)
    raise AssertionError("the closed session's advisory lock was never released")


def _params() -> dict:
    params = dict(connection.get_connection_params())
    for name in ("cursor_factory", "context", "prepare_threshold", "server_side_binding"):
        params.pop(name, None)
    return params


def test_claims_are_fair_across_tenants_and_capped_per_tenant(setup, settings, make_receiver):
    tenant, destination, receiver = setup
    settings.WEBHOOK_TENANT_MAX_IN_FLIGHT = 3
    busy = [destination] + [
        make_destination(tenant, receiver, event_types=[EventType.DETECTION_ALERT])
        for _ in range(5)
    ]
    other_tenant = TenantFactory()
    quiet = make_destination(other_tenant, receiver, event_types=[EventType.DETECTION_ALERT])
    publish(tenant, 3)
    publish(other_tenant, 1)
    Destination.objects.filter(tenant=tenant).update(
        next_due_at=timezone.now() - timedelta(minutes=5)
    )  # the busy tenant's work has waited longest
    first, _ = queue.claim_many(limit=2)
    assert quiet.pk in {c.destination.pk for c in first}  # its first turn comes first
    rest, _ = queue.claim_many(limit=100)
    claimed = [c.destination for c in first + rest]
    assert sum(1 for d in claimed if d.tenant_id == tenant.pk) == 3  # capped
    assert len(busy) == 6


def test_a_rate_limited_destination_is_not_due_yet_and_no_one_sleeps(setup, settings):
    tenant, destination, receiver = setup
    settings.WEBHOOK_BATCH_SIZE = 1
    Destination.objects.filter(pk=destination.pk).update(rate_limit_per_second=0.2)
    publish(tenant, 2)
    started = timezone.now()
    assert drain.drain(destination.pk) == 1
    assert (timezone.now() - started).total_seconds() < 2
    destination.refresh_from_db()
    assert (destination.next_due_at - timezone.now()).total_seconds() > 3


def test_the_ssrf_guard_holds_in_the_new_client(tenant_a, settings, monkeypatch):
    # A public name that resolves to a private address at send time: refused, no socket.
    settings.WEBHOOK_ALLOW_HTTP = True
    monkeypatch.setattr(
        "integrations.url_safety.resolve_host", lambda host, port: ["93.184.216.34"]
    )
    destination = make_destination(
        tenant_a.tenant,
        type("R", (), {"url": "http://hooks.example.com/x", "port": 80, "secrets": []})(),
        event_types=[EventType.DETECTION_ALERT],
    )
    monkeypatch.setattr("integrations.url_safety.resolve_host", lambda host, port: ["10.0.0.7"])
    opened = []
    monkeypatch.setattr(
        "socket.socket.connect", lambda self, address: opened.append(address) or 1 / 0
    )
    publish(tenant_a.tenant)
    drain.drain(destination.pk)
    attempt = Attempt.objects.get()
    assert attempt.error_kind == ErrorKind.SSRF
    assert opened == []
    assert uuid.UUID(str(attempt.delivery_uuid))


def test_the_page_says_the_stream_waits_for_the_first_2xx(setup, client_for, tenant_a):
    tenant, destination, receiver = setup
    receiver.script([401])
    publish(tenant)
    drain.drain(destination.pk)
    html = client_for(tenant_a.operator).get(f"/integrations/destinations/{destination.pk}/")
    text = html.content.decode()
    assert "Waiting for your receiver to accept the first delivery." in text
    assert "HTTP 401" in text and "send a test event" in text


def test_the_page_shows_how_many_events_wait_while_paused(setup, client_for, tenant_a):
    from integrations.services import destination_set_active

    tenant, destination, receiver = setup
    destination_set_active(destination=destination, actor=None, active=False)
    publish(tenant, 3)
    html = client_for(tenant_a.admin).get(f"/integrations/destinations/{destination.pk}/")
    assert "Paused: 3 events wait and go out in order" in html.content.decode()


def test_publishing_to_a_destination_deleted_meanwhile_queues_nothing_for_it(setup, monkeypatch):
    from integrations import events
    from integrations.models import DeliveryEvent

    tenant, destination, receiver = setup
    gone = str(uuid.uuid4())  # matched a moment ago, deleted before this transaction locked it
    matches = events._matches
    monkeypatch.setattr(
        events,
        "_matches",
        lambda tenant, kinds: {kind: [gone, *ids] for kind, ids in matches(tenant, kinds).items()},
    )
    [event] = publish(tenant)
    assert not DeliveryEvent.objects.filter(destination_id=gone).exists()
    assert list(
        DeliveryEvent.objects.filter(destination=destination).values_list("event", flat=True)
    ) == [event.pk]
