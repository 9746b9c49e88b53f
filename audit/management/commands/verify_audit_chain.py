"""Verify tenants' audit hash chains from the command line (cron, or chains too long for a page).

Save the heads it prints (`oneprotect-audit-head:<tenant>:<sequence>:<hash>`) somewhere the
database's writers cannot reach; `--expect-head FILE` then also detects a chain cut off or
rewritten after those heads were saved.
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.services import parse_heads, verify_chain
from portal.models import Tenant


class Command(BaseCommand):
    help = "Verify the audit hash chain of one tenant (--tenant) or of every tenant."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="slug of the tenant to verify (default: all)")
        parser.add_argument(
            "--expect-head",
            metavar="FILE",
            help="a file of saved heads (one line per tenant, as this command prints them)",
        )

    def handle(self, *args, tenant: str | None, expect_head: str | None, **options) -> None:
        tenants = Tenant.objects.order_by("slug")
        if tenant:
            tenants = tenants.filter(slug=tenant)
            if not tenants.exists():
                raise CommandError(f"No tenant with slug {tenant!r}.")
        expected = {}
        if expect_head:
            try:
                text = Path(expect_head).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise CommandError(f"Cannot read {expect_head}: {error}") from error
            expected = {head.tenant_slug: head for head in parse_heads(text)}
            if not expected:
                raise CommandError(f"{expect_head} holds no chain head.")
            known = set(Tenant.objects.filter(slug__in=expected).values_list("slug", flat=True))
            if tenant:
                expected = {slug: head for slug, head in expected.items() if slug == tenant}
            elif missing := sorted(set(expected) - known):
                raise CommandError(f"Saved heads name unknown tenants: {', '.join(missing)}")
        broken = []
        for each in tenants.iterator():
            result = verify_chain(each, expect_head=expected.get(each.slug))
            if result.ok:
                self.stdout.write(
                    f"{each.slug}: chain intact, {result.checked} entries verified. "
                    f"Head: {result.head}"
                )
                continue
            broken.append(each.slug)
            entry = result.broken_entry
            if entry is None:
                self.stderr.write(f"{each.slug}: {result.reason}")
                continue
            self.stderr.write(
                f"{each.slug}: entry #{entry.sequence} at {entry.created_at:%Y-%m-%d %H:%M:%S %Z} "
                f"({entry.action}) has been altered or removed: {result.reason}"
            )
        if broken:
            raise CommandError(f"Audit chain broken for: {', '.join(broken)}")
