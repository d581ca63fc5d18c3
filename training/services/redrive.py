"""Sending again the follow-up tasks a broker lost, so that no work is left undone.

Celery tasks are at-least-once while the broker keeps them, but Redis can lose one: the task a
worker's BRPOP took as Redis stopped (kombu's Redis transport; docs/reliability.md, "Known
limit"), or a queue without persistence. Reconcile already sends a launch again for a job stuck
`queued` or `provisioning` without a pod. This module covers the other tasks whose loss would
leave a job's work undone, each found from the database state it should have changed:

- `job_resume` of a job `interrupted` longer than LAUNCH_STALL_S;
- `job_signal_stop` of a job whose stop was asked more than STOP_SIGNAL_RESEND_S ago and whose
  pod is still running (the pod reports `interrupted` within seconds of the signal);
- `job_artifacts_register` and `job_validate` of a job `completed` more than FOLLOWUP_REDRIVE_S
  ago (and less than a day) with no artifact, or no automatic validation run.

Each is sent again at most once per job and attempt: the send is recorded as a `redrive` JobEvent
with a deterministic id first (unique per job), so two reconciles never both send, and the job's
event list says what was done and why. Every task is idempotent, so a task that was only slow,
not lost, does nothing the second time. A lost notification (e-mail, Slack) is not detectable
from the database and is not sent again.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from training import states
from training.models import JobEvent, TrainingJob
from training.services.pods import seconds_in_state

logger = logging.getLogger(__name__)

FOLLOWUP_LOOKBACK = timedelta(days=1)


@dataclass
class RedriveReport:
    resumed: list[str] = field(default_factory=list)
    stop_signalled: list[str] = field(default_factory=list)
    artifacts_registered: list[str] = field(default_factory=list)
    validated: list[str] = field(default_factory=list)


def _claim(job: TrainingJob, what: str, message: str) -> bool:
    """Record that `what` is sent again for this job's attempt; False when it already was."""
    try:
        with transaction.atomic():
            JobEvent.objects.create(job=job, event_id=f"redrive-{what}-{job.attempt}", source=JobEvent.SOURCE_SYSTEM,
                                    type="redrive", attempt=job.attempt, step=job.current_step, message=message)
    except IntegrityError:
        return False
    logger.warning("job %s: %s", job.pk, message)
    return True


def lost_tasks_redrive(*, now=None) -> RedriveReport:
    from artifacts import tasks as artifact_tasks
    from training import tasks
    from validation import tasks as validation_tasks
    from validation.models import RunTrigger

    now = now or timezone.now()
    report = RedriveReport()

    for job in TrainingJob.objects.filter(status=states.INTERRUPTED):
        waited = seconds_in_state(job, states.INTERRUPTED, now)  # infinite when not recorded: left alone
        if math.isfinite(waited) and waited > settings.LAUNCH_STALL_S and _claim(
                job, "resume", f"interrupted for {int(waited)} s and not resumed: the resume task is sent again"):
            tasks.job_resume.delay(str(job.pk))
            report.resumed.append(str(job.pk))

    stopping = TrainingJob.objects.filter(stop_requested=True, status__in=states.POD_STATES).exclude(pod_id="")
    for job in stopping:
        asked = (JobEvent.objects.filter(job=job, type="stop_requested").order_by("-created_at")
                 .values_list("created_at", flat=True).first())
        if asked and (now - asked).total_seconds() > settings.STOP_SIGNAL_RESEND_S and _claim(
                job, "stop", f"stop asked {int((now - asked).total_seconds())} s ago and the pod still runs: "
                             "the stop signal is sent again"):
            tasks.job_signal_stop.delay(str(job.pk))
            report.stop_signalled.append(str(job.pk))

    completed = TrainingJob.objects.filter(
        status=states.COMPLETED, finished_at__lt=now - timedelta(seconds=settings.FOLLOWUP_REDRIVE_S),
        finished_at__gt=now - FOLLOWUP_LOOKBACK)
    for job in completed.filter(artifacts__isnull=True).distinct():
        if _claim(job, "artifacts", "completed without registered artifacts: the registration is sent again"):
            artifact_tasks.job_artifacts_register.delay(str(job.pk))
            report.artifacts_registered.append(str(job.pk))
    validated = completed.filter(validation_runs__trigger=RunTrigger.AUTOMATIC).values("pk")
    for job in completed.exclude(pk__in=validated):
        if _claim(job, "validation", "completed without an automatic validation run: it is sent again"):
            validation_tasks.job_validate.delay(str(job.pk))
            report.validated.append(str(job.pk))
    return report
