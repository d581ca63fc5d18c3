"""Thin Celery tasks: ids in, call a service."""
from __future__ import annotations

import logging

from celery import shared_task

from artifacts import services
from artifacts.errors import ArtifactNotReady

logger = logging.getLogger(__name__)


@shared_task(bind=True, max_retries=5, ignore_result=True)
def job_artifacts_register(self, job_id: str):
    """After a job completes (on commit). Idempotent. The pod uploads before it reports
    `completed`, so missing weights are retried a few times for slow storage listings, then logged."""
    try:
        return len(services.job_artifacts_register(job_id=job_id))
    except ArtifactNotReady as exc:
        if self.request.retries < self.max_retries:
            raise self.retry(exc=exc, countdown=min(300, 10 * 2 ** self.request.retries))
        logger.error("job %s: %s", job_id, exc)
        return 0


@shared_task(ignore_result=True)
def job_package_build(job_id: str):
    return str(services.job_package_build(job_id=job_id).pk)


@shared_task(ignore_result=True)
def checkpoints_prune():
    """Beat: delete checkpoints of jobs that ended more than ARTIFACT_CHECKPOINT_RETENTION_DAYS ago."""
    return services.checkpoints_prune()
