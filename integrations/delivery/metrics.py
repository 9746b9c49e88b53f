"""Prometheus metrics for the delivery engine, read from the database at scrape time.

The delivery loops keep their counters in `DeliveryCounter` rows (flushed with each
heartbeat), so every web process reports the same figures without a shared directory.
Labels are bounded: outcomes and histogram buckets only, never tenants or destinations.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from integrations.delivery.loop import DURATION_BUCKETS
from integrations.models import DeliveryCounter, DeliveryWorker

OUTCOMES = ("deliver", "retry", "hold", "split", "fail", "fenced", "gone")
LIVE_WITHIN = timedelta(seconds=30)


class DeliveryCollector:
    def collect(self):
        counters = dict(DeliveryCounter.objects.values_list("name", "value"))
        with connection.cursor() as cursor:
            cursor.execute("SELECT last_value, is_called FROM integrations_event_id_seq")
            last_value, is_called = cursor.fetchone()
            cursor.execute(
                "SELECT count(DISTINCT destination_id) FROM integrations_deliveryevent "
                "WHERE delivery_id IS NULL"
            )
            backlog = cursor.fetchone()[0]
            cursor.execute(
                """
                SELECT EXTRACT(EPOCH FROM now() - min(e.created_at))
                FROM integrations_deliveryevent de
                JOIN integrations_event e ON e.id = de.event_id
                WHERE de.delivery_id IS NULL
                """
            )
            oldest = cursor.fetchone()[0]
        published = CounterMetricFamily(
            "oneprotect_events_published", "Events accepted for publishing."
        )
        published.add_metric([], float(last_value if is_called else 0))
        yield published

        attempts = CounterMetricFamily(
            "oneprotect_delivery_attempts",
            "Delivery attempts by what they led to.",
            labels=["outcome"],
        )
        for outcome in OUTCOMES:
            attempts.add_metric([outcome], float(counters.get(f"attempts_{outcome}", 0)))
        yield attempts

        live = DeliveryWorker.objects.filter(
            stopped_at__isnull=True, heartbeat_at__gte=timezone.now() - LIVE_WITHIN
        )
        in_flight = GaugeMetricFamily(
            "oneprotect_delivery_sends_in_flight", "Sends in flight in live delivery loops."
        )
        in_flight.add_metric([], float(sum(live.values_list("in_flight", flat=True))))
        yield in_flight
        loops = GaugeMetricFamily(
            "oneprotect_delivery_loops", "Delivery loops with a heartbeat in the last 30 s."
        )
        loops.add_metric([], float(live.count()))
        yield loops

        waiting = GaugeMetricFamily(
            "oneprotect_destinations_with_backlog", "Destinations with events waiting."
        )
        waiting.add_metric([], float(backlog))
        yield waiting
        age = GaugeMetricFamily(
            "oneprotect_oldest_waiting_event_age_seconds",
            "Age of the oldest event not yet in a delivery (0 when none waits).",
        )
        age.add_metric([], float(oldest or 0))
        yield age

        buckets = []
        for bound in DURATION_BUCKETS:
            buckets.append((f"{bound:g}", float(counters.get(f"attempt_duration_le_{bound:g}", 0))))
        count = float(counters.get("attempt_duration_count", 0))
        buckets.append(("+Inf", count))
        histogram = HistogramMetricFamily(
            "oneprotect_delivery_attempt_duration_seconds",
            "Wall time of delivery attempts.",
            buckets=buckets,
            sum_value=counters.get("attempt_duration_sum_ms", 0) / 1000.0,
        )
        yield histogram


def render_metrics() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DeliveryCollector())
    return generate_latest(registry)
