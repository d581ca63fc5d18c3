"""A run's attempt count, and at most one automatic run per job that is not failed.

Before the constraint, any job with several live automatic runs (the race the constraint now
settles) keeps its newest and the others are marked failed with the reason."""
from django.db import migrations, models
from django.db.models import Count, Q

DUPLICATE = "superseded: another automatic run of this job was created at the same time"


def fail_duplicates(apps, schema_editor):
    ValidationRun = apps.get_model("validation", "ValidationRun")
    live = ValidationRun.objects.filter(trigger="automatic").exclude(status="failed")
    for row in live.values("job_id").annotate(n=Count("id")).filter(n__gt=1):
        runs = list(live.filter(job_id=row["job_id"]).order_by("-created_at"))
        for run in runs[1:]:
            run.status = "failed"
            run.errors = list(run.errors or []) + [DUPLICATE]
            run.save(update_fields=["status", "errors"])


class Migration(migrations.Migration):

    dependencies = [
        ('validation', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='validationrun',
            name='attempts',
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.RunPython(fail_duplicates, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='validationrun',
            constraint=models.UniqueConstraint(condition=Q(('trigger', 'automatic'), Q(('status', 'failed'), _negated=True)),
                                               fields=('job',), name='valrun_one_live_automatic_per_job'),
        ),
    ]
