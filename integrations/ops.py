"""Operator views outside the tenant permission table: platform staff (or a token) only."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponse, HttpResponseForbidden
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_q.models import Schedule
from prometheus_client import CONTENT_TYPE_LATEST

from integrations.delivery.metrics import LIVE_WITHIN, render_metrics
from integrations.models import DeliveryWorker


def _token_ok(request) -> bool:
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    if not token or not given.startswith("Bearer "):
        return False
    return hmac.compare_digest(given[len("Bearer ") :].encode(), token.encode())


@never_cache
@require_GET
def metrics(request) -> HttpResponse:
    """Prometheus metrics: staff signed in, or `Authorization: Bearer <METRICS_TOKEN>`."""
    user = getattr(request, "user", None)
    if not (_token_ok(request) or (user is not None and user.is_active and user.is_staff)):
        return HttpResponseForbidden("Staff or a metrics token only.", content_type="text/plain")
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)


@never_cache
@require_GET
@staff_member_required
def delivery_workers(request) -> HttpResponse:
    """The cluster's delivery loops and their last heartbeat."""
    now = timezone.now()
    workers = list(DeliveryWorker.objects.all()[:200])
    for worker in workers:
        worker.live = worker.stopped_at is None and now - worker.heartbeat_at <= LIVE_WITHIN
        worker.age = (now - worker.heartbeat_at).total_seconds()
    return render(
        request,
        "ops/delivery_workers.html",
        {
            "workers": workers,
            "live": sum(1 for w in workers if w.live),
            "schedules": Schedule.objects.filter(func__startswith="integrations."),
            "loops_configured": settings.WEBHOOK_DELIVERY_LOOPS,
            "in_flight_per_loop": settings.WEBHOOK_MAX_IN_FLIGHT,
        },
    )
