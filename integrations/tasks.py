"""django-q2 entry points: thin, they load by id and call the engine."""

from __future__ import annotations

from django.conf import settings
from django_q.brokers import get_broker
from django_q.tasks import async_task

from integrations import engine

_broker = None


def _get_broker():
    """One broker per process: the Redis broker would otherwise reconnect per task."""
    global _broker
    if _broker is None:
        _broker = get_broker()
    return _broker


def enqueue_drain(destination_id) -> None:
    """Wake a worker for one destination."""
    if not settings.WEBHOOK_ENQUEUE:
        return
    async_task(
        "integrations.tasks.drain_destination",
        str(destination_id),
        broker=_get_broker(),
        save=False,
    )


def drain_destination(destination_id: str) -> int:
    return engine.drain(destination_id)


def sweep_loop() -> int:
    """The sweeper: runs for a minute, then queues its successor (a schedule is the watchdog)."""
    rounds = engine.sweep_loop()
    if rounds and settings.WEBHOOK_ENQUEUE:
        async_task("integrations.tasks.sweep_loop", broker=_get_broker(), save=False)
    return rounds


def purge_retention() -> int:
    return engine.purge_retention()


def enqueue_resend_job(job_id: int) -> None:
    if not settings.WEBHOOK_ENQUEUE:
        return
    async_task("integrations.tasks.run_resend_job", job_id, broker=_get_broker(), save=False)


def run_resend_job(job_id: int) -> None:
    from integrations.services import resend_job_run

    resend_job_run(job_id)
