"""django-q2 entry points: thin, they load by id and call the engine or a service."""

from __future__ import annotations

from django.conf import settings
from django_q.brokers import get_broker
from django_q.tasks import async_task

from integrations import engine
from integrations.delivery import loop

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
        "integrations.tasks.delivery_loop",
        broker=_get_broker(),
        save=False,
        timeout=settings.WEBHOOK_LOOP_TASK_TIMEOUT,
    )


def delivery_loop() -> int:
    """Run a delivery loop for its slice, then queue its successor; the attempts made."""
    result = loop.run_loop()
    if result.slot is not None and not result.stopped:
        enqueue_delivery_loop()
    if loop.STOP.is_set():
        raise SystemExit(0)  # SIGTERM to this worker: end the process once recorded
    return result.attempts


def sweep_loop() -> int:
    """The schedule's watchdog (kept under its old name): make sure delivery loops run."""
    return delivery_loop()


def purge_retention() -> int:
    return engine.purge_retention()


def enqueue_resend_job(job_id: int) -> None:
    if not settings.WEBHOOK_ENQUEUE:
        return
    async_task("integrations.tasks.run_resend_job", job_id, broker=_get_broker(), save=False)


def run_resend_job(job_id: int) -> None:
    from integrations.services import resend_job_run

    resend_job_run(job_id)
