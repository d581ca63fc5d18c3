"""Thin Celery tasks: ids in, call a service."""
from __future__ import annotations

from celery import shared_task

from validation.models import RunTrigger


@shared_task(ignore_result=True, acks_late=True)
def job_validate(job_id: str) -> None:
    """The automatic validation after a job completes (training.services.jobs._after_move on
    COMPLETED). Idempotent: the job's one automatic run is created once and executed once; a
    redelivery takes up a run a dead worker left pending."""
    from validation import services

    try:
        services.validation_run_for_job(job_id=job_id, trigger=RunTrigger.AUTOMATIC)
    except services.ValidationNotReady:
        return  # not completed (or gone): nothing to validate


@shared_task(ignore_result=True, acks_late=True)
def validation_run_execute(run_id: str) -> None:
    """An on-demand run created by the API (services.validation_run_request)."""
    from validation import services

    services.validation_run_execute(run_id=run_id)


@shared_task(ignore_result=True)
def validation_runs_recover() -> int:
    """Beat, every VALIDATION_RECOVER_INTERVAL_S: queue the runs no worker is executing."""
    from validation import services

    run_ids = services.validation_runs_to_recover()
    for run_id in run_ids:
        validation_run_execute.delay(str(run_id))
    return len(run_ids)
