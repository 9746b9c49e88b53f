from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0004_attempt_destination"),
    ]

    operations = [
        migrations.AddField(
            model_name="destination",
            name="signature_scheme",
            field=models.CharField(
                choices=[
                    ("oneprotect", "OneProtect: HMAC-SHA256 of the body (sha256=<hex>)"),
                    ("standard_webhooks", "Standard Webhooks (replay-protected)"),
                ],
                default="oneprotect",
                max_length=24,
            ),
        ),
    ]
