"""The outbox (DeliveryEvent) without database constraints on its event and destination.

Every published event writes a row here per matching destination, in the transaction that
inserted the event, for destinations the publisher has locked and found. Checking the two
constraints at commit locked each event and destination row again and cost more than the
inserts (see DeliveryEvent). Django still cascades deletes through both fields.

The `outbox_delivery` index keeps only rows given to a batch: waiting rows skip it.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0008_drop_redundant_indexes"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="deliveryevent",
            name="outbox_delivery",
        ),
        migrations.AlterField(
            model_name="deliveryevent",
            name="destination",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="integrations.destination",
            ),
        ),
        migrations.AlterField(
            model_name="deliveryevent",
            name="event",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="integrations.event",
            ),
        ),
        migrations.AddIndex(
            model_name="deliveryevent",
            index=models.Index(
                condition=models.Q(("delivery__isnull", False)),
                fields=["delivery"],
                name="outbox_delivery",
            ),
        ),
    ]
