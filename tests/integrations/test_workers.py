"""The engine on a real django-q2 worker cluster: several workers, SIGKILL, both brokers."""

import os

import pytest

from integrations.catalogue import EventType
from tests.integrations.engine_helpers import make_destination
from tests.processes import Cluster, child_env, shell, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BROKERS = ["orm"] + (["redis"] if os.environ.get("REDIS_URL") else [])

PUBLISH = """
from integrations.events import event_publish
from portal.models import Tenant
tenant = Tenant.objects.get(slug={slug!r})
for n in range({count}):
    event_publish(tenant=tenant, event_type="detection.alert", severity="high", payload={{"n": n}})
"""
# One transaction: the whole backlog is there at once (the loops deliver as fast as we publish).
PUBLISH_AT_ONCE = """
from django.db import transaction
from integrations.events import event_publish
from portal.models import Tenant
tenant = Tenant.objects.get(slug={slug!r})
with transaction.atomic():
    for n in range({count}):
        event_publish(
            tenant=tenant, event_type="detection.alert", severity="high", payload={{"n": n}}
        )
"""
START_SWEEPER = "from django_q.tasks import async_task; async_task('integrations.tasks.sweep_loop')"


def _env(receivers, broker, **overrides):
    redis_url = os.environ.get("REDIS_URL") if broker == "redis" else None
    return child_env(receivers=receivers, redis_url=redis_url, **overrides)


@pytest.mark.parametrize("broker", BROKERS)
def test_two_workers_deliver_every_event_once(tenant_a, make_receiver, broker):
    receivers = [make_receiver(), make_receiver()]
    env = _env(receivers, broker, WEBHOOK_BATCH_SIZE=10)
    for receiver in receivers:
        make_destination(tenant_a.tenant, receiver, event_types=[EventType.DETECTION_ALERT])
    clusters = [Cluster(env).start(), Cluster(env).start()]
    try:
        shell(env, START_SWEEPER)
        shell(env, PUBLISH.format(slug=tenant_a.tenant.slug, count=200))
        for receiver in receivers:
            assert wait_until(lambda r=receiver: len(set(r.events_received())) >= 200, 90)
    finally:
        for cluster in clusters:
            cluster.stop()
    for receiver in receivers:
        assert len(set(receiver.events_received())) == 200
        assert receiver.duplicates() == 0
        assert all(r.signature_ok for r in receiver.received)


def test_a_worker_killed_mid_delivery_loses_nothing(tenant_a, make_receiver):
    receiver = make_receiver(slow_seconds=0.5)
    env = _env([receiver], "orm", WEBHOOK_BATCH_SIZE=5)
    make_destination(
        tenant_a.tenant, receiver, event_types=[EventType.DETECTION_ALERT], timeout_seconds=2
    )
    cluster = Cluster(env).start()
    try:
        shell(env, START_SWEEPER)
        shell(env, PUBLISH_AT_ONCE.format(slug=tenant_a.tenant.slug, count=100))
        assert wait_until(lambda: len(receiver.received) >= 3, 60)
        cluster.kill()  # SIGKILL, mid-delivery: the receiver is slow
        killed_at = len(set(receiver.events_received()))
        assert killed_at < 100
        cluster = Cluster(env).start()
        shell(env, START_SWEEPER)
        assert wait_until(lambda: len(set(receiver.events_received())) >= 100, 120)
    finally:
        cluster.stop()
    assert len(set(receiver.events_received())) == 100  # at least once: nothing lost
    assert all(r.signature_ok for r in receiver.received)
