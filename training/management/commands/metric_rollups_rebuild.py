"""Recompute the chart rollups (MetricRollup) of some jobs, or of every job with metric points,
from the points themselves: after points were written outside the pod-event path (a bulk load, a
restore of the points table alone) or to check the rollups."""
from __future__ import annotations

from django.core.management.base import BaseCommand

from training.models import MetricPoint
from training.services.metric_rollups import metric_rollups_rebuild


class Command(BaseCommand):
    help = __doc__.splitlines()[0]

    def add_arguments(self, parser):
        parser.add_argument("--job", action="append", default=[], help="a job id (repeatable); default: every job")

    def handle(self, *args, job, **options):
        job_ids = job or list(MetricPoint.objects.order_by().values_list("job_id", flat=True).distinct())
        rows = 0
        for job_id in job_ids:
            rows += metric_rollups_rebuild(job_id=job_id)
        self.stdout.write(f"{len(job_ids)} jobs, {rows} rollup rows")
