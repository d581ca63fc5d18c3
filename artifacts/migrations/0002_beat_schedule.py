"""The artifacts app's periodic task, as a django-celery-beat row (the DatabaseScheduler reads
it): checkpoint retention, hourly (ARTIFACT_PRUNE_INTERVAL_S at migration time)."""
from django.conf import settings
from django.db import migrations

NAME = "artifacts: prune checkpoints of finished jobs"
TASK = "artifacts.tasks.checkpoints_prune"


def schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every = int(getattr(settings, "ARTIFACT_PRUNE_INTERVAL_S", 3600))
    interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
    PeriodicTask.objects.update_or_create(name=NAME, defaults={"task": TASK, "interval": interval, "enabled": True})


def unschedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("artifacts", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(schedule, unschedule),
    ]
