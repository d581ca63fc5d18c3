"""A worker that dies mid-validation loses nothing: the run is taken up again once stale, a run
that kills its worker every time ends failed with the reason, and the automatic validation
delivered twice (even at once) makes one run."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection
from django.utils import timezone

from tests.validation.test_validation_runs import _completed_job
from validation import services, tasks
from validation.models import RunStatus, RunTrigger, ValidationRun


def _left_running(job, *, started_ago_s: float, attempts: int = 1) -> ValidationRun:
    """What a worker killed inside `_execute` leaves behind."""
    run = services.validation_run_request(job_id=job.pk, trigger=RunTrigger.AUTOMATIC)
    ValidationRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, attempts=attempts, started_at=timezone.now() - timedelta(seconds=started_ago_s))
    return run


@pytest.mark.django_db
def test_a_run_left_running_by_a_dead_worker_is_finished_once_stale(organization, make_user, settings):
    settings.VALIDATION_RUN_STALE_S = 600
    job = _completed_job(organization, make_user("owner", organization))
    fresh = _left_running(job, started_ago_s=60)
    # Still within the stale limit: another worker may be executing it; a redelivered task leaves it.
    assert services.validation_runs_to_recover() == []
    assert services.validation_run_execute(run_id=fresh.pk).status == RunStatus.RUNNING

    ValidationRun.objects.filter(pk=fresh.pk).update(started_at=timezone.now() - timedelta(seconds=601))
    assert services.validation_runs_to_recover() == [fresh.pk]
    run = services.validation_run_execute(run_id=fresh.pk)
    assert run.status == RunStatus.COMPLETED and run.attempts == 2, run.errors
    assert run.metrics["perplexity"]["computed"] is False  # no evaluation file for this job: said so
    assert services.validation_runs_to_recover() == []


@pytest.mark.django_db
def test_a_run_that_kills_its_worker_every_time_fails_with_the_reason(organization, make_user, settings):
    settings.VALIDATION_RUN_STALE_S = 600
    settings.VALIDATION_RUN_MAX_ATTEMPTS = 3
    job = _completed_job(organization, make_user("owner", organization))
    run = _left_running(job, started_ago_s=601, attempts=3)
    run = services.validation_run_execute(run_id=run.pk)
    assert run.status == RunStatus.FAILED and run.finished_at is not None
    assert "stopped 3 times" in run.errors[-1] and f"/api/v1/jobs/{job.pk}/validation/" in run.errors[-1]
    # Failed: the job may get a new automatic run (the one-per-job rule counts live runs only).
    again = services.validation_run_for_job(job_id=job.pk)
    assert again.pk != run.pk and again.status == RunStatus.COMPLETED


@pytest.mark.django_db
def test_the_sweep_queues_forgotten_pending_and_stale_running_runs(organization, make_user, settings, monkeypatch):
    settings.VALIDATION_RUN_STALE_S = 600
    settings.VALIDATION_RECOVER_INTERVAL_S = 300
    owner = make_user("owner", organization)
    stale = _left_running(_completed_job(organization, owner), started_ago_s=900)
    forgotten = services.validation_run_request(job_id=_completed_job(organization, owner).pk, trigger="on_demand")
    ValidationRun.objects.filter(pk=forgotten.pk).update(created_at=timezone.now() - timedelta(seconds=301))
    just_queued = services.validation_run_request(job_id=_completed_job(organization, owner).pk, trigger="on_demand")

    from config.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)
    assert tasks.validation_runs_recover() == 2
    statuses = dict(ValidationRun.objects.values_list("pk", "status"))
    assert statuses[stale.pk] == RunStatus.COMPLETED and statuses[forgotten.pk] == RunStatus.COMPLETED
    assert statuses[just_queued.pk] == RunStatus.PENDING  # its own task is on its way


@pytest.mark.django_db
def test_automatic_validation_delivered_twice_makes_one_run_and_finishes_a_pending_one(organization, make_user):
    job = _completed_job(organization, make_user("owner", organization))
    # A worker died right after creating the automatic run: the redelivered task finishes it.
    pending = services.validation_run_request(job_id=job.pk, trigger=RunTrigger.AUTOMATIC)
    tasks.job_validate(str(job.pk))
    tasks.job_validate(str(job.pk))
    runs = list(ValidationRun.objects.filter(job=job))
    assert [r.pk for r in runs] == [pending.pk] and runs[0].status == RunStatus.COMPLETED and runs[0].attempts == 1
    with pytest.raises(IntegrityError):  # the database refuses a second live automatic run
        services.validation_run_request(job_id=job.pk, trigger=RunTrigger.AUTOMATIC)


@pytest.mark.django_db(transaction=True)
def test_concurrent_automatic_deliveries_make_one_run(organization, make_user):
    job = _completed_job(organization, make_user("owner", organization))
    barrier = threading.Barrier(4)
    results, errors = [], []

    def deliver():
        try:
            barrier.wait(timeout=10)
            results.append(services._automatic_run_get_or_create(job_id=job.pk).pk)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert len(results) == 4 and len(set(results)) == 1
    assert ValidationRun.objects.filter(job=job, trigger=RunTrigger.AUTOMATIC).count() == 1
