"""Follow-up tasks a broker lost are sent again by reconcile, once, and only when the database
shows their work undone (training/services/redrive.py)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.jobs.test_jobs_lifecycle import _queued
from training import states
from training.models import JobEvent, TrainingJob
from training.services.redrive import lost_tasks_redrive

pytestmark = pytest.mark.django_db


@pytest.fixture
def eager(monkeypatch):
    from config.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)


def _launched(organization, status):
    from training.services.pods import job_launch

    job = _queued(organization)
    job_launch(job_id=job.pk)
    TrainingJob.objects.filter(pk=job.pk).update(status=status, last_event_at=timezone.now())
    job.refresh_from_db()
    return job


def test_an_interrupted_job_whose_resume_was_lost_is_resumed_once(organization, fake, settings, eager):
    settings.LAUNCH_STALL_S = 120
    job = _launched(organization, states.TRAINING)
    fake.vanish(job.pod_id)
    # What a lost `job_resume` leaves: interrupted (the move's own task never ran), for 5 minutes.
    long_ago = (timezone.now() - timedelta(seconds=300)).isoformat()
    TrainingJob.objects.filter(pk=job.pk).update(status=states.INTERRUPTED,
                                                 stage_times={**job.stage_times, states.INTERRUPTED: long_ago})
    just_now = _launched(organization, states.TRAINING)
    TrainingJob.objects.filter(pk=just_now.pk).update(
        status=states.INTERRUPTED, stage_times={states.INTERRUPTED: timezone.now().isoformat()})

    report = lost_tasks_redrive()
    assert report.resumed == [str(job.pk)]
    job.refresh_from_db()
    assert job.status == states.PROVISIONING and job.attempt == 2  # relaunched from its checkpoint
    assert JobEvent.objects.filter(job=job, type="redrive", event_id="redrive-resume-1").count() == 1
    # Once per attempt: a second reconcile sends nothing, and the recent interruption is left alone.
    TrainingJob.objects.filter(pk=job.pk).update(status=states.INTERRUPTED, attempt=1)
    assert lost_tasks_redrive().resumed == []


def test_a_lost_stop_signal_is_sent_again_while_the_pod_runs(organization, fake, settings, eager):
    from training.providers.base import POD_TERMINATED

    settings.STOP_SIGNAL_RESEND_S = 120
    job = _launched(organization, states.TRAINING)
    TrainingJob.objects.filter(pk=job.pk).update(stop_requested=True)
    asked = JobEvent.objects.create(job=job, event_id="stop-x", source=JobEvent.SOURCE_SYSTEM, type="stop_requested",
                                    attempt=job.attempt, message="stopped early by the user")
    assert lost_tasks_redrive().stop_signalled == []  # asked just now: the signal may be on its way
    JobEvent.objects.filter(pk=asked.pk).update(created_at=timezone.now() - timedelta(seconds=121))

    assert lost_tasks_redrive().stop_signalled == [str(job.pk)]
    pod = fake.status(job.pod_id)
    assert pod is None or pod.state == POD_TERMINATED  # the pod got its SIGTERM this time
    assert job.pod_name not in {p.name for p in fake.list("brightrun-")}
    assert lost_tasks_redrive().stop_signalled == []


def test_completed_jobs_without_artifacts_or_validation_get_them_sent_again(organization, settings, monkeypatch):
    from artifacts import tasks as artifact_tasks
    from tests.jobs.factories import make_running_job
    from validation import tasks as validation_tasks
    from validation.models import ValidationRun

    settings.FOLLOWUP_REDRIVE_S = 900
    sent = []
    monkeypatch.setattr(artifact_tasks.job_artifacts_register, "delay", lambda job_id: sent.append(("artifacts", job_id)))
    monkeypatch.setattr(validation_tasks.job_validate, "delay", lambda job_id: sent.append(("validation", job_id)))
    now = timezone.now()

    def completed(name, ago):
        job = make_running_job(organization, status=states.COMPLETED, name=name)
        TrainingJob.objects.filter(pk=job.pk).update(finished_at=now - ago)
        return job

    bare = completed("bare", timedelta(minutes=20))
    validated = completed("validated", timedelta(minutes=20))
    ValidationRun.objects.create(job=validated, organization=organization, trigger="automatic", status="failed")
    completed("recent", timedelta(minutes=5))  # its tasks may still be queued
    completed("old", timedelta(days=2))  # outside the look-back: not ours to redo

    report = lost_tasks_redrive()
    assert sorted(sent) == sorted([("artifacts", str(bare.pk)), ("validation", str(bare.pk)),
                                   ("artifacts", str(validated.pk))])
    assert report.validated == [str(bare.pk)]
    assert {e.event_id for e in JobEvent.objects.filter(job=bare, type="redrive")} == {
        "redrive-artifacts-1", "redrive-validation-1"}
    sent.clear()
    assert lost_tasks_redrive() == type(report)() and sent == []  # each sent again once
