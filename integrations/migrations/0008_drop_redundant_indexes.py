"""Drop single-column foreign-key indexes that a composite index already covers.

Every published event writes an outbox row per destination, and every batch a delivery row
and an attempt row, so each redundant index was maintained on the hottest writes for nothing.
Only the indexes go: the foreign-key constraints stay as they are (Django's AlterField would
drop and re-validate them, scanning each table).
"""

import django.db.models.deletion
from django.db import migrations, models

# (index, table, column): each covered by a composite index that starts with the column.
REDUNDANT = [
    ("integrations_attempt_delivery_id_6229bb9d", "integrations_attempt", "delivery_id"),
    ("integrations_delivery_destination_id_4ea2f930", "integrations_delivery", "destination_id"),
    ("integrations_delivery_tenant_id_b696d777", "integrations_delivery", "tenant_id"),
    (
        "integrations_deliveryevent_delivery_id_8ae934f1",
        "integrations_deliveryevent",
        "delivery_id",
    ),
    (
        "integrations_deliveryevent_destination_id_cd7272f3",
        "integrations_deliveryevent",
        "destination_id",
    ),
    ("integrations_destination_tenant_id_190a4e97", "integrations_destination", "tenant_id"),
    ("integrations_event_tenant_id_f3babc55", "integrations_event", "tenant_id"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0007_merge_receiver_formats"),
        ("portal", "0003_apitoken_expiry"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    sql=f'DROP INDEX IF EXISTS "{index}"',
                    reverse_sql=f'CREATE INDEX IF NOT EXISTS "{index}" ON "{table}" ("{column}")',
                )
                for index, table, column in REDUNDANT
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="attempt",
                    name="delivery",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="attempts",
                        to="integrations.delivery",
                    ),
                ),
                migrations.AlterField(
                    model_name="delivery",
                    name="destination",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="deliveries",
                        to="integrations.destination",
                    ),
                ),
                migrations.AlterField(
                    model_name="delivery",
                    name="tenant",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="portal.tenant",
                    ),
                ),
                migrations.AlterField(
                    model_name="deliveryevent",
                    name="delivery",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="items",
                        to="integrations.delivery",
                    ),
                ),
                migrations.AlterField(
                    model_name="deliveryevent",
                    name="destination",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="integrations.destination",
                    ),
                ),
                migrations.AlterField(
                    model_name="destination",
                    name="tenant",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="portal.tenant",
                    ),
                ),
                migrations.AlterField(
                    model_name="event",
                    name="tenant",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="portal.tenant",
                    ),
                ),
            ],
        ),
    ]
