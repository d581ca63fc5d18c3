"""Thin Celery tasks: ids in, call a service."""
from __future__ import annotations

from celery import shared_task

from validation.models import RunStatus, RunTrigger, ValidationRun


@shared_task(ignore_result=True, acks_late=True)
def job_validate(job_id: str) -> None:
    """The automatic validation after a job completes (training.services.jobs._after_move on
    COMPLETED). Idempotent: a job that already has an automatic run that is not failed gets none."""
    from validation import services

    if (ValidationRun.objects.filter(job_id=job_id, trigger=RunTrigger.AUTOMATIC)
            .exclude(status=RunStatus.FAILED).exists()):
        return
    try:
        services.validation_run_for_job(job_id=job_id, trigger=RunTrigger.AUTOMATIC)
    except services.ValidationNotReady:
        return  # not completed (or gone): nothing to validate


@shared_task(ignore_result=True, acks_late=True)
def validation_run_execute(run_id: str) -> None:
    """An on-demand run created by the API (services.validation_run_request)."""
    from validation import services

    services.validation_run_execute(run_id=run_id)
