"""`manage.py qcluster`: django-q2's cluster, with a start line and a bounded stop.

django-q2 stops on SIGTERM or SIGINT by setting an event its sentinel process waits on. When
the whole process group gets the signal (systemd, Kubernetes, Ctrl-C in a terminal), the
sentinel dies at once, and setting that event can then wait forever for the dead waiter to
acknowledge it. So the stop runs with a deadline: whatever is still running after
STOP_DEADLINE seconds is ended. Nothing is lost either way: deliveries live in the database,
and the delivery loops record interrupted sends before they exit.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urlsplit

import psutil
from django.conf import settings
from django_q.cluster import Cluster
from django_q.management.commands.qcluster import Command as QClusterCommand

logger = logging.getLogger("integrations.delivery")

STOP_DEADLINE = 8.0  # seconds from SIGTERM to a stopped cluster, whatever happens


def broker_description() -> str:
    """The broker, without credentials."""
    url = settings.Q_CLUSTER.get("redis")
    if url:
        parts = urlsplit(url if isinstance(url, str) else "")
        return f"Redis at {parts.hostname or '?'}:{parts.port or 6379}{parts.path or ''}"
    return "ORM (PostgreSQL)"


def start_line() -> str:
    try:
        q_version = version("django-q2")
    except PackageNotFoundError:  # pragma: no cover - installed with the project
        q_version = "?"
    return (
        f"Worker cluster {settings.Q_CLUSTER['name']!r} starting: broker {broker_description()}, "
        f"{settings.Q_CLUSTER['workers']} workers, {settings.WEBHOOK_DELIVERY_LOOPS} delivery "
        f"loops with up to {settings.WEBHOOK_MAX_IN_FLIGHT} sends in flight each, "
        f"django-q2 {q_version}"
    )


def _end_children_after(deadline: float) -> None:
    """The stop's safety net: end our own descendants that outlive the deadline, then exit."""
    time.sleep(deadline)
    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(children, timeout=2)
    logger.warning("Worker cluster stop took over %.0f s; ended what was left", deadline)
    os._exit(0)


class Command(QClusterCommand):
    def handle(self, *args, **options):
        logger.info(start_line())
        cluster_name = options.get("cluster_name")
        if cluster_name:
            os.environ["Q_CLUSTER_NAME"] = cluster_name
        cluster = Cluster()
        stopping = threading.Event()

        def on_signal(signum, frame):
            if not stopping.is_set():
                stopping.set()
                threading.Thread(
                    target=_end_children_after, args=(STOP_DEADLINE,), daemon=True
                ).start()
                logger.info("Worker cluster stopping (signal %s)", signum)
            # A signal to the whole group ends the sentinel too: give it a moment, so that
            # django-q2 sees it gone instead of waiting for it.
            time.sleep(0.3)
            cluster.sig_handler(signum, frame)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        cluster.start()
        if options.get("run_once", False):
            cluster.stop()
