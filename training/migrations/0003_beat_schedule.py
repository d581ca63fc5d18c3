"""Periodic tasks of the jobs app, in django-celery-beat's database scheduler."""
from django.db import migrations

RECONCILE = "training: reconcile pods and jobs"


def create(apps, schema_editor):
    from django.conf import settings

    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=settings.RECONCILE_INTERVAL_S, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=RECONCILE,
        defaults={"task": "training.tasks.pods_reconcile", "interval": every, "enabled": True,
                  "description": "list provider pods, then jobs: terminate orphans, detect lost or silent pods"},
    )


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=RECONCILE).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0002_jobs"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(create, remove)]
