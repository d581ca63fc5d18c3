"""Periodic task of the validation app, in django-celery-beat's database scheduler."""
from django.db import migrations

RECOVER = "validation: take up runs whose worker stopped"


def create(apps, schema_editor):
    from django.conf import settings

    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=settings.VALIDATION_RECOVER_INTERVAL_S, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=RECOVER,
        defaults={"task": "validation.tasks.validation_runs_recover", "interval": every, "enabled": True,
                  "description": "re-queue stale running and forgotten pending validation runs; fail them after "
                                 "VALIDATION_RUN_MAX_ATTEMPTS"},
    )


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=RECOVER).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("validation", "0002_run_attempts_and_one_automatic"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(create, remove)]
