"""Less work per published event: the outbox's one_item_per_event leads with the
event, so it also serves deletes of events and the event index goes; the event's tenant keeps
no database constraint (see Event.tenant). A destination's outbox rows are no longer
cascaded through `destination` (no index starts with it): see DeliveryEvent and
integrations.delivery.outbox.delete_waiting_rows.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('integrations', '0009_outbox_without_constraints'),
        ('portal', '0003_apitoken_expiry'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='deliveryevent',
            name='one_item_per_event',
        ),
        migrations.AlterField(
            model_name='deliveryevent',
            name='destination',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='integrations.destination'),
        ),
        migrations.AlterField(
            model_name='deliveryevent',
            name='event',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='integrations.event'),
        ),
        migrations.AlterField(
            model_name='event',
            name='tenant',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='portal.tenant'),
        ),
        migrations.AddConstraint(
            model_name='deliveryevent',
            constraint=models.UniqueConstraint(fields=('event', 'destination'), name='one_item_per_event'),
        ),
    ]
