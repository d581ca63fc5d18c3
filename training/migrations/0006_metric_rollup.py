"""MetricRollup (downsampling on write, training.services.metric_rollups), and its backfill: the
rollups of every job stored before this migration, recomputed from its points."""
import django.db.models.deletion
from django.db import migrations, models


def backfill(apps, schema_editor):
    # Only the pure computation is imported: the rows are written with the historical model.
    from training.services.metric_rollups import STAT_FIELDS, rollups_from_points

    MetricPoint = apps.get_model("training", "MetricPoint")
    MetricRollup = apps.get_model("training", "MetricRollup")
    db = schema_editor.connection.alias
    for job_id in MetricPoint.objects.using(db).order_by().values_list("job_id", flat=True).distinct():
        points = (MetricPoint.objects.using(db).filter(job_id=job_id).order_by("step")
                  .values_list("step", "values").iterator(chunk_size=2000))
        rows = [MetricRollup(job_id=job_id, key=key, size=size, block=block,
                             **{f: getattr(stats, f) for f in STAT_FIELDS})
                for (key, size, block), stats in rollups_from_points(points).items()]
        MetricRollup.objects.using(db).bulk_create(rows, batch_size=2000)


class Migration(migrations.Migration):

    dependencies = [
        ('training', '0005_event_partial_indexes'),
    ]

    operations = [
        migrations.CreateModel(
            name='MetricRollup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key', models.CharField(max_length=40)),
                ('size', models.PositiveIntegerField()),
                ('block', models.PositiveIntegerField()),
                ('count', models.PositiveIntegerField()),
                ('total', models.FloatField()),
                ('min_value', models.FloatField()),
                ('min_step', models.PositiveIntegerField()),
                ('max_value', models.FloatField()),
                ('max_step', models.PositiveIntegerField()),
                ('first_step', models.PositiveIntegerField()),
                ('first_value', models.FloatField()),
                ('last_step', models.PositiveIntegerField()),
                ('last_value', models.FloatField()),
                ('job', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='metric_rollups', to='training.trainingjob')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('job', 'size', 'key', 'block'), name='one_rollup_per_block')],
            },
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
