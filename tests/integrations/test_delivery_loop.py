"""The asyncio delivery loop in this process, against real receivers and committed data."""

import itertools
import json
import threading
import time

import pytest
from django.db import connection, transaction
from django.utils import timezone

from integrations.catalogue import EventType
from integrations.delivery import drain, loop
from integrations.events import event_publish
from integrations.models import Attempt, Delivery, DeliveryState, Destination
from tests.factories import TenantFactory
from tests.integrations.engine_helpers import make_destination

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def publish(tenant, n=1, **payload):
    return [
        event_publish(
            tenant=tenant, event_type=EventType.DETECTION_ALERT, payload={"i": i, **payload}
        ).event
        for i in range(n)
    ]


@pytest.fixture
def loop_settings(settings):
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_RETRY_JITTER = 0
    settings.WEBHOOK_DELIVERY_LOOPS = 2
    return settings


def allow(settings, *receivers):
    settings.WEBHOOK_ALLOWED_PRIVATE_TARGETS = [f"127.0.0.1:{r.port}" for r in receivers]


class LoopThread(threading.Thread):
    """run_loop() on a thread of its own (it has its own event loop and connection)."""

    def __init__(self, **kwargs):
        super().__init__(daemon=True)
        self.kwargs = kwargs
        self.result = None

    def run(self):
        try:
            self.result = loop.run_loop(**self.kwargs)
        finally:
            connection.close()


def test_many_slow_receivers_are_sent_to_at_once(loop_settings, tenant_a, make_receiver):
    receiver = make_receiver(slow_seconds=1.0)
    allow(loop_settings, receiver)
    destinations = [
        make_destination(tenant_a.tenant, receiver, event_types=[EventType.DETECTION_ALERT])
        for _ in range(20)
    ]
    publish(tenant_a.tenant)
    started = time.monotonic()
    result = loop.run_loop(capacity=50, slice_seconds=1.5)
    elapsed = time.monotonic() - started
    assert result.attempts == 20
    assert Delivery.objects.filter(state=DeliveryState.DELIVERED).count() == 20
    starts = sorted(a.started_at for a in Attempt.objects.all())
    assert (starts[-1] - starts[0]).total_seconds() < 0.9  # all in flight together
    assert elapsed < 10  # one after the other would take 20 s
    assert len(destinations) == 20


def test_a_publish_wakes_an_idle_loop_at_once(loop_settings, tenant_a, receiver):
    allow(loop_settings, receiver)
    loop_settings.WEBHOOK_POLL_INTERVAL = 60  # only a notification can wake it in time
    make_destination(tenant_a.tenant, receiver, event_types=[EventType.DETECTION_ALERT])
    thread = LoopThread(slice_seconds=8)
    thread.start()
    time.sleep(1.5)  # idle, listening
    publish(tenant_a.tenant)
    published = time.monotonic()
    assert receiver.wait_for(lambda: len(receiver) >= 1, timeout=4)
    assert time.monotonic() - published < 4
    thread.join(timeout=20)
    assert not thread.is_alive()


def test_stopping_ends_the_loop_quickly_and_records_the_interrupted_send(
    loop_settings, tenant_a, receiver
):
    allow(loop_settings, receiver)
    receiver.script(["hang"])
    destination = make_destination(
        tenant_a.tenant,
        receiver,
        event_types=[EventType.DETECTION_ALERT],
        timeout_seconds=60,
    )
    publish(tenant_a.tenant)
    thread = LoopThread(slice_seconds=60)
    thread.start()
    try:
        assert receiver.wait_for(lambda: len(receiver) >= 1, timeout=10)
        stop_requested = time.monotonic()
        loop.STOP.set()
        thread.join(timeout=15)
        assert not thread.is_alive()
        assert time.monotonic() - stop_requested < loop.SHUTDOWN_GRACE_SECONDS + 3
    finally:
        loop.STOP.clear()
    attempt = Attempt.objects.get()
    assert attempt.error_detail == loop.INTERRUPTED_DETAIL
    destination.refresh_from_db()
    assert destination.lease_owner == ""  # released: the next loop resends at once
    assert Delivery.objects.get().state == DeliveryState.RETRYING


def test_concurrent_publishers_are_delivered_in_the_order_they_were_accepted(
    loop_settings, tenant_a, receiver
):
    """A publisher whose transaction commits late cannot be overtaken by a later one."""
    allow(loop_settings, receiver)
    loop_settings.WEBHOOK_BATCH_SIZE = 5
    make_destination(tenant_a.tenant, receiver, event_types=[EventType.DETECTION_ALERT])
    counter = itertools.count()
    lock = threading.Lock()
    errors = []

    def publisher(slow: bool):
        try:
            for _ in range(8):
                with transaction.atomic():
                    with lock:  # outbox ids are taken in this order
                        n = next(counter)
                        event_publish(
                            tenant=tenant_a.tenant,
                            event_type=EventType.DETECTION_ALERT,
                            payload={"n": n},
                        )
                    if slow:
                        time.sleep(0.3)  # commits late: later events are inserted meanwhile
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connection.close()

    delivering = LoopThread(slice_seconds=12)
    delivering.start()
    publishers = [threading.Thread(target=publisher, args=(i == 0,)) for i in range(3)]
    for thread in publishers:
        thread.start()
    for thread in publishers:
        thread.join(timeout=60)
    assert errors == []
    assert receiver.wait_for(lambda: len(receiver.events_received()) >= 24, timeout=20)
    delivering.join(timeout=30)
    received = [
        event["event"]["n"] for request in receiver.received for event in request.json["events"]
    ]
    assert sorted(received) == list(range(24))
    assert received == sorted(received)  # never a later-accepted event before an earlier one


def test_two_tenants_stay_fair_when_one_has_many_slow_destinations(
    loop_settings, tenant_a, make_receiver
):
    slow = make_receiver(slow_seconds=3.0)
    fast = make_receiver()
    allow(loop_settings, slow, fast)
    loop_settings.WEBHOOK_TENANT_MAX_IN_FLIGHT = 10
    for _ in range(30):
        make_destination(tenant_a.tenant, slow, event_types=[EventType.DETECTION_ALERT])
    publish(tenant_a.tenant, 2)
    other = TenantFactory()
    make_destination(other, fast, event_types=[EventType.DETECTION_ALERT])
    thread = LoopThread(capacity=20, slice_seconds=5)
    thread.start()
    time.sleep(1.0)  # the busy tenant's 10 allowed sends are in flight, 3 s each
    publish(other)
    published = time.monotonic()
    assert fast.wait_for(lambda: len(fast) >= 1, timeout=3)
    waited = time.monotonic() - published
    thread.join(timeout=30)
    assert waited < 2.5  # not behind the busy tenant's 3 s sends
    assert Destination.objects.filter(tenant=tenant_a.tenant).count() == 30


def test_an_earlier_publisher_still_running_holds_back_later_ones(
    loop_settings, tenant_a, receiver
):
    """A publisher that has queued for a destination but not committed yet goes first."""
    import psycopg

    allow(loop_settings, receiver)
    destination = make_destination(
        tenant_a.tenant, receiver, event_types=[EventType.DETECTION_ALERT]
    )
    first = publish(tenant_a.tenant, n=1)[0]
    drain.drain(destination.pk)  # delivered; the stream is idle
    params = dict(connection.get_connection_params())
    for name in ("cursor_factory", "context", "prepare_threshold", "server_side_binding"):
        params.pop(name, None)
    early = psycopg.connect(**params)  # queues as integrations.outbox does, commits late
    later_done = threading.Event()
    try:
        event_pk = early.execute(
            """
            INSERT INTO integrations_event
                (tenant_id, event_id, event_type, severity, event_time, payload, created_at)
            VALUES (%s, gen_random_uuid(), 'detection.alert', 'high', now(), '{"n": 0}', now())
            RETURNING id
            """,
            [tenant_a.tenant.pk],
        ).fetchone()[0]
        early.execute(
            "SELECT id FROM integrations_destination WHERE id = %s FOR UPDATE", [destination.pk]
        )
        early.execute(
            "INSERT INTO integrations_deliveryevent (destination_id, event_id) VALUES (%s, %s)",
            [destination.pk, event_pk],
        )

        def later_publisher():
            try:
                publish(tenant_a.tenant, n=1, n_=1)
            finally:
                later_done.set()
                connection.close()

        threading.Thread(target=later_publisher, daemon=True).start()
        assert not later_done.wait(1.0)  # it waits for the earlier publisher's commit
        assert drain.claim_batch(destination.pk) is None  # and the destination is not claimed
        early.commit()
    finally:
        early.close()
    assert later_done.wait(10)
    Destination.objects.filter(pk=destination.pk).update(next_due_at=timezone.now())
    claim = drain.claim_batch(destination.pk)
    sent = json.loads(claim.request.body)["events"]
    assert [e["event"] for e in sent] == [{"n": 0}, {"i": 0, "n_": 1}]
    assert str(first.event_id) in receiver.events_received()


def test_streams_that_go_on_need_no_claim(loop_settings, tenant_a, receiver, monkeypatch):
    """While every stream in flight goes straight on (nothing else due, nothing published),
    the loop runs no claim between batches: each costs one record, not a record and a claim."""
    allow(loop_settings, receiver)
    loop_settings.WEBHOOK_BATCH_SIZE = 1
    for _ in range(2):
        make_destination(tenant_a.tenant, receiver, event_types=[EventType.DETECTION_ALERT])
    publish(tenant_a.tenant, 15)
    claims = []
    claim_many = loop.queue.claim_many

    def counting(**kwargs):
        result = claim_many(**kwargs)
        claims.append(len(result[0]))
        return result

    monkeypatch.setattr(loop.queue, "claim_many", counting)
    result = loop.run_loop(capacity=10, slice_seconds=2.5)
    assert result.attempts == 30
    assert Delivery.objects.filter(state=DeliveryState.DELIVERED).count() == 30
    assert sum(claims) == 2  # each stream was claimed once, then went on by itself
    assert len(claims) <= 6  # the first claim, and the poll's safety net


def test_a_loop_takes_its_fair_share_of_the_streams(loop_settings, tenant_a, receiver):
    """With three live loops and seven streams at work, a loop keeps at most three going."""
    from integrations.models import DeliveryWorker

    allow(loop_settings, receiver)
    now = timezone.now()
    for key in (11, 12):  # two other live loops
        DeliveryWorker.objects.create(
            key=key, hostname="h", pid=1, slot=key, started_at=now, heartbeat_at=now
        )
    DeliveryWorker.objects.create(  # a stopped one does not count
        key=13, hostname="h", pid=1, slot=3, started_at=now, heartbeat_at=now, stopped_at=now
    )
    for _ in range(7):
        make_destination(tenant_a.tenant, receiver, event_types=[EventType.DETECTION_ALERT])
    publish(tenant_a.tenant)
    worker = loop.DeliveryLoop(capacity=200, slice_seconds=1)
    worker.key, worker.slot = 99, 1
    assert worker._keep() is None  # no share known yet
    worker._heartbeat({})
    assert worker.share == 3  # ceil(7 streams due / 3 live loops)
    assert worker._keep() == 3  # streams it keeps going by itself
    assert worker._room() == 200  # new work is claimed whatever the share
    connection.close()


def test_a_finished_send_waits_briefly_for_the_others_in_flight_to_share_its_record():
    """RECORD_LINGER: sends that finish together are recorded together; the wait ends as soon
    as nothing recent is left in flight, and never lasts longer than the linger. A send that
    has been in flight longer than LINGER_RECENT (a slow receiver) is not waited for at all."""
    import asyncio

    async def scenario() -> tuple[int, int, float, int, bool]:
        worker = loop.DeliveryLoop(capacity=10, slice_seconds=1)
        worker.finished.append(("claim", "outcome"))

        async def send(key: str, seconds: float) -> None:
            await asyncio.sleep(seconds)
            del worker.in_flight[key]
            worker.finished.append((key, "outcome"))
            worker.kick.set()

        def start(key: str, seconds: float, age: float = 0.0) -> None:
            worker.in_flight[key] = asyncio.create_task(send(key, seconds))
            worker.sent_at[key] = time.monotonic() - age

        # One send finishing within the linger: the wait ends when it is done.
        start("soon", loop.RECORD_LINGER / 4)
        await worker._linger()
        joined, left = len(worker.finished), len(worker.in_flight)
        # One that takes far longer: the wait ends at the linger, without it.
        start("late", 1.0)
        started = time.monotonic()
        await worker._linger()
        bounded = time.monotonic() - started
        waiting = len(worker.finished)
        worker.in_flight.pop("late").cancel()
        # One at a slow receiver, in flight for a while already: no wait (the coroutine
        # returns on its first step, without suspending).
        start("slow", 10.0, age=loop.LINGER_RECENT * 2)
        step = worker._linger()
        try:
            step.send(None)
            returned_at_once = False
        except StopIteration:
            returned_at_once = True
        step.close()
        worker.in_flight.pop("slow").cancel()
        worker.db_pool.shutdown()
        return joined, left, bounded, waiting, returned_at_once

    joined, left, bounded, waiting, returned_at_once = asyncio.run(scenario())
    assert (joined, left) == (2, 0)  # the first outcome and "soon"'s, recorded together
    assert loop.RECORD_LINGER * 0.9 <= bounded < loop.RECORD_LINGER + 0.05
    assert waiting == 2  # "late" was not waited for
    assert returned_at_once  # a send already old holds no record back
