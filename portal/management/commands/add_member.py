from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from portal.models import Role, Tenant, User
from portal.services import membership_set


class Command(BaseCommand):
    help = "Add a user to a tenant with a role (creating the user when needed)."

    def add_arguments(self, parser):
        parser.add_argument("--email", required=True)
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument("--password", help="password for a new user (validated)")

    def handle(self, *args, email, tenant, role, password, **options):
        tenant_obj = Tenant.objects.filter(slug=tenant).first()
        if tenant_obj is None:
            raise CommandError(f"No tenant with slug {tenant!r}.")
        email = email.strip().lower()
        user = User.objects.filter(email=email).first()
        if user is None:
            if not password:
                raise CommandError("New user: give --password (it is validated).")
            try:
                validate_password(password, User(email=email))
            except ValidationError as error:
                raise CommandError(" ".join(error.messages)) from error
            user = User.objects.create_user(email=email, password=password)
        membership_set(user=user, tenant=tenant_obj, role=role)
        self.stdout.write(self.style.SUCCESS(f"{email} is {role} in {tenant_obj.name}."))
