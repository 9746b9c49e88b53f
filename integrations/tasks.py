"""django-q2 entry points: thin, they load by id and call the delivery code or a service.

Nothing imports this module but django-q2 (by the dotted names in `integrations.jobs` and the
schedules); work is queued through `integrations.jobs`.
"""

from __future__ import annotations

from integrations import jobs, services
from integrations.delivery import loop, record


def delivery_loop() -> int:
    """Run a delivery loop for its slice, then queue its successor; the attempts made."""
    result = loop.run_loop()
    if result.slot is not None and not result.stopped:
        jobs.enqueue_delivery_loop()
    if loop.STOP.is_set():
        raise SystemExit(0)  # SIGTERM to this worker: end the process once recorded
    return result.attempts


def sweep_loop() -> int:
    """The schedule's watchdog (kept under its old name): make sure delivery loops run."""
    return delivery_loop()


def purge_retention() -> int:
    return record.purge_retention()


def run_resend_job(job_id: int) -> None:
    services.resend_job_run(job_id)


def send_queued_test(delivery_id: int) -> None:
    services.send_queued_test(delivery_id)
