"""The engine on a real django-q2 worker cluster: several workers, SIGKILL, both brokers."""

import os
import signal
import time

import pytest

from integrations.catalogue import EventType
from scripts.processes import signal_group, wait_until
from tests.integrations.engine_helpers import make_destination
from tests.processes import Cluster, child_env, shell

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


@pytest.mark.parametrize("target", ["group", "main process"])
def test_sigterm_stops_the_whole_cluster_within_10_seconds_and_loses_nothing(
    tenant_a, make_receiver, target, tmp_path
):
    receiver = make_receiver()
    receiver.script(["hang", "hang", "hang"])  # three sends in flight when SIGTERM comes
    env = _env([receiver], "orm", WEBHOOK_DELIVERY_LOOPS="1", LOG_LEVEL="INFO")
    for _ in range(3):
        make_destination(
            tenant_a.tenant, receiver, event_types=[EventType.DETECTION_ALERT], timeout_seconds=60
        )
    cluster = Cluster(env, tmp_path / "cluster.log").start()
    try:
        shell(env, PUBLISH_AT_ONCE.format(slug=tenant_a.tenant.slug, count=2))
        assert wait_until(lambda: len(receiver.received) >= 3, 60)
        stopping = time.monotonic()
        if target == "group":
            assert signal_group(cluster.process.pid, signal.SIGTERM)
        else:
            cluster.process.send_signal(signal.SIGTERM)
        stopped = wait_until(lambda: not cluster.group_alive(), 10, interval=0.1)
        if not stopped:  # say what is left, for the record
            import subprocess

            ps = subprocess.run(
                ["ps", "-o", "pid,stat,wchan:20,cmd", "-g", str(cluster.process.pid)],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
        assert stopped, ps + cluster.log()[-3000:]
        stopped_in = time.monotonic() - stopping
    finally:
        cluster.kill()
    print(f"stopped in {stopped_in:.1f} s")
    assert stopped_in < 10
    cluster = Cluster(env).start()  # nothing was lost: the interrupted sends go out again
    try:
        assert wait_until(
            lambda: (
                len(set(receiver.events_received())) >= 2
                and all(
                    len([r for r in receiver.received if r.status == 200 and e in r.event_ids]) >= 3
                    for e in set(receiver.events_received())
                )
            ),
            60,
        )
    finally:
        cluster.stop()


def test_after_a_sigkill_delivery_resumes_within_5_seconds_of_the_restart(
    tenant_a, make_receiver, tmp_path
):
    receiver = make_receiver(slow_seconds=0.3)
    env = _env([receiver], "orm", WEBHOOK_BATCH_SIZE=5, LOG_LEVEL="INFO")
    make_destination(
        tenant_a.tenant, receiver, event_types=[EventType.DETECTION_ALERT], timeout_seconds=5
    )
    cluster = Cluster(env).start()
    try:
        shell(env, PUBLISH_AT_ONCE.format(slug=tenant_a.tenant.slug, count=200))
        assert wait_until(lambda: len(receiver.received) >= 2, 60)
    finally:
        cluster.kill()
    before = len(receiver.received)
    restarted = Cluster(env, tmp_path / "restart.log").start()
    try:
        assert wait_until(lambda: "starting: broker ORM" in restarted.log(), 60, interval=0.05)
        started = time.monotonic()
        assert wait_until(lambda: len(receiver.received) > before + 1, 5, interval=0.05)
        resumed_in = time.monotonic() - started
        assert wait_until(lambda: len(set(receiver.events_received())) >= 200, 120)
    finally:
        restarted.stop()
    assert resumed_in < 5
    assert "workers" in restarted.log() and "django-q2" in restarted.log()
