"""The pod-event path's hand-written SQL (training.services.pod_events, metric_rollups) gives
what the ORM gave: the locked job with its cost row, stored events and points."""
import uuid
from decimal import Decimal

import pytest
from django.db import transaction

from billing.models import JobCost
from billing.services.jobs import job_cost_create
from tests.jobs.factories import make_running_job, pod_event
from training.models import JobEvent, MetricPoint, TrainingJob
from training.services import pod_events_sql
from training.services.pod_events import pod_event_ingest

pytestmark = pytest.mark.django_db


def _fields(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def test_the_locked_job_equals_the_orms_with_its_cost(organization):
    job = make_running_job(organization, last_loss=1.25)
    TrainingJob.objects.filter(pk=job.pk).update(hyperparameters={"num_epochs": 2, "lr": 1e-4})
    job_cost_create(job=job)
    JobCost.objects.filter(job=job).update(cost=Decimal("1.23"), segments=[{"rate": "0.39", "s": 12}])
    with transaction.atomic():
        mine = pod_events_sql.job_locked(job.pk)
        orm = TrainingJob.objects.select_related("cost").get(pk=job.pk)
        assert _fields(mine) == _fields(orm)
        assert _fields(mine.cost) == _fields(orm.cost)
        assert isinstance(mine.cost.cost, Decimal) and mine.cost.segments == [{"rate": "0.39", "s": 12}]
        assert mine.cost.job is mine  # no query to get back to the job
        assert mine.hyperparameters == {"num_epochs": 2, "lr": 1e-4} and isinstance(mine.pk, uuid.UUID)
        mine.last_loss = 0.5
        mine.save(update_fields=["last_loss"])  # an instance the ORM can save
    assert TrainingJob.objects.get(pk=job.pk).last_loss == 0.5


def test_a_job_without_a_cost_row_and_a_missing_job(organization):
    job = make_running_job(organization)
    JobCost.objects.filter(job=job).delete()
    with transaction.atomic():
        mine = pod_events_sql.job_locked(job.pk)
        with pytest.raises(JobCost.DoesNotExist):
            mine.cost  # noqa: B018 - as with select_related: no row, no cost
        with pytest.raises(TrainingJob.DoesNotExist):
            pod_events_sql.job_locked(uuid.uuid4())


def test_duplicates_and_re_reported_points_through_the_sql_path(organization):
    job = make_running_job(organization)
    first = pod_event(job, 1, "metrics", step=1, data={"points": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]})
    assert pod_event_ingest(job_id=job.pk, event=first, publish=False).stored is True
    assert pod_event_ingest(job_id=job.pk, event=first, publish=False).stored is False  # the same id again
    assert JobEvent.objects.filter(job=job, event_id=first.event_id).count() == 1
    # A later attempt's pod re-runs step 2 with another value, and sends a step twice in one batch.
    job.attempt = 2
    job.save(update_fields=["attempt"])
    again = pod_event(job, 1, "metrics", step=3, attempt=2,
                      data={"points": [{"step": 2, "loss": 1.4}, {"step": 3, "loss": 1.3}, {"step": 3, "loss": 1.2}]})
    assert pod_event_ingest(job_id=job.pk, event=again, publish=False).applied is True
    points = {p.step: (p.attempt, p.values) for p in MetricPoint.objects.filter(job=job)}
    assert points == {1: (1, {"loss": 2.0}), 2: (2, {"loss": 1.4}), 3: (2, {"loss": 1.2})}
    job.refresh_from_db()
    assert job.current_step == 3 and job.last_loss == 1.2
