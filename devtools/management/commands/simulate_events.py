import random
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from devtools.simulator import publish_fake_events
from portal.models import Tenant

TICK_SECONDS = 0.2  # at high rates, a tick's events go out as one batch per tenant


class Command(BaseCommand):
    help = "Publish realistic events at a steady rate (bounded; Ctrl-C stops it)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--rate", type=float, default=5.0, help="events per second")
        parser.add_argument("--count", type=int, default=100_000, help="stop after this many")
        parser.add_argument("--duration", type=float, default=8 * 3600, help="stop after seconds")
        parser.add_argument("--seed", type=int)

    def handle(self, *args, tenant, rate, count, duration, seed, **options):
        tenant_obj = Tenant.objects.filter(slug=tenant).first()
        if tenant_obj is None:
            raise CommandError(f"No tenant with slug {tenant!r}.")
        if not 0 < rate <= 10_000:
            raise CommandError("--rate must be between 0 and 10000 events per second.")
        stop = {"now": False}
        signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
        rng = random.Random(seed)
        children = list(tenant_obj.children.all())
        # Slow rates publish one event per tick; fast ones a batch every TICK_SECONDS.
        per_tick = min(max(1, round(rate * TICK_SECONDS)), settings.EVENTS_BATCH_MAX_COUNT)
        interval = per_tick / rate
        deadline = time.monotonic() + duration
        published = 0
        try:
            while published < count and time.monotonic() < deadline and not stop["now"]:
                started = time.monotonic()
                published += publish_fake_events(
                    tenant=tenant_obj,
                    count=min(per_tick, count - published),
                    rng=rng,
                    children=children,
                )
                time.sleep(max(0.0, interval - (time.monotonic() - started)))
        except KeyboardInterrupt:
            pass
        self.stdout.write(f"simulate_events: published {published} events into {tenant}.")
