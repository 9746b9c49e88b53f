"""event_publish_many: all or nothing, idempotent, bulk SQL, one fan-out and one wake-up."""

from __future__ import annotations

import logging
import random
import threading
import uuid

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from devtools.simulator import publish_fake_events
from integrations.catalogue import EventType
from integrations.delivery import drain, outbox
from integrations.events import BatchPublishError, event_publish, event_publish_many
from integrations.models import DeliveryEvent, Destination, Event
from scripts.processes import wait_until
from tests.api import make_destination
from tests.factories import TenantFactory
from tests.integrations.engine_helpers import allow_receiver
from tests.integrations.engine_helpers import make_destination as make_receiving_destination

pytestmark = pytest.mark.django_db

ALERTS = [EventType.DETECTION_ALERT]  # creating a destination publishes audit_log events


def item(n: int = 0, **overrides) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": EventType.DETECTION_ALERT,
        "severity": "high",
        "event_time": "2026-11-23T10:00:00Z",
        "payload": {"n": n},
        **overrides,
    }


@pytest.fixture
def wakes(monkeypatch, settings):
    """Every queue.wake_many call (after commit), instead of queueing tasks."""
    settings.WEBHOOK_ENQUEUE = False
    calls: list[list] = []
    monkeypatch.setattr(outbox, "wake_many", lambda ids: calls.append(sorted(map(str, ids))))
    return calls


@pytest.fixture
def two_destinations(tenant_a):
    return [make_destination(tenant_a.tenant, f"Hook {n}", event_types=ALERTS) for n in (1, 2)]


def queued(destination: Destination) -> list[int]:
    rows = DeliveryEvent.objects.filter(destination=destination, delivery__isnull=True)
    return list(rows.order_by("id").values_list("event_id", flat=True))


def test_a_batch_is_stored_in_order_and_queued_for_each_destination(tenant_a, two_destinations):
    items = [item(n) for n in range(5)]
    answers = event_publish_many(tenant=tenant_a.tenant, events=items)
    assert [str(a.event_id) for a in answers] == [i["event_id"] for i in items]
    assert all(a.created for a in answers)
    stored = list(Event.objects.filter(event_type=EventType.DETECTION_ALERT).order_by("id"))
    assert [str(e.event_id) for e in stored] == [i["event_id"] for i in items]
    assert [e.payload for e in stored] == [{"n": n} for n in range(5)]
    assert [a.pk for a in answers] == [e.pk for e in stored]
    for destination in two_destinations:
        assert queued(destination) == [e.pk for e in stored]


def test_fan_out_follows_each_destinations_filters(tenant_a):
    tenant = tenant_a.tenant
    alerts = make_destination(tenant, "Alerts", event_types=[EventType.DETECTION_ALERT])
    critical = make_destination(tenant, "Critical", min_severity="critical")
    paused = make_destination(tenant, "Paused", event_types=ALERTS)
    Destination.objects.filter(pk=paused.pk).update(active=False)
    answers = event_publish_many(
        tenant=tenant,
        events=[
            item(0, severity="critical"),
            item(1, severity="low"),
            item(2, event_type=EventType.AUDIT_LOG, severity="critical"),
        ],
    )
    pks = [a.pk for a in answers]
    assert queued(alerts) == pks[:2]
    assert queued(critical) == [pks[0], pks[2]]
    assert queued(paused) == pks[:2]  # held while paused, sent on Activate


def test_child_events_reach_parent_destinations_that_include_children(tenant_a):
    parent = tenant_a.tenant
    child = TenantFactory(parent=parent)
    rollup = make_destination(parent, "Roll-up", include_child_tenants=True, event_types=ALERTS)
    own = make_destination(parent, "Own only", event_types=ALERTS)
    [answer] = event_publish_many(tenant=child, events=[item()])
    assert queued(rollup) == [answer.pk]
    assert queued(own) == []


def test_repeated_ids_are_duplicates_within_and_across_batches(tenant_a, two_destinations):
    first, second = item(1), item(2)
    answers = event_publish_many(
        tenant=tenant_a.tenant, events=[first, {**first, "payload": {"other": True}}, second]
    )
    assert [a.created for a in answers] == [True, False, True]
    assert answers[0].pk == answers[1].pk
    again = event_publish_many(tenant=tenant_a.tenant, events=[second, item(3), first])
    assert [a.created for a in again] == [False, True, False]
    assert again[0].pk == answers[2].pk and again[2].pk == answers[0].pk
    assert Event.objects.get(pk=answers[0].pk).payload == {"n": 1}  # the first one is kept
    assert Event.objects.filter(event_type=EventType.DETECTION_ALERT).count() == 3
    for destination in two_destinations:
        assert len(queued(destination)) == 3  # duplicates are not queued again


def test_the_same_event_id_in_another_tenant_is_another_event(tenant_a, tenant_b):
    shared = item()
    [a] = event_publish_many(tenant=tenant_a.tenant, events=[shared])
    [b] = event_publish_many(tenant=tenant_b.tenant, events=[shared])
    assert a.created and b.created and a.pk != b.pk


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"event_id": "not-a-uuid"}, "event_id"),
        ({"event_type": "nope"}, "event_type"),
        ({"event_type": None}, "event_type"),
        ({"severity": "apocalyptic"}, "severity"),
        ({"event_time": "yesterday"}, "event_time"),
        ({"payload": "text"}, "event"),
        ({"payload": {"a": "b\u0000"}}, "event"),
        ({"payload": {"big": "x" * 300_000}}, "event"),
        ({"payload": {"not json": object()}}, "event"),
    ],
)
def test_a_bad_item_stores_nothing(tenant_a, two_destinations, overrides, field):
    items = [item(0), item(1, **overrides), item(2)]
    with pytest.raises(BatchPublishError) as error:
        event_publish_many(tenant=tenant_a.tenant, events=items)
    assert list(error.value.item_errors) == [1]
    assert list(error.value.item_errors[1]) == [field]
    assert not Event.objects.exclude(event_type=EventType.AUDIT_LOG).exists()
    assert not DeliveryEvent.objects.exists()


def test_every_bad_item_is_named(tenant_a):
    items = [item(0, severity="x"), item(1), "not an object", item(3, event_type="y", payload=[])]
    with pytest.raises(BatchPublishError) as error:
        event_publish_many(tenant=tenant_a.tenant, events=items)
    found = error.value.item_errors
    assert {index: sorted(fields) for index, fields in found.items()} == {
        0: ["severity"],
        2: ["event"],
        3: ["event", "event_type"],
    }
    assert found[2]["event"] == "Each item must be a JSON object."
    assert found[3]["event"] == "The event must be a JSON object."
    assert found[3]["event_type"].startswith("Unknown event type")
    assert error.value.item_errors[0]["severity"].startswith("Use one of info, low")
    assert not Event.objects.exclude(event_type=EventType.AUDIT_LOG).exists()


def test_an_empty_batch_does_nothing(tenant_a):
    with CaptureQueriesContext(connection) as queries:
        assert event_publish_many(tenant=tenant_a.tenant, events=[]) == []
    assert len(queries) == 0


@pytest.mark.parametrize("duplicates", [False, True])
def test_statements_do_not_grow_with_the_batch(tenant_a, two_destinations, duplicates):
    """10 or 500 events (each matching 2 destinations): the same handful of statements."""
    counts = []
    for size in (10, 500):
        items = [item(n, severity=("high", "low")[n % 2]) for n in range(size)]
        if duplicates:
            event_publish_many(tenant=tenant_a.tenant, events=items[: size // 2])
        Destination.objects.update(next_due_at=None)  # idle: the most statements
        with CaptureQueriesContext(connection) as queries:
            event_publish_many(tenant=tenant_a.tenant, events=items)
        counts.append(len(queries))
    assert counts[0] == counts[1]
    # destinations, savepoint, lock, events with their outbox rows, existing ids, due, release
    assert counts[1] <= 7
    assert DeliveryEvent.objects.count() == 2 * 510


def test_delivery_is_woken_once_after_commit_for_idle_destinations(
    tenant_a, two_destinations, wakes, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        event_publish_many(tenant=tenant_a.tenant, events=[item(n) for n in range(50)])
    assert len(callbacks) == 1
    assert wakes == [sorted(str(d.pk) for d in two_destinations)]
    for destination in two_destinations:
        destination.refresh_from_db()
        assert destination.next_due_at is not None
    # Already due: no second wake-up (the worker that drains them will see the new rows),
    # and no statement to mark them due.
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        CaptureQueriesContext(connection) as queries,
    ):
        event_publish_many(tenant=tenant_a.tenant, events=[item(n) for n in range(5)])
    assert callbacks == [] and len(wakes) == 1
    assert not [q for q in queries if q["sql"].startswith("UPDATE")]


def test_nothing_new_wakes_nothing(
    tenant_a, two_destinations, wakes, django_capture_on_commit_callbacks
):
    items = [item(n) for n in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        event_publish_many(tenant=tenant_a.tenant, events=items)
    Destination.objects.update(next_due_at=None)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        event_publish_many(tenant=tenant_a.tenant, events=items)
    assert callbacks == [] and len(wakes) == 1


def test_the_simulator_publishes_a_batch_per_tenant(tenant_a, two_destinations):
    child = TenantFactory(parent=tenant_a.tenant)
    rollup = make_destination(
        tenant_a.tenant, "Roll-up", include_child_tenants=True, event_types=ALERTS
    )
    with CaptureQueriesContext(connection) as queries:
        published = publish_fake_events(
            tenant=tenant_a.tenant, count=200, rng=random.Random(7), children=[child]
        )
    assert published == 200
    mine = Event.objects.filter(tenant=tenant_a.tenant).exclude(event_type=EventType.AUDIT_LOG)
    theirs = Event.objects.filter(tenant=child)
    assert mine.count() + theirs.count() == 200
    assert 0 < theirs.count() < 100
    alerts = Event.objects.filter(event_type=EventType.DETECTION_ALERT)
    assert len(queued(rollup)) == alerts.count()  # the child's alerts reach the roll-up too
    assert len(queued(two_destinations[0])) == mine.filter(event_type=ALERTS[0]).count()
    assert len(queries) <= 2 * 8  # two batches (tenant and child), not 200 publishes


def test_single_publish_is_a_batch_of_one(tenant_a, two_destinations):
    first = event_publish(tenant=tenant_a.tenant, event_type=ALERTS[0], payload={"a": 1})
    again = event_publish(
        tenant=tenant_a.tenant,
        event_type=ALERTS[0],
        payload={"a": 2},
        event_id=first.event.event_id,
    )
    assert first.created and not again.created
    assert again.event.pk == first.event.pk and again.event.payload == {"a": 1}
    assert len(queued(two_destinations[0])) == 1


def test_a_published_batch_is_delivered_in_order(tenant_a, receiver, settings):
    allow_receiver(settings, receiver)
    destination = make_receiving_destination(tenant_a.tenant, receiver, event_types=ALERTS)
    items = [item(n) for n in range(7)]
    event_publish_many(tenant=tenant_a.tenant, events=items)
    assert drain.drain(destination.pk) == 1
    assert receiver.events_received() == [i["event_id"] for i in items]


@pytest.mark.django_db(transaction=True)
def test_a_deadlock_with_a_concurrent_batch_is_retried(tenant_a, caplog):
    """Batch [X, Y] meets another publisher holding Y that then inserts X: PostgreSQL aborts
    one of the two; made to be ours (the other waits 60 s before it checks), we run again."""
    tenant = tenant_a.tenant
    first, second = item(1), item(2)
    holder_waiting = threading.Event()
    publisher_done = threading.Event()

    def holder() -> str:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL deadlock_timeout = '60s'")
            insert_event(cursor, tenant, second)
            holder_waiting.set()
            assert wait_until(lambda: publisher_waits(cursor), 20, interval=0.02)
            # Closes the cycle; the publisher is aborted first.
            insert_event(cursor, tenant, first)
        return "committed"

    def publisher() -> list:
        try:
            assert holder_waiting.wait(20)
            with connection.cursor() as cursor:
                cursor.execute("SET deadlock_timeout = '3s'")
            return event_publish_many(tenant=tenant, events=[first, second])
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET deadlock_timeout")
            publisher_done.set()

    results = run_together(caplog, holder=holder, answers=publisher)
    assert publisher_done.is_set()
    assert results["holder"] == "committed", results
    answers = results["answers"]
    assert [(str(a.event_id), a.created) for a in answers] == [
        (first["event_id"], False),
        (second["event_id"], False),
    ]
    assert "a concurrent batch had the same events" in caplog.text
    assert Event.objects.filter(event_type=EventType.DETECTION_ALERT).count() == 2


@pytest.mark.django_db(transaction=True)
def test_an_event_stored_by_a_concurrent_batch_meanwhile_is_a_duplicate(
    tenant_a, two_destinations, caplog
):
    """Another publisher stores X after this batch [X, Y] looked for it and commits while
    ours waits on the unique index: the index refuses ours, and the next attempt finds X."""
    tenant = tenant_a.tenant
    first, second = item(1), item(2)
    holder_inserted = threading.Event()

    def holder() -> str:
        with transaction.atomic(), connection.cursor() as cursor:
            insert_event(cursor, tenant, first)
            holder_inserted.set()
            assert wait_until(lambda: publisher_waits(cursor), 20, interval=0.02)
        return "committed"

    def publisher() -> list:
        assert holder_inserted.wait(20)
        return event_publish_many(tenant=tenant, events=[first, second])

    results = run_together(caplog, holder=holder, answers=publisher)
    assert results["holder"] == "committed", results
    answers = results["answers"]
    assert [(str(a.event_id), a.created) for a in answers] == [
        (first["event_id"], False),
        (second["event_id"], True),
    ], answers
    assert "a concurrent batch had the same events" in caplog.text
    stored = Event.objects.filter(event_type=EventType.DETECTION_ALERT)
    assert stored.count() == 2
    # Only the event this batch stored is queued by it (the other publisher queued nothing).
    assert len(queued(two_destinations[0])) == 1


def insert_event(cursor, tenant, row: dict) -> None:
    """The row another publisher's transaction inserts for this item."""
    cursor.execute(
        "INSERT INTO integrations_event (tenant_id, event_id, event_type, severity, "
        "event_time, payload, created_at) VALUES (%s, %s, 'detection.alert', 'high', "
        "now(), '{}', now())",
        [tenant.pk, row["event_id"]],
    )


def run_together(caplog, **functions) -> dict:
    """Run each function in its own thread (its own connection, closed after), capturing the
    publisher's log; every thread is given 60 s. Each name maps to what its function returned,
    or to the repr of what it raised."""
    results: dict = {}

    def run(name: str, function) -> None:
        try:
            results[name] = function()
        except Exception as error:
            results[name] = repr(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=item) for item in functions.items()]
    with caplog.at_level(logging.INFO, logger="integrations.events"):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    return results


def publisher_waits(cursor) -> bool:
    cursor.execute("SELECT pg_stat_clear_snapshot()")  # else one snapshot per transaction
    cursor.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    return cursor.fetchone()[0] > 0


def test_the_outbox_goes_with_its_destination_and_its_events(tenant_a, two_destinations):
    """The outbox keeps no database constraints (see DeliveryEvent): deleting a destination,
    or events, still takes their outbox rows along, waiting or given to a batch."""
    from integrations.models import Delivery
    from integrations.services import destination_delete

    kept, deleted = two_destinations
    event_publish_many(tenant=tenant_a.tenant, events=[item(n) for n in range(3)])
    batch = Delivery.objects.create(tenant=tenant_a.tenant, destination=deleted, event_count=1)
    first = DeliveryEvent.objects.filter(destination_id=deleted.pk).order_by("id").first()
    DeliveryEvent.objects.filter(pk=first.pk).update(delivery=batch)
    destination_delete(destination=deleted, actor=None)
    assert not DeliveryEvent.objects.filter(destination_id=deleted.pk).exists()
    assert len(queued(kept)) == 3

    Event.objects.filter(tenant=tenant_a.tenant).delete()
    assert not DeliveryEvent.objects.exists()


def test_deleting_destinations_any_way_takes_their_waiting_events(tenant_a, two_destinations):
    """Not only through destination_delete: a queryset delete, and a tenant's cascade."""
    first, second = two_destinations
    event_publish_many(tenant=tenant_a.tenant, events=[item(n) for n in range(2)])
    other = TenantFactory()
    theirs = make_destination(other, event_types=ALERTS)
    event_publish_many(tenant=other, events=[item(n) for n in range(2)])

    Destination.objects.filter(pk=first.pk).delete()
    assert not DeliveryEvent.objects.filter(destination_id=first.pk).exists()
    assert len(queued(second)) == 2

    Destination.objects.filter(tenant=tenant_a.tenant).delete()
    assert not DeliveryEvent.objects.filter(destination_id=second.pk).exists()
    assert len(queued(theirs)) == 2  # another tenant's are untouched
