"""Thin Celery tasks: ids in, call a service. Tasks touching pods are idempotent and ack late
(settings); only errors that can pass on their own are retried, with backoff and a limit."""
from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from billing.services import enforcement
from training.providers import ProviderError
from training.services import jobs, pods
from training.services.outbox import outbox_relay
from training.services.redrive import lost_tasks_redrive
from training.services.webhook_secrets import webhook_secrets_revoke_expired

logger = logging.getLogger(__name__)


@shared_task(bind=True, max_retries=None)
def job_launch(self, job_id: str):
    try:
        outcome = pods.job_launch(job_id=job_id)
    except ProviderError as exc:
        if exc.transient and self.request.retries < settings.LAUNCH_MAX_RETRIES:
            delay = min(300, 5 * 2 ** self.request.retries)
            logger.warning("launch of %s failed (%s); retry %d in %d s", job_id, exc, self.request.retries + 1, delay)
            raise self.retry(exc=exc, countdown=delay)
        pods.job_launch_failed(job_id=job_id, error=exc)
        return "failed"
    return outcome.action


@shared_task(bind=True, max_retries=30)
def job_terminate(self, job_id: str):
    try:
        pods.job_pod_terminate(job_id=job_id)
    except pods.PodStillAlive as exc:
        raise self.retry(exc=exc, countdown=min(60, 2 * 2 ** min(self.request.retries, 5)))
    except ProviderError as exc:
        if not exc.transient:
            raise
        raise self.retry(exc=exc, countdown=min(60, 2 * 2 ** min(self.request.retries, 5)))


@shared_task(bind=True, max_retries=30)
def pod_terminate(self, provider_name: str, pod_id: str):
    from training.providers import get_provider

    try:
        if not get_provider(provider_name).terminate(pod_id):
            raise pods.PodStillAlive(pod_id)
    except (pods.PodStillAlive, ProviderError) as exc:
        raise self.retry(exc=exc, countdown=min(60, 2 * 2 ** min(self.request.retries, 5)))
    # Billed to the job whose launch rented it (found by the pod id), until now.
    pods.pod_gone_record(pod_id=pod_id, how="terminated (superseded launch)")


@shared_task
def job_signal_stop(job_id: str):
    pods.job_signal_stop(job_id=job_id)


@shared_task(bind=True, max_retries=None)
def job_resume(self, job_id: str):
    try:
        pods.job_resume(job_id=job_id)
    except ProviderError as exc:
        if exc.transient and self.request.retries < settings.LAUNCH_MAX_RETRIES:
            raise self.retry(exc=exc, countdown=min(300, 5 * 2 ** self.request.retries))
        pods.job_launch_failed(job_id=job_id, error=exc)


@shared_task
def pods_reconcile():
    """Beat, every RECONCILE_INTERVAL_S. A Redis lock keeps two schedulers from overlapping;
    overlapping would be harmless anyway (every action is idempotent), only wasteful."""
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    lock = client.lock("brightrun:reconcile", timeout=max(60, settings.RECONCILE_INTERVAL_S * 2), blocking=False)
    if not lock.acquire(blocking=False):
        return "skipped: another reconcile is running"
    try:
        # Follow-ups of state moves the broker did not take at the time (training/services/outbox.py).
        relayed = outbox_relay()
        report = pods.pods_reconcile()
        # Finished jobs' webhook secrets whose late window is over, for jobs no late event touched.
        revoked = webhook_secrets_revoke_expired()
        # Follow-up tasks the broker lost (resume, stop signal, artifacts, validation): sent again.
        redriven = lost_tasks_redrive()
        # Dataset statistics whose background task was lost.
        from training.services.datasets import dataset_stats_redrive

        stats_redriven = dataset_stats_redrive()
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            pass
    return {**report.__dict__, "secrets_revoked": revoked, "redriven": redriven.__dict__,
            "dataset_stats_redriven": stats_redriven, "outbox_relayed": relayed}


@shared_task(bind=True, max_retries=5)
def job_notify(self, job_id: str, kind: str):
    from training.notifications import notify_job

    try:
        return notify_job(job_id=job_id, kind=kind)
    except Exception as exc:  # noqa: BLE001 - e-mail and Slack outages pass; retry a few times
        raise self.retry(exc=exc, countdown=30 * 2 ** self.request.retries)


@shared_task
def dataset_stats_compute(dataset_id: str):
    """Exact token counts of an imported dataset (seconds on a large file), off the upload
    request. Idempotent; DATASET_STATS_REDRIVE_S sends it again if the broker lost it."""
    from training.services.datasets import dataset_stats_compute as compute

    dataset = compute(dataset_id=dataset_id)
    return dataset.stats_status if dataset is not None else "gone"


@shared_task(name="training.tasks.budgets_enforce", ignore_result=True, acks_late=True,
             # A pass older than its interval is useless: the next one is already due.
             expires=30)
def budgets_enforce():
    """Billing decides which jobs a hard cap stops; the jobs app's own service stops them."""
    result = enforcement.budgets_enforce(stop=jobs.job_stop_for_budget)
    return {"metered": result.metered, "stopped": [str(j) for j in result.stopped],
            "alerts": len(result.alerts)}
