"""The billing app's periodic tasks, as django-celery-beat rows (the DatabaseScheduler reads them):
the budget enforcer with metering every 30 s, and the GPU price refresh once a day. The enforcer's
interval here must match BILLING_ENFORCE_INTERVAL_S (docs/billing.md: the overshoot bound)."""
from django.db import migrations

TASKS = [
    # name, task, every, period
    ("billing: meter running jobs and enforce budgets", "billing.tasks.budgets_enforce", 30, "seconds"),
    ("billing: refresh GPU prices from RunPod", "billing.tasks.catalog_refresh", 1, "days"),
]


def schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, every, period in TASKS:
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=period)
        PeriodicTask.objects.update_or_create(name=name, defaults={"task": task, "interval": interval, "enabled": True})


def unschedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=[t[0] for t in TASKS]).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0002_seed_gpu_catalog"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(schedule, unschedule),
    ]
