"""Periodic task of the validation app, in django-celery-beat's database scheduler.

Now empty: see the note below."""
from django.db import migrations


# Superseded by CELERY_BEAT_SCHEDULE (config/settings/schedule.py), which beat installs at every
# start: a migration ran once and froze the interval settings of that day. Kept, empty, so the
# migration graph of existing databases stays the same.
def _superseded(apps, schema_editor):
    pass


class Migration(migrations.Migration):
    dependencies = [
        ("validation", "0002_run_attempts_and_one_automatic"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(_superseded, _superseded)]
