"""The periodic django-q2 schedules: the sweeper watchdog and the retention purge."""

from django.db import migrations

SCHEDULES = [
    ("oneprotect: delivery sweeper", "integrations.tasks.sweep_loop", "I", 1),
    ("oneprotect: retention purge", "integrations.tasks.purge_retention", "H", None),
]


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for name, func, schedule_type, minutes in SCHEDULES:
        Schedule.objects.update_or_create(
            name=name,
            defaults={"func": func, "schedule_type": schedule_type, "minutes": minutes,
                      "repeats": -1},
        )


def remove(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0001_initial"),
        ("django_q", "0018_task_success_index"),
    ]

    operations = [migrations.RunPython(create, remove)]
