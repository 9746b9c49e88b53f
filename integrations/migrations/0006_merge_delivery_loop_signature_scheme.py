from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0005_delivery_loop"),
        ("integrations", "0005_signature_scheme"),
    ]

    operations = []
