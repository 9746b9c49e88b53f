"""/metrics and the staff page of delivery workers: staff or a metrics token only."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from integrations.models import DeliveryCounter, DeliveryWorker
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client():
    client = Client()
    client.force_login(UserFactory(email="staff@platform.test", is_staff=True))
    return client


def test_metrics_are_refused_to_anonymous_and_tenant_users(tenant_a, client_for):
    assert Client().get("/metrics").status_code == 403
    assert client_for(tenant_a.admin).get("/metrics").status_code == 403


def test_metrics_with_a_token(settings):
    settings.METRICS_TOKEN = "metrics-token-for-tests"
    ok = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-token-for-tests")
    assert ok.status_code == 200
    wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-token-for-test")
    assert wrong.status_code == 403


def test_metrics_show_the_engines_figures_with_bounded_labels(staff_client):
    DeliveryCounter.objects.create(name="attempts_deliver", value=7)
    DeliveryCounter.objects.create(name="attempts_retry", value=2)
    DeliveryCounter.objects.create(name="attempt_duration_count", value=9)
    DeliveryCounter.objects.create(name="attempt_duration_le_0.5", value=8)
    DeliveryCounter.objects.create(name="attempt_duration_sum_ms", value=1500)
    DeliveryWorker.objects.create(
        key=1,
        hostname="w1",
        pid=10,
        slot=0,
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
        in_flight=12,
    )
    response = staff_client.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'oneprotect_delivery_attempts_total{outcome="deliver"} 7.0' in text
    assert 'oneprotect_delivery_attempts_total{outcome="retry"} 2.0' in text
    assert "oneprotect_delivery_sends_in_flight 12.0" in text
    assert "oneprotect_events_published_total" in text
    assert "oneprotect_destinations_with_backlog 0.0" in text
    assert "oneprotect_oldest_waiting_event_age_seconds 0.0" in text
    assert 'oneprotect_delivery_attempt_duration_seconds_bucket{le="0.5"} 8.0' in text
    assert 'oneprotect_delivery_attempt_duration_seconds_bucket{le="+Inf"} 9.0' in text
    assert "tenant" not in text  # no per-tenant (unbounded) labels


def test_the_workers_page_is_for_staff(tenant_a, client_for, staff_client):
    assert client_for(tenant_a.admin).get("/staff/delivery-workers/").status_code == 302
    now = timezone.now()
    DeliveryWorker.objects.create(
        key=1, hostname="w1", pid=10, slot=0, started_at=now, heartbeat_at=now, in_flight=3
    )
    DeliveryWorker.objects.create(
        key=2,
        hostname="w2",
        pid=11,
        slot=1,
        started_at=now,
        heartbeat_at=now - timedelta(minutes=5),
    )
    html = staff_client.get("/staff/delivery-workers/").content.decode()
    assert "1 live delivery loop" in html
    assert "No heartbeat" in html and "w2" in html
