"""A delivery loop's record goes straight on with a stream's next batch when it may (the stream
keeps its lease under a new token), and otherwise lets the stream go back to the claim. Real
receiver on 127.0.0.1, real PostgreSQL, the engine's functions driven by hand."""

from __future__ import annotations

import pytest

from integrations.catalogue import EventType
from integrations.delivery import drain, queue, record
from integrations.events import event_publish
from integrations.models import Attempt, Delivery, DeliveryState, Destination
from integrations.services import destination_rotate_secret
from tests.factories import TenantFactory
from tests.integrations.engine_helpers import allow_receiver, make_destination

pytestmark = pytest.mark.django_db


@pytest.fixture
def stream(tenant_a, receiver, settings):
    allow_receiver(settings, receiver)
    settings.WEBHOOK_BATCH_SIZE = 1
    settings.WEBHOOK_RETRY_JITTER = 0
    destination = make_destination(
        tenant_a.tenant, receiver, event_types=[EventType.DETECTION_ALERT]
    )
    events = [
        event_publish(
            tenant=tenant_a.tenant, event_type=EventType.DETECTION_ALERT, payload={"n": n}
        ).event
        for n in range(3)
    ]
    return destination, receiver, events


def _lease(destination) -> tuple:
    destination.refresh_from_db()
    return destination.lease_owner, destination.lease_until


def test_a_delivered_batch_goes_straight_on_with_the_next_one_in_order(stream):
    destination, receiver, events = stream
    owner = queue.owner_key()
    claim = drain.claim_batch(destination.pk)
    for expected in range(3):
        recorded, continued = record.record_and_continue(
            [(claim, drain.send_claim(claim))], owner=owner
        )
        assert recorded[0].action == "deliver"
        if expected == 2:
            assert continued == []  # nothing waits: the stream lets its lease go
            assert _lease(destination) == ("", None)
            break
        [claim] = continued
        lease_owner, lease_until = _lease(destination)
        assert lease_owner == claim.lease_owner and lease_until is not None  # still ours
        assert lease_owner.startswith(f"{owner}:")
        assert drain.claim_batch(destination.pk) is None  # one batch in flight, always
    assert receiver.events_received() == [str(e.event_id) for e in events]
    states = set(Delivery.objects.filter(destination=destination).values_list("state", flat=True))
    assert states == {DeliveryState.DELIVERED}


def test_without_an_owner_record_many_lets_the_stream_go_back_to_the_claim(stream):
    destination, _, _ = stream
    claim = drain.claim_batch(destination.pk)
    recorded, continued = record.record_and_continue([(claim, drain.send_claim(claim))])
    assert continued == [] and _lease(destination) == ("", None)
    assert drain.claim_batch(destination.pk) is not None  # due now, through the claim


def test_a_stream_yields_its_place_when_another_tenants_event_waits(stream, receiver):
    """Every place in flight may be taken: a stream only goes on while nothing else is due, so a
    fresh event of another tenant goes through the round-robin claim instead of waiting behind
    this stream's backlog."""
    destination, _, _ = stream
    other_tenant = TenantFactory()
    other = make_destination(other_tenant, receiver, event_types=[EventType.DETECTION_ALERT])
    owner = queue.owner_key()
    claim = drain.claim_batch(destination.pk)
    event_publish(tenant=other_tenant, event_type=EventType.DETECTION_ALERT, payload={"x": 1})
    recorded, continued = record.record_and_continue(
        [(claim, drain.send_claim(claim))], owner=owner
    )
    assert recorded[0].action == "deliver" and continued == []
    assert _lease(destination) == ("", None)  # back to the claim, due now
    claims, _ = queue.claim_many(owner=owner, limit=1)
    assert [c.destination.pk for c in claims] == [other.pk]  # the waiting tenant comes first


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"active": False}, id="paused"),
        pytest.param({"rate_limit_per_second": 0.2}, id="rate-limited"),
    ],
)
def test_a_stream_that_may_not_go_on_now_is_not_continued(stream, change):
    destination, receiver, _ = stream
    claim = drain.claim_batch(destination.pk)
    Destination.objects.filter(pk=destination.pk).update(**change)
    recorded, continued = record.record_and_continue(
        [(claim, drain.send_claim(claim))], owner=queue.owner_key()
    )
    assert recorded[0].action == "deliver" and continued == []
    assert _lease(destination) == ("", None)
    assert len(receiver.events_received()) == 1


def test_a_failed_attempt_is_not_continued(stream):
    destination, receiver, _ = stream
    receiver.script([503])
    claim = drain.claim_batch(destination.pk)
    recorded, continued = record.record_and_continue(
        [(claim, drain.send_claim(claim))], owner=queue.owner_key()
    )
    assert recorded[0].action != "deliver" and continued == []
    assert _lease(destination) == ("", None)


def test_a_continued_batch_is_signed_with_the_current_secret(stream, tenant_a):
    destination, receiver, _ = stream
    claim = drain.claim_batch(destination.pk)
    rotated, new_secret = destination_rotate_secret(
        destination=destination, actor=tenant_a.admin, overlap_hours=0
    )
    receiver.secrets = [new_secret]
    _, continued = record.record_and_continue(
        [(claim, drain.send_claim(claim))], owner=queue.owner_key()
    )
    [next_claim] = continued
    record.record_many([(next_claim, drain.send_claim(next_claim))])
    assert receiver.received[-1].signature_ok  # the row was read again, not the old claim's


@pytest.mark.parametrize(
    ("batch", "max_events", "chunk"), [(100, 2000, 20), (1, 2000, 2000), (5000, 2000, 1)]
)
def test_a_claim_leases_at_most_its_events_worth_of_streams(settings, batch, max_events, chunk):
    settings.WEBHOOK_BATCH_SIZE = batch
    settings.WEBHOOK_CLAIM_MAX_EVENTS = max_events
    assert queue.claim_chunk() == chunk


def test_a_record_continues_at_most_one_claims_worth_of_streams(stream, tenant_a, settings):
    """Large batches: what one record hands out at once stays bounded like a claim; the other
    delivered streams go back through the claim, due now."""
    destination, receiver, _ = stream
    second = make_destination(tenant_a.tenant, receiver, event_types=[EventType.DETECTION_ALERT])
    for n in range(2):  # the second stream has events of its own beyond its first batch
        event_publish(
            tenant=tenant_a.tenant, event_type=EventType.DETECTION_ALERT, payload={"m": n}
        )
    settings.WEBHOOK_CLAIM_MAX_EVENTS = 1  # batch 1: one stream per claim
    claims = [drain.claim_batch(destination.pk), drain.claim_batch(second.pk)]
    results = [(claim, drain.send_claim(claim)) for claim in claims]
    recorded, continued = record.record_and_continue(results, owner=queue.owner_key())
    assert [r.action for r in recorded] == ["deliver", "deliver"]
    assert len(continued) == 1
    others = {destination.pk, second.pk} - {continued[0].destination.pk}
    [other] = Destination.objects.filter(pk__in=others)
    assert (other.lease_owner, other.lease_until) == ("", None)
    assert other.next_due_at is not None  # due again: the claim takes it
    assert drain.claim_batch(other.pk) is not None


def test_a_record_continues_no_more_than_the_loops_share_and_wakes_the_others(
    stream, tenant_a, django_capture_on_commit_callbacks
):
    """`most` is the loop's fair share: the streams beyond it are due now, and the loops are
    told (NOTIFY after commit), so another loop takes them."""
    destination, receiver, _ = stream
    second = make_destination(tenant_a.tenant, receiver, event_types=[EventType.DETECTION_ALERT])
    for n in range(2):
        event_publish(
            tenant=tenant_a.tenant, event_type=EventType.DETECTION_ALERT, payload={"m": n}
        )
    claims = [drain.claim_batch(destination.pk), drain.claim_batch(second.pk)]
    results = [(claim, drain.send_claim(claim)) for claim in claims]
    with django_capture_on_commit_callbacks() as callbacks:
        _, continued = record.record_and_continue(results, owner=queue.owner_key(), most=1)
    assert len(continued) == 1
    assert any(getattr(c, "__name__", "") == "wake_many" for c in callbacks)
    with django_capture_on_commit_callbacks() as callbacks:
        _, continued = record.record_and_continue(
            [(continued[0], drain.send_claim(continued[0]))], owner=queue.owner_key(), most=0
        )
    assert continued == []  # over its share: the loop keeps none


def test_a_recorded_attempt_keeps_every_value_of_its_outcome(stream):
    """Attempts are written from one JSON document: times to the microsecond, the UUID, the
    shown headers and the excerpt come back exactly as the send produced them."""
    destination, _, _ = stream
    claim = drain.claim_batch(destination.pk)
    outcome = drain.send_claim(claim)
    record.record_many([(claim, outcome)])
    attempt = Attempt.objects.get(delivery_id=claim.delivery.pk)
    assert attempt.started_at == outcome.started_at
    assert attempt.delivery_uuid == outcome.delivery_uuid
    assert attempt.request_headers == outcome.request_headers
    assert (attempt.status_code, attempt.ok, attempt.number) == (outcome.status_code, True, 1)
    assert attempt.response_excerpt == outcome.response_excerpt
    assert attempt.destination_id == destination.pk


def test_a_continued_stream_reads_its_destination_as_the_orm_does(stream):
    """record builds the destinations that go on from raw rows (Destination.from_db, no
    converters): every field must come back as a normal load gives it, the secrets too, so a
    field that needs a database converter fails here, not in a send."""
    destination, _, _ = stream
    claim = drain.claim_batch(destination.pk)
    _, [continued] = record.record_and_continue(
        [(claim, drain.send_claim(claim))], owner=queue.owner_key()
    )
    loaded = Destination.objects.get(pk=destination.pk)
    for field in Destination._meta.concrete_fields:
        assert getattr(continued.destination, field.attname) == getattr(loaded, field.attname), (
            field.name
        )
    assert continued.destination.secret() == loaded.secret()
