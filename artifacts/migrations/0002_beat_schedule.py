"""The artifacts app's periodic task, as a django-celery-beat row (the DatabaseScheduler reads
it): checkpoint retention, hourly (ARTIFACT_PRUNE_INTERVAL_S at migration time).

Now empty: see the note below."""
from django.db import migrations


# Superseded by CELERY_BEAT_SCHEDULE (config/settings/schedule.py), which beat installs at every
# start: a migration ran once and froze the interval settings of that day. Kept, empty, so the
# migration graph of existing databases stays the same.
def _superseded(apps, schema_editor):
    pass


class Migration(migrations.Migration):

    dependencies = [
        ("artifacts", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(_superseded, _superseded),
    ]
