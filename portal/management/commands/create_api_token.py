from django.core.management.base import BaseCommand, CommandError

from portal.models import Membership
from portal.tokens import api_token_create


class Command(BaseCommand):
    help = (
        "Create an API token for a member of a tenant and print it (once). The token acts as "
        "the user with their current role in the tenant."
    )

    def add_arguments(self, parser):
        parser.add_argument("--email", required=True)
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--name", default="Created by staff", help="what the token is for")

    def handle(self, *args, email, tenant, name, **options):
        membership = (
            Membership.objects.select_related("user", "tenant")
            .filter(user__email=email.strip().lower(), tenant__slug=tenant)
            .first()
        )
        if membership is None:
            raise CommandError(f"{email} is not a member of a tenant with slug {tenant!r}.")
        name = name.strip()[:100] or "Created by staff"
        _, token = api_token_create(
            user=membership.user,
            tenant=membership.tenant,
            name=name,
            issued_by="staff (manage.py create_api_token)",
        )
        self.stderr.write(
            f"Token for {membership.user.email} ({membership.role}) in {membership.tenant.name}. "
            "It is shown once; store it now."
        )
        self.stdout.write(token)
