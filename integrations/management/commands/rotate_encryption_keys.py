"""Re-encrypt every stored secret and custom header value under the first configured key.

Rotate keys in three steps: put the new key first in FIELD_ENCRYPTION_KEYS and keep the old
ones after it; run this command; then remove the old keys.
"""

from __future__ import annotations

from cryptography.fernet import InvalidToken
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from integrations import crypto
from integrations.models import Destination

ENCRYPTED_FIELDS = ("secret_encrypted", "previous_secret_encrypted", "custom_headers_encrypted")


class Command(BaseCommand):
    help = (
        "Re-encrypt destination secrets and custom header values under the first key of "
        "FIELD_ENCRYPTION_KEYS (all or nothing, in one transaction)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--batch-size", type=int, default=500, help="Rows read and written at a time."
        )

    def handle(self, *args, batch_size: int, **options) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        count = 0
        # Platform-wide on purpose: keys belong to the deployment, not to a tenant.
        rows = Destination.objects.order_by("pk").only("pk", *ENCRYPTED_FIELDS)
        with transaction.atomic():
            last_pk = None
            while True:
                batch_query = rows.select_for_update()
                if last_pk is not None:
                    batch_query = batch_query.filter(pk__gt=last_pk)
                batch = list(batch_query[:batch_size])
                if not batch:
                    break
                for destination in batch:
                    for field in ENCRYPTED_FIELDS:
                        token = getattr(destination, field)
                        if not token:
                            continue
                        try:
                            setattr(destination, field, crypto.rotate(token))
                        except InvalidToken as error:
                            raise CommandError(
                                f"Destination {destination.pk}: {field} cannot be decrypted "
                                "with the configured keys. Nothing was changed."
                            ) from error
                Destination.objects.bulk_update(batch, ENCRYPTED_FIELDS)
                count += len(batch)
                last_pk = batch[-1].pk
        self.stdout.write(f"Re-encrypted the secrets of {count} destination(s).")
