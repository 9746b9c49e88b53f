"""Reads of the integrations app: the queries behind its pages and API operations.

Every tenant-owned read starts from `Model.objects.for_tenant(tenant)`, or from an object that
was found that way (a delivery's attempts, a destination's deliveries), so that another
tenant's rows are never reached; `*_get` raises Http404 when the object is not the tenant's.

Delivery health for the Integrations page takes all of the page's destinations at once and
aggregates in PostgreSQL (GROUP BY destination, FILTER clauses), so the page costs the same
number of queries for one destination or a hundred.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from integrations.explain import Explanation, explain_destination
from integrations.models import (
    Attempt,
    Delivery,
    DeliveryState,
    Destination,
    Event,
    ResendJob,
)
from portal.filters import nearest_id
from portal.models import Tenant

RECENT_LIMIT = 10  # deliveries in the Integrations page's Recent deliveries


# Destinations ---------------------------------------------------------------------------------
def destination_list(*, tenant: Tenant) -> QuerySet[Destination]:
    """The tenant's destinations by name."""
    return Destination.objects.for_tenant(tenant).order_by("name")


def destination_get(*, tenant: Tenant, pk) -> Destination:
    """The tenant's destination, or Http404 (another tenant's destination is not found)."""
    return get_object_or_404(Destination.objects.for_tenant(tenant), pk=pk)


def destination_find(*, tenant: Tenant, pk) -> Destination | None:
    """The tenant's destination, or None."""
    return Destination.objects.for_tenant(tenant).filter(pk=pk).first()


# Deliveries -----------------------------------------------------------------------------------
def delivery_get(*, tenant: Tenant, pk, test_only: bool = False) -> Delivery:
    """The tenant's delivery (a test send's only, with `test_only`) with its destination, or
    Http404."""
    deliveries = Delivery.objects.for_tenant(tenant).select_related("destination")
    if test_only:
        deliveries = deliveries.filter(is_test=True)
    return get_object_or_404(deliveries, pk=pk)


def delivery_list(
    *,
    tenant: Tenant,
    destination: Destination,
    state: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Delivery]:
    """A destination's deliveries, optionally of one state and created in [since, until)."""
    deliveries = Delivery.objects.for_tenant(tenant).filter(destination=destination)
    if state:
        deliveries = deliveries.filter(state=state)
    if since:
        deliveries = deliveries.filter(created_at__gte=since)
    if until:
        deliveries = deliveries.filter(created_at__lt=until)
    return deliveries


def delivery_find_test(*, tenant: Tenant, destination: Destination, pk) -> Delivery | None:
    """One of the destination's test sends, or None."""
    return (
        Delivery.objects.for_tenant(tenant)
        .filter(destination=destination, is_test=True, pk=pk)
        .first()
    )


def delivery_has_failed(*, tenant: Tenant, destination: Destination) -> bool:
    """Whether the destination has a failed delivery (test sends aside) to resend."""
    failed = Delivery.objects.for_tenant(tenant).filter(
        destination=destination, state=DeliveryState.FAILED, is_test=False
    )
    return nearest_id(failed, "-id") is not None


def delivery_event_list(*, delivery: Delivery, limit: int) -> list[Event]:
    """The first `limit` events of a delivery, by id."""
    items = delivery.items.select_related("event").order_by("event_id")[:limit]
    return [item.event for item in items]


def attempt_list(*, delivery: Delivery, limit: int | None = None) -> list[Attempt]:
    """A delivery's attempts in order (the first `limit` of them)."""
    attempts = delivery.attempts.order_by("number")
    return list(attempts if limit is None else attempts[:limit])


def delivery_recent_list(*, tenant: Tenant, limit: int = RECENT_LIMIT) -> list[Delivery]:
    """The tenant's latest deliveries across its destinations, newest first (one query)."""
    return list(
        Delivery.objects.for_tenant(tenant)
        .select_related("destination")
        .only(
            "id",
            "state",
            "event_count",
            "attempt_count",
            "attempt_limit",
            "next_attempt_at",
            "last_status_code",
            "last_error_kind",
            "is_test",
            "created_at",
            "destination__id",
            "destination__name",
        )
        .order_by("-created_at", "-id")[:limit]
    )


# Resend jobs ----------------------------------------------------------------------------------
def resend_job_get(*, tenant: Tenant, pk) -> ResendJob:
    """The tenant's resend job, or Http404."""
    return get_object_or_404(ResendJob.objects.for_tenant(tenant), pk=pk)


def resend_job_latest(*, tenant: Tenant, destination: Destination) -> ResendJob | None:
    """The destination's most recent "Resend all failed" job."""
    return (
        ResendJob.objects.for_tenant(tenant).filter(destination=destination).order_by("-id").first()
    )


# Delivery health ------------------------------------------------------------------------------
WINDOW = timedelta(hours=24)
HOURS = 24
BACKLOG_CAP = 10_000  # counting a huge outbox exactly would cost more than the number is worth

# Chart geometry (SVG user units): 24 bars of BAR_WIDTH in slots of SLOT_WIDTH.
CHART_HEIGHT = 50
SLOT_WIDTH = 10
BAR_WIDTH = 8
MIN_BAR = 1.5  # a non-empty hour stays visible next to a busy one


@dataclass(frozen=True)
class HourBar:
    """One hour of the chart: attempts delivered and failed, and where their rects go."""

    index: int
    start: datetime
    delivered: int
    failed: int
    x: int
    delivered_y: float
    delivered_height: float
    failed_y: float
    failed_height: float

    @property
    def title(self) -> str:
        end = self.start + timedelta(hours=1)
        return (
            f"{self.start:%H:%M}–{end:%H:%M} {self.start:%Z}: "
            f"{self.delivered} delivered, {self.failed} failed"
        )


@dataclass
class DestinationHealth:
    """What the health card of one destination shows."""

    destination: Destination
    now: datetime
    attempts: int = 0
    delivered: int = 0
    p95_ms: float | None = None
    waiting: int = 0
    in_flight: int = 0
    backlog_capped: bool = False
    bars: list[HourBar] = field(default_factory=list)

    @property
    def last_success_relative(self) -> str:
        return relative_time(self.destination.last_success_at, self.now)

    @property
    def explanation(self) -> Explanation | None:
        """What the health means and what to do, when the last attempt failed."""
        return explain_destination(self.destination)

    @property
    def failed(self) -> int:
        return self.attempts - self.delivered

    @property
    def success_rate(self) -> float | None:
        """Percentage of attempts in the last 24 hours that were acknowledged with a 2xx."""
        return 100.0 * self.delivered / self.attempts if self.attempts else None

    @property
    def backlog(self) -> int:
        """Events not yet acknowledged: waiting in the outbox plus those in open deliveries."""
        return self.waiting + self.in_flight

    @property
    def svg_bars(self) -> SafeString:
        """The chart's bars as markup, built once here (24 bars per card were slow as a loop
        in the template); every value goes through format_html."""
        parts = []
        for bar in self.bars:
            rects = format_html(
                '<rect class="slot" x="{}" y="0" width="{}" height="{}"/>',
                bar.x,
                BAR_WIDTH,
                CHART_HEIGHT,
            )
            if bar.delivered:
                rects += format_html(
                    '<rect class="delivered" x="{}" y="{}" width="{}" height="{}"/>',
                    bar.x,
                    bar.delivered_y,
                    BAR_WIDTH,
                    bar.delivered_height,
                )
            if bar.failed:
                rects += format_html(
                    '<rect class="failed" x="{}" y="{}" width="{}" height="{}"/>',
                    bar.x,
                    bar.failed_y,
                    BAR_WIDTH,
                    bar.failed_height,
                )
            parts.append(format_html('<g class="bar"><title>{}</title>{}</g>', bar.title, rects))
        return mark_safe("".join(parts))  # noqa: S308 (each part is built by format_html)

    @property
    def chart_summary(self) -> str:
        """The chart in words, for screen readers and for anyone who does not read bars."""
        if not self.attempts:
            return "No delivery attempts in the last 24 hours."
        busiest = max(self.bars, key=lambda bar: bar.delivered + bar.failed)
        return (
            f"{self.delivered} delivered and {self.failed} failed attempts in the last 24 hours; "
            f"busiest hour {busiest.start:%H:%M} {busiest.start:%Z} with "
            f"{busiest.delivered + busiest.failed}."
        )


def relative_time(moment: datetime | None, now: datetime | None = None) -> str:
    """ "just now", "5 min ago", "3 h ago", "2 days ago" (the exact time goes in a title)."""
    if moment is None:
        return ""
    seconds = max(0, int(((now or timezone.now()) - moment).total_seconds()))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    days = seconds // 86400
    return f"{days} day{'s' if days != 1 else ''} ago"


def chart_start(now: datetime) -> datetime:
    """The start of the chart's first hour: 24 whole hours ending with the current one."""
    local = timezone.localtime(now)
    return local.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)


def destinations_health(
    destinations: list[Destination], *, now: datetime | None = None
) -> list[DestinationHealth]:
    """Health cards for the destinations, in their order: two queries whatever their number."""
    now = now or timezone.now()
    cards = {destination.pk: DestinationHealth(destination, now) for destination in destinations}
    if not cards:
        return []
    ids = list(cards)
    _add_attempts(cards, ids, since=now - WINDOW, first_hour=chart_start(now))
    _add_backlog(cards, ids)
    return list(cards.values())


# Health queries --------------------------------------------------------------------------------
# One pass over the window's attempts (the CTE is read once) gives both the totals per
# destination (hour NULL) and the chart's counts per hour. An attempt started in the window
# belongs to a delivery that is still open or finished after that attempt started, so
# `finished_at IS NULL OR finished_at >= since` bounds the deliveries read, not only the
# attempts. Test sends are not part of the stream: they are left out.
ATTEMPTS_SQL = """
    WITH recent AS (
        -- stream attempts only (test sends carry no destination_id); index-only on
        -- attempt_dest_time (destination_id, started_at) INCLUDE (duration_ms, ok)
        SELECT a.destination_id, a.started_at, a.duration_ms, a.ok
        FROM integrations_attempt a
        WHERE a.destination_id = ANY(%(ids)s::uuid[]) AND a.started_at >= %(since)s
    )
    SELECT destination_id, NULL::int AS hour, count(*), count(*) FILTER (WHERE ok),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms)
    FROM recent GROUP BY destination_id
    UNION ALL
    SELECT destination_id,
           floor(extract(epoch FROM started_at - %(first_hour)s) / 3600)::int AS hour,
           count(*), count(*) FILTER (WHERE ok), NULL
    FROM recent WHERE started_at >= %(first_hour)s GROUP BY 1, 2
"""

BACKLOG_SQL = """
    SELECT dest.id,
           (SELECT count(*) FROM (
                SELECT 1 FROM integrations_deliveryevent de
                WHERE de.destination_id = dest.id AND de.delivery_id IS NULL
                LIMIT %(cap)s) AS waiting),
           (SELECT coalesce(sum(dl.event_count), 0) FROM integrations_delivery dl
            WHERE dl.destination_id = dest.id AND NOT dl.is_test
              AND dl.state IN ('pending', 'delivering', 'retrying'))
    FROM unnest(%(ids)s::uuid[]) AS dest(id)
"""


def _add_attempts(cards: dict, ids: list, *, since: datetime, first_hour: datetime) -> None:
    """Attempts, acknowledged attempts and p95 duration over the window, and the chart's bars."""
    hourly: dict = {}
    with connection.cursor() as cursor:
        cursor.execute(ATTEMPTS_SQL, {"ids": ids, "since": since, "first_hour": first_hour})
        for destination_id, hour, attempts, delivered, p95 in cursor.fetchall():
            if hour is None:
                card = cards[destination_id]
                card.attempts, card.delivered = attempts, delivered
                card.p95_ms = float(p95) if p95 is not None else None
                continue
            # An attempt stamped a little in the future (clocks of two workers) counts as now.
            hour = min(max(hour, 0), HOURS - 1)
            counts = hourly.setdefault(destination_id, {})
            previous = counts.get(hour, (0, 0))
            counts[hour] = (previous[0] + delivered, previous[1] + attempts - delivered)
    for destination_id, card in cards.items():
        card.bars = _bars(first_hour, hourly.get(destination_id, {}))


def _add_backlog(cards: dict, ids: list) -> None:
    """Events waiting in each outbox (counted up to BACKLOG_CAP) and in open deliveries."""
    with connection.cursor() as cursor:
        cursor.execute(BACKLOG_SQL, {"ids": ids, "cap": BACKLOG_CAP + 1})
        for destination_id, waiting, in_flight in cursor.fetchall():
            card = cards[destination_id]
            card.backlog_capped = waiting > BACKLOG_CAP
            card.waiting = min(waiting, BACKLOG_CAP)
            card.in_flight = int(in_flight)


def _bars(first_hour: datetime, counts: dict[int, tuple[int, int]]) -> list[HourBar]:
    """The 24 bars, delivered at the bottom and failed stacked on top, scaled to the busiest."""
    busiest = max((sum(pair) for pair in counts.values()), default=0) or 1
    bars = []
    for index in range(HOURS):
        delivered, failed = counts.get(index, (0, 0))
        delivered_height = _height(delivered, busiest)
        failed_height = _height(failed, busiest)
        bars.append(
            HourBar(
                index=index,
                start=first_hour + timedelta(hours=index),
                delivered=delivered,
                failed=failed,
                x=index * SLOT_WIDTH + (SLOT_WIDTH - BAR_WIDTH) // 2,
                delivered_y=round(CHART_HEIGHT - delivered_height, 2),
                delivered_height=delivered_height,
                failed_y=round(CHART_HEIGHT - delivered_height - failed_height, 2),
                failed_height=failed_height,
            )
        )
    return bars


def _height(count: int, busiest: int) -> float:
    if not count:
        return 0.0
    return round(max(MIN_BAR, CHART_HEIGHT * count / busiest), 2)
