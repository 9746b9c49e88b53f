"""Seed the demo tenants and accounts (idempotent: run it as often as you like)."""

import os

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from integrations.catalogue import EventType
from integrations.models import Destination
from integrations.services import destination_create
from integrations.url_safety import UnsafeURLError, check_url
from portal.models import Role, User
from portal.services import membership_set, tenant_create

DEMO_DESTINATION = "Demo receiver (local)"
DEMO_USERS = [
    ("admin@acme.test", [("acme", Role.ADMIN)]),
    ("operator@acme.test", [("acme", Role.OPERATOR)]),
    ("auditor@acme.test", [("acme", Role.AUDITOR)]),
    ("admin@globex.test", [("globex", Role.ADMIN)]),
    ("multi@acme.test", [("acme", Role.OPERATOR), ("globex", Role.ADMIN)]),
]


class Command(BaseCommand):
    help = "Create the demo tenants (Acme, Acme EMEA, Globex) and demo users."

    @transaction.atomic
    def handle(self, *args, **options):
        acme = tenant_create(name="Acme", slug="acme")
        tenant_create(name="Acme EMEA", slug="acme-emea", parent=acme)
        globex = tenant_create(name="Globex", slug="globex")
        tenants = {"acme": acme, "globex": globex}
        for email, roles in DEMO_USERS:
            user = User.objects.filter(email=email).first()
            if user is None:
                user = User.objects.create_user(email=email, password=settings.DEMO_PASSWORD)
            elif not user.check_password(settings.DEMO_PASSWORD):
                user.set_password(settings.DEMO_PASSWORD)
                user.save(update_fields=["password"])
            for slug, role in roles:
                membership_set(user=user, tenant=tenants[slug], role=role)
        self.after_accounts(tenants)
        self.stdout.write(self.style.SUCCESS("Demo data is ready."))

    def after_accounts(self, tenants) -> None:
        """The demo destination: Acme → the local demo receiver (development only)."""
        url = os.environ.get("DEMO_RECEIVER_URL", "")
        if not url:
            return
        if Destination.objects.filter(tenant=tenants["acme"], name=DEMO_DESTINATION).exists():
            return
        try:
            check_url(url)
        except UnsafeURLError as error:
            self.stdout.write(f"Demo destination skipped: {url} is refused ({error}).")
            return
        admin = User.objects.get(email="admin@acme.test")
        destination_create(
            tenant=tenants["acme"],
            actor=admin,
            data={
                "name": DEMO_DESTINATION,
                "endpoint_url": url,
                "timeout_seconds": 5,
                "event_types": list(EventType.values),
                "include_child_tenants": True,
            },
        )
