"""The billing app's periodic tasks, as django-celery-beat rows (the DatabaseScheduler reads them):
the budget enforcer with metering every 30 s, and the GPU price refresh once a day. The enforcer's
interval here must match BILLING_ENFORCE_INTERVAL_S (docs/billing.md: the overshoot bound).

Now empty: see the note below."""
from django.db import migrations


# Superseded by CELERY_BEAT_SCHEDULE (config/settings/schedule.py), which beat installs at every
# start: a migration ran once and froze the interval settings of that day. Kept, empty, so the
# migration graph of existing databases stays the same.
def _superseded(apps, schema_editor):
    pass


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0002_seed_gpu_catalog"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(_superseded, _superseded),
    ]
