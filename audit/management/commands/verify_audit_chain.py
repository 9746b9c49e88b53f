"""Verify tenants' audit hash chains from the command line (cron, or chains too long for a page)."""

from django.core.management.base import BaseCommand, CommandError

from audit.services import verify_chain
from portal.models import Tenant


class Command(BaseCommand):
    help = "Verify the audit hash chain of one tenant (--tenant) or of every tenant."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="slug of the tenant to verify (default: all)")

    def handle(self, *args, tenant: str | None, **options) -> None:
        tenants = Tenant.objects.order_by("slug")
        if tenant:
            tenants = tenants.filter(slug=tenant)
            if not tenants.exists():
                raise CommandError(f"No tenant with slug {tenant!r}.")
        broken = []
        for each in tenants.iterator():
            result = verify_chain(each)
            if result.ok:
                self.stdout.write(f"{each.slug}: chain intact, {result.checked} entries verified.")
                continue
            entry = result.broken_entry
            broken.append(each.slug)
            self.stderr.write(
                f"{each.slug}: entry #{entry.sequence} at {entry.created_at:%Y-%m-%d %H:%M:%S %Z} "
                f"({entry.action}) has been altered or removed: {result.reason}"
            )
        if broken:
            raise CommandError(f"Audit chain broken for: {', '.join(broken)}")
