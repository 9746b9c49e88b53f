"""The delivery engine against a real receiver on 127.0.0.1 (real HTTP, real PostgreSQL)."""

import hashlib
import hmac
import json
import socket
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from integrations import url_safety
from integrations.catalogue import EventType
from integrations.delivery import drain, queue, record
from integrations.events import PublishError, event_publish
from integrations.models import (
    Attempt,
    Delivery,
    DeliveryEvent,
    DeliveryState,
    Destination,
    ErrorKind,
    Event,
    Health,
)
from integrations.services import destination_rotate_secret, destination_update
from tests.factories import TenantFactory
from tests.integrations.engine_helpers import (
    SECRET,
    advance_retries,
    allow_receiver,
    make_destination,
)

pytestmark = pytest.mark.django_db


def publish(tenant, n=1, event_type=EventType.DETECTION_ALERT, severity="high", **extra):
    return [
        event_publish(
            tenant=tenant, event_type=event_type, severity=severity, payload={"n": i, **extra}
        ).event
        for i in range(n)
    ]


@pytest.fixture
def setup(tenant_a, receiver, settings):
    allow_receiver(settings, receiver)
    settings.WEBHOOK_RETRY_JITTER = 0
    destination = make_destination(
        tenant_a.tenant, receiver, event_types=[EventType.DETECTION_ALERT]
    )
    return tenant_a.tenant, destination, receiver


def independent_signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_events_arrive_signed_batched_and_in_order(setup):
    tenant, destination, receiver = setup
    events = publish(tenant, 3)
    assert drain.drain(destination.pk) == 1
    [request] = receiver.received
    assert request.signature_ok
    assert request.header("X-OneProtect-Signature") == independent_signature(request.body, SECRET)
    assert request.header("Content-Type") == "application/json"
    assert int(request.header("X-OneProtect-Timestamp")) > 1_700_000_000
    uuid.UUID(request.header("X-OneProtect-Delivery"))
    assert "OneProtect" in request.header("User-Agent")
    body = json.loads(request.body)
    assert [e["event_id"] for e in body["events"]] == [str(e.event_id) for e in events]
    first = body["events"][0]
    assert set(first) == {"event_id", "event_type", "event_time", "severity", "tenant", "event"}
    assert first["tenant"] == tenant.slug
    assert isinstance(first["event_time"], int)
    delivery = Delivery.objects.get()
    assert delivery.state == DeliveryState.DELIVERED
    assert delivery.event_count == 3
    destination.refresh_from_db()
    assert destination.health == Health.HEALTHY
    assert destination.next_due_at is None


def test_batches_respect_the_batch_size_and_event_order(setup, settings):
    tenant, destination, receiver = setup
    settings.WEBHOOK_BATCH_SIZE = 2
    events = publish(tenant, 5)
    drain.drain(destination.pk)
    sizes = [len(r.event_ids) for r in receiver.received]
    assert sizes == [2, 2, 1]
    assert receiver.events_received() == [str(e.event_id) for e in events]


def test_batches_respect_the_byte_limit(setup, settings):
    tenant, destination, receiver = setup
    settings.WEBHOOK_BATCH_MAX_BYTES = 3000
    publish(tenant, 4, blob="x" * 1000)
    drain.drain(destination.pk)
    assert all(len(r.body) <= 3000 for r in receiver.received)
    assert len(receiver.events_received()) == 4


def test_publishing_the_same_event_id_twice_stores_it_once(setup):
    tenant, destination, receiver = setup
    event_id = uuid.uuid4()
    first = event_publish(
        tenant=tenant, event_type="detection.alert", event_id=event_id, payload={"a": 1}
    )
    again = event_publish(
        tenant=tenant, event_type="detection.alert", event_id=event_id, payload={"a": 2}
    )
    assert first.created and not again.created
    assert again.event.pk == first.event.pk
    assert again.event.payload == {"a": 1}
    assert DeliveryEvent.objects.filter(destination=destination).count() == 1


@pytest.mark.parametrize(
    "data, error_field",
    [
        ({"event_type": "nope", "payload": {}}, "event_type"),
        ({"event_type": "detection.alert", "payload": []}, "event"),
        ({"event_type": "detection.alert", "payload": {}, "severity": "urgent"}, "severity"),
        ({"event_type": "detection.alert", "payload": {}, "event_id": "x"}, "event_id"),
        ({"event_type": "detection.alert", "payload": {}, "event_time": "yesterday"}, "event_time"),
        ({"event_type": "detection.alert", "payload": {"x": "y" * 300_000}}, "event"),
        ({"event_type": "detection.alert", "payload": {"x": ["a\x00b"]}}, "event"),
        ({"event_type": "detection.alert", "payload": {"k\x00": 1}}, "event"),
    ],
)
def test_bad_events_are_refused_with_a_clear_error(setup, data, error_field):
    tenant, _, _ = setup
    with pytest.raises(PublishError) as error:
        event_publish(tenant=tenant, **data)
    assert error_field in error.value.errors
    assert not Event.objects.exclude(event_type="audit_log").exists()


def test_a_literal_backslash_u0000_is_ordinary_text(setup):
    tenant, _, _ = setup
    text = "C:\\u0000 is not a NUL"
    published = event_publish(tenant=tenant, event_type="detection.alert", payload={"p": text})
    published.event.refresh_from_db()
    assert published.event.payload == {"p": text}


def test_filters_event_types_and_minimum_severity(setup, tenant_a, receiver):
    tenant, destination, _ = setup
    destination_update(destination=destination, actor=None, data={"min_severity": "high"})
    publish(tenant, 1, severity="medium")
    publish(tenant, 1, event_type=EventType.INBOUND_SPAM, severity="critical")
    kept = publish(tenant, 1, severity="critical")
    assert list(
        DeliveryEvent.objects.filter(destination=destination).values_list("event_id", flat=True)
    ) == [kept[0].pk]


def test_child_accounts_events_reach_parent_destinations_that_include_them(setup, receiver):
    tenant, destination, _ = setup
    child = TenantFactory(slug="tenant-a-emea", parent=tenant)
    publish(child, 1)
    assert not DeliveryEvent.objects.filter(destination=destination).exists()
    destination_update(destination=destination, actor=None, data={"include_child_tenants": True})
    publish(child, 1)
    drain.drain(destination.pk)
    [request] = receiver.received
    assert json.loads(request.body)["events"][0]["tenant"] == "tenant-a-emea"


def has_succeeded(destination) -> None:
    """The receiver once answered 2xx (before that, failures hold the stream)."""
    Destination.objects.filter(pk=destination.pk).update(last_success_at=timezone.now())


def test_paused_destinations_hold_events_and_activate_sends_them_in_order(setup):
    from integrations.services import destination_set_active

    tenant, destination, receiver = setup
    destination_set_active(destination=destination, actor=None, active=False)
    events = publish(tenant, 3)
    assert drain.drain(destination.pk) == 0  # paused: nothing is sent...
    assert DeliveryEvent.objects.filter(destination=destination, delivery=None).count() == 3
    destination_set_active(destination=destination, actor=None, active=True)
    assert drain.drain(destination.pk) == 1  # ...and everything goes out on Activate
    assert receiver.events_received() == [str(e.event_id) for e in events]


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_transient_statuses_are_retried_with_growing_delays(setup, settings, status):
    tenant, destination, receiver = setup
    settings.WEBHOOK_RETRY_SCHEDULE = [10, 20, 40]
    receiver.script([status, status, status, 200])
    publish(tenant, 1)
    delays = []
    for _ in range(3):
        drain.drain(destination.pk)
        delivery = Delivery.objects.get()
        assert delivery.state == DeliveryState.RETRYING
        attempt = delivery.attempts.last()
        delays.append(round((delivery.next_attempt_at - attempt.started_at).total_seconds()))
        advance_retries(destination)
    assert delays[0] < delays[1] < delays[2]
    assert delays == pytest.approx([10, 20, 40], abs=2)
    drain.drain(destination.pk)
    delivery = Delivery.objects.get()
    assert delivery.state == DeliveryState.DELIVERED
    assert delivery.attempt_count == 4
    assert [a.status_code for a in delivery.attempts.all()] == [status] * 3 + [200]


def test_retry_after_is_honoured_and_capped(setup, settings):
    tenant, destination, receiver = setup
    settings.WEBHOOK_RETRY_AFTER_CAP = 3600
    receiver.script([(429, {"Retry-After": "70"}), (503, {"Retry-After": "999999"})])
    publish(tenant, 1)
    drain.drain(destination.pk)
    delivery = Delivery.objects.get()
    wait = (delivery.next_attempt_at - delivery.attempts.last().started_at).total_seconds()
    assert 69 <= wait <= 72  # longer than the schedule's 30 s: honoured
    destination.refresh_from_db()
    assert destination.health == Health.RATE_LIMITED
    advance_retries(destination)
    drain.drain(destination.pk)
    delivery.refresh_from_db()
    wait = (delivery.next_attempt_at - delivery.attempts.last().started_at).total_seconds()
    assert 3590 <= wait <= 3610


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 301, 302])
def test_permanent_failures_are_not_retried_and_the_stream_advances(setup, status):
    tenant, destination, receiver = setup
    has_succeeded(destination)
    receiver.script([(status, {"Location": "https://elsewhere.example/"}), 200])
    publish(tenant, 1)
    drain.drain(destination.pk)
    failed = Delivery.objects.get()
    assert failed.state == DeliveryState.FAILED
    assert failed.attempt_count == 1
    assert str(status) in failed.failure_reason
    publish(tenant, 1)
    drain.drain(destination.pk)
    assert Delivery.objects.filter(state=DeliveryState.DELIVERED).count() == 1
    assert len(receiver.received) == 2  # the redirect was not followed
    destination.refresh_from_db()
    if status in (401, 403):
        assert Attempt.objects.filter(status_code=status).exists()


def test_gives_up_after_max_attempts(setup, settings):
    tenant, destination, receiver = setup
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    has_succeeded(destination)
    receiver.default_status = 500
    publish(tenant, 1)
    for _ in range(3):
        drain.drain(destination.pk)
        advance_retries(destination)
    delivery = Delivery.objects.get()
    assert delivery.state == DeliveryState.FAILED
    assert delivery.attempt_count == 3
    assert "Gave up after 3 attempts" in delivery.failure_reason


def test_connection_refused_is_transient(tenant_a, settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOWED_PRIVATE_TARGETS = [f"127.0.0.1:{port}"]

    class Closed:
        url = f"http://127.0.0.1:{port}/hook"
        secrets: list = []

    Closed.port = port
    destination = make_destination(tenant_a.tenant, Closed)
    publish(tenant_a.tenant, 1)
    drain.drain(destination.pk)
    delivery = Delivery.objects.get()
    assert delivery.state == DeliveryState.RETRYING
    assert delivery.last_error_kind == ErrorKind.CONNECT
    destination.refresh_from_db()
    assert destination.health == Health.UNREACHABLE


def test_a_receiver_that_never_answers_times_out(setup):
    tenant, destination, receiver = setup
    Destination.objects.filter(pk=destination.pk).update(timeout_seconds=1)
    receiver.script(["hang"])
    publish(tenant, 1)
    drain.drain(destination.pk)
    attempt = Attempt.objects.get()
    assert attempt.error_kind == ErrorKind.TIMEOUT
    assert attempt.duration_ms < 5000
    assert Delivery.objects.get().state == DeliveryState.RETRYING


def test_an_endless_body_is_read_only_up_to_4_kib(setup):
    tenant, destination, receiver = setup
    Destination.objects.filter(pk=destination.pk).update(timeout_seconds=2)
    receiver.script(["endless"])
    publish(tenant, 1)
    drain.drain(destination.pk)
    attempt = Attempt.objects.get()
    assert attempt.status_code == 200
    assert 0 < len(attempt.response_excerpt.encode()) <= 4096
    assert attempt.duration_ms < 5000


def test_a_reset_connection_is_transient(setup):
    tenant, destination, receiver = setup
    receiver.script(["reset"])
    publish(tenant, 1)
    drain.drain(destination.pk)
    delivery = Delivery.objects.get()
    assert delivery.state == DeliveryState.RETRYING
    assert delivery.last_error_kind == ErrorKind.CONNECT


def test_send_time_ssrf_guard_refuses_a_rebound_name(tenant_a, settings, monkeypatch):
    answers = {"hooks.example.com": ["93.184.216.34"]}
    monkeypatch.setattr(url_safety, "resolve_host", lambda host, port: answers[host])
    destination, _ = __import__("integrations.services", fromlist=["x"]).destination_create(
        tenant=tenant_a.tenant,
        actor=None,
        data={
            "name": "rebind",
            "endpoint_url": "https://hooks.example.com/hook",
            "event_types": ["detection.alert"],
        },
    )
    answers["hooks.example.com"] = ["10.0.0.1"]
    connects = []
    monkeypatch.setattr(socket.socket, "connect", lambda *a: connects.append(a))
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: connects.append(a))
    publish(tenant_a.tenant, 1)
    drain.drain(destination.pk)
    attempt = Attempt.objects.get()
    assert attempt.error_kind == ErrorKind.SSRF
    assert connects == []


def test_rotation_overlap_signs_with_both_secrets(setup):
    tenant, destination, receiver = setup
    destination, new_secret = destination_rotate_secret(destination=destination, actor=None)
    receiver.secrets = [SECRET]  # a receiver that still has only the old secret
    publish(tenant, 1)
    drain.drain(destination.pk)
    [request] = receiver.received
    assert request.signature_ok
    header = request.header("X-OneProtect-Signature")
    assert header == (
        independent_signature(request.body, new_secret)
        + ","
        + independent_signature(request.body, SECRET)
    )


def test_custom_signature_header_and_custom_headers(setup):
    tenant, destination, receiver = setup
    destination_update(
        destination=destination,
        actor=None,
        data={"signature_header": "X-Sig", "custom_headers": {"X-Api-Key": "key-123456"}},
    )
    receiver.signature_header = "X-Sig"
    publish(tenant, 1)
    drain.drain(destination.pk)
    [request] = receiver.received
    assert request.signature_ok
    assert request.header("X-Api-Key") == "key-123456"
    shown = Attempt.objects.get().request_headers
    assert shown["X-Api-Key"] != "key-123456"
    assert shown["X-Sig"].startswith("sha256=")


def test_splunk_hec_format_and_authorization(setup):
    tenant, destination, receiver = setup
    destination_update(destination=destination, actor=None, data={"provider": "splunk_hec"})
    publish(tenant, 2)
    drain.drain(destination.pk)
    [request] = receiver.received
    assert request.header("Authorization") == f"Splunk {SECRET}"
    lines = [json.loads(line) for line in request.body.decode().splitlines()]
    assert len(lines) == 2
    assert lines[0]["sourcetype"] == "oneprotect:detection.alert"
    assert "event_id" in lines[0]["event"]
    assert "Splunk" in Attempt.objects.get().request_headers["Authorization"]
    assert SECRET not in json.dumps(Attempt.objects.get().request_headers)


def test_auto_disable_keeps_the_backlog_and_tells_the_tenant(
    setup, settings, django_capture_on_commit_callbacks
):
    tenant, destination, receiver = setup
    destination_update(
        destination=destination, actor=None, data={"event_types": list(EventType.values)}
    )
    settings.WEBHOOK_DISABLE_AFTER = 0
    settings.WEBHOOK_DISABLE_MIN_FAILURES = 3
    receiver.default_status = 503
    publish(tenant, 1)
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(2):
            drain.drain(destination.pk)
            advance_retries(destination)
    destination.refresh_from_db()
    assert destination.disabled_at is None  # one old failure, or two, do not disable
    with django_capture_on_commit_callbacks(execute=True):
        drain.drain(destination.pk)
    destination.refresh_from_db()
    assert destination.health == Health.DISABLED
    health = Event.objects.get(event_type="system.health")
    assert health.payload["health"] == "disabled"
    publish(tenant, 1)
    assert drain.drain(destination.pk) == 0  # disabled: nothing sent, backlog kept
    assert DeliveryEvent.objects.filter(destination=destination, delivery__isnull=True).exists()
    from integrations.services import destination_set_active

    receiver.default_status = 200
    with django_capture_on_commit_callbacks(execute=True):
        destination_set_active(destination=destination, actor=None, active=True)
    advance_retries(destination)
    drain.drain(destination.pk)
    assert Delivery.objects.filter(state=DeliveryState.DELIVERED).exists()
    assert not DeliveryEvent.objects.filter(destination=destination, delivery__isnull=True).exists()


def test_audit_entries_are_published_as_audit_log_events(setup):
    tenant, destination, receiver = setup
    destination_update(destination=destination, actor=None, data={"event_types": ["audit_log"]})
    events = Event.objects.filter(tenant=tenant, event_type="audit_log")
    assert events.filter(payload__action="destination.updated").exists()
    destination_update(destination=destination, actor=None, data={"timeout_seconds": 9})
    drain.drain(destination.pk)
    [request] = receiver.received
    assert json.loads(request.body)["events"][0]["event"]["action"] == "destination.updated"


def test_lost_bookkeeping_is_repaired_by_the_sweep(setup):
    tenant, destination, _ = setup
    publish(tenant, 1)
    Destination.objects.filter(pk=destination.pk).update(next_due_at=None)
    assert queue.sweep() == [destination.pk]
    destination.refresh_from_db()
    assert destination.next_due_at is not None  # repaired
    assert queue.sweep() == []


def test_an_expired_lease_is_taken_over(setup):
    tenant, destination, receiver = setup
    publish(tenant, 1)
    claim = drain.claim_batch(destination.pk)
    assert claim is not None
    assert drain.claim_batch(destination.pk) is None  # leased
    Destination.objects.filter(pk=destination.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )
    assert drain.drain(destination.pk) == 1  # the "dead" worker's batch is sent again
    assert Delivery.objects.get().state == DeliveryState.DELIVERED
    record.record_outcome(claim, drain.send_claim(claim))  # the old worker wakes up late
    assert Delivery.objects.get().state == DeliveryState.DELIVERED


def test_retention_purges_old_delivered_batches(setup, settings):
    tenant, destination, _ = setup
    publish(tenant, 2)
    drain.drain(destination.pk)
    Delivery.objects.update(finished_at=timezone.now() - timedelta(days=40))
    Event.objects.update(created_at=timezone.now() - timedelta(days=40))
    assert record.purge_retention() == 1
    assert not Delivery.objects.exists()
    assert not Attempt.objects.exists()
    assert not Event.objects.filter(event_type="detection.alert").exists()


def test_send_test_event_reports_the_outcome_and_is_audited(setup):
    from audit.models import AuditEntry
    from integrations.services import destination_send_test

    tenant, destination, receiver = setup
    receiver.script([(401, {}, "bad api key")])
    result = destination_send_test(destination=destination, actor=None)
    assert result.outcome.status_code == 401
    assert "custom headers" in result.explanation.fix
    assert result.outcome.response_excerpt == "bad api key"
    assert result.delivery.is_test and result.delivery.state == DeliveryState.FAILED
    assert receiver.received[0].signature_ok
    assert AuditEntry.objects.filter(action="destination.test_sent").exists()
    ok = destination_send_test(destination=destination, actor=None)
    assert ok.outcome.ok and ok.explanation is None
    assert drain.claim_batch(destination.pk) is None  # tests are not part of the stream


def test_resend_a_failed_delivery_then_resend_all(setup, settings):
    from integrations.models import ResendJob
    from integrations.services import (
        NotResendable,
        delivery_resend,
        destination_resend_all_failed,
        resend_job_run,
    )

    tenant, destination, receiver = setup
    settings.WEBHOOK_BATCH_SIZE = 1
    has_succeeded(destination)
    receiver.script([400, 400, 400])
    publish(tenant, 3)
    drain.drain(destination.pk)  # two fail, the third trips the breaker: the stream holds
    assert Delivery.objects.filter(state=DeliveryState.FAILED).count() == 2
    Destination.objects.filter(pk=destination.pk).update(
        held_since=None, permanent_failures_in_row=0
    )
    receiver.script([400])
    advance_retries(destination)
    drain.drain(destination.pk)
    failed = list(Delivery.objects.filter(state=DeliveryState.FAILED).order_by("id"))
    assert len(failed) == 3
    delivery_resend(delivery=failed[0], actor=None)
    with pytest.raises(NotResendable):
        delivery_resend(delivery=Delivery.objects.get(pk=failed[0].pk), actor=None)
    drain.drain(destination.pk)
    failed[0].refresh_from_db()
    assert failed[0].state == DeliveryState.DELIVERED
    assert failed[0].attempts.count() == 2
    job = destination_resend_all_failed(destination=destination, actor=None)
    assert job.total == 2
    job = resend_job_run(job.pk, chunk=1)
    assert (job.done, job.state, job.percent) == (2, "done", 100)
    drain.drain(destination.pk)
    assert Delivery.objects.filter(state=DeliveryState.DELIVERED).count() == 3
    assert ResendJob.objects.count() == 1
