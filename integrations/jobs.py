"""Queueing work for the django-q2 cluster: the one place that names tasks (by dotted path).

Services and the delivery loop queue through here and never import `integrations.tasks`, the
entry points that call them, so the two never import each other.
"""

from __future__ import annotations

from django.conf import settings
from django_q.brokers import get_broker
from django_q.tasks import async_task

DELIVERY_LOOP = "integrations.tasks.delivery_loop"
RESEND_JOB = "integrations.tasks.run_resend_job"
TEST_SEND = "integrations.tasks.send_queued_test"

_broker = None


def _get_broker():
    """One broker per process: the Redis broker would otherwise reconnect per task."""
    global _broker
    if _broker is None:
        _broker = get_broker()
    return _broker


def enqueue_delivery_loop() -> None:
    """Queue a delivery loop task (it exits at once when every loop slot is taken)."""
    if not settings.WEBHOOK_ENQUEUE:
        return
    async_task(
        DELIVERY_LOOP,
        broker=_get_broker(),
        save=False,
        timeout=settings.WEBHOOK_LOOP_TASK_TIMEOUT,
    )


def enqueue_resend_job(job_id: int) -> None:
    if not settings.WEBHOOK_ENQUEUE:
        return
    async_task(RESEND_JOB, job_id, broker=_get_broker(), save=False)


def enqueue_test_send(delivery_id: int) -> None:
    """Queue a destination's test delivery (the page polls its state)."""
    if not settings.WEBHOOK_ENQUEUE:
        return
    async_task(TEST_SEND, delivery_id, broker=_get_broker(), save=False)
