import json

from django.core.management.base import BaseCommand, CommandError

from integrations.events import PublishError, event_publish
from portal.models import Tenant


class Command(BaseCommand):
    help = "Publish one event into a tenant (idempotent on --event-id)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--type", required=True, dest="event_type")
        parser.add_argument("--severity", default="info")
        parser.add_argument("--event-id", help="UUID; generated when omitted")
        parser.add_argument("--time", dest="event_time", help="ISO 8601 or Unix ms")
        parser.add_argument("--payload", default="{}", help="the event as a JSON object")

    def handle(self, *args, tenant, event_type, severity, event_id, event_time, payload, **opts):
        tenant_obj = Tenant.objects.filter(slug=tenant).first()
        if tenant_obj is None:
            raise CommandError(f"No tenant with slug {tenant!r}.")
        try:
            data = json.loads(payload)
        except json.JSONDecodeError as error:
            raise CommandError(f"--payload is not valid JSON: {error}") from error
        try:
            published = event_publish(
                tenant=tenant_obj,
                event_type=event_type,
                severity=severity,
                event_id=event_id,
                event_time=event_time,
                payload=data,
            )
        except PublishError as error:
            raise CommandError(str(error)) from error
        state = "published" if published.created else "already published"
        self.stdout.write(f"{published.event.event_id} {state}")
