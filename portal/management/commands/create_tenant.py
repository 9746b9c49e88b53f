from django.core.management.base import BaseCommand, CommandError

from portal.models import Tenant
from portal.services import tenant_create


class Command(BaseCommand):
    help = "Create a tenant (or update the one with this slug)."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--slug", required=True)
        parser.add_argument("--parent", help="slug of the parent tenant")

    def handle(self, *args, name, slug, parent, **options):
        parent_tenant = None
        if parent:
            parent_tenant = Tenant.objects.filter(slug=parent).first()
            if parent_tenant is None:
                raise CommandError(f"No tenant with slug {parent!r}.")
        tenant = tenant_create(name=name, slug=slug, parent=parent_tenant)
        self.stdout.write(self.style.SUCCESS(f"Tenant {tenant.name} ({tenant.slug}) is ready."))
