from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0006_merge_delivery_loop_signature_scheme"),
        ("integrations", "0005_receiver_formats"),
    ]

    operations = []
