"""A pod's events that arrive after its job ended (overtaken by `completed`, or sent while a
cancelled pod shuts down): inside POD_EVENT_LATE_WINDOW_S their data is kept and nothing else
happens; after it they get 410 and the secret is erased."""
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from billing.models import JobCost
from tests.jobs.factories import make_running_job, pod_event, signed_post
from training import states
from training.models import Checkpoint, JobEvent, MetricPoint, TrainingJob

pytestmark = pytest.mark.django_db


def _end(job, how: str, client) -> None:
    """Bring a training job to its end the way production does."""
    from training.services.jobs import job_cancel

    if how == states.CANCELLED:
        job_cancel(job_id=job.pk)
        return
    data = {"adapter_uri": "file:///adapter", "final_metrics": {"step": 5, "total_steps": 10}} \
        if how == states.COMPLETED else {"error_class": "cuda_oom", "message": "CUDA out of memory"}
    response = signed_post(client, pod_event(job, 100, how, step=5, data=data), job.webhook_secret)
    assert response.status_code == 200 and response.json()["status"] == how


def _frozen(job) -> dict:
    """Everything about a job that a late event must not change."""
    row = TrainingJob.objects.filter(pk=job.pk).values(
        "status", "stage", "finished_at", "adapter_uri", "result", "error_class", "error_message", "stage_times",
        "attempt", "resume_from", "interruptions", "last_event_at").get()
    row["moves"] = list(JobEvent.objects.filter(job=job, type="transition").values_list("to_status", flat=True))
    row["cost"] = JobCost.objects.filter(job=job).values().first()
    return row


@pytest.mark.parametrize("how", [states.COMPLETED, states.FAILED, states.CANCELLED])
def test_late_events_keep_their_data_and_change_nothing_else(how, organization, make_user, client, fake, settings,
                                                             monkeypatch, django_capture_on_commit_callbacks):
    from config.celery import app

    settings.BILLING_EVENT_METER_INTERVAL_S = 0  # any event that reached billing would meter
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    monkeypatch.setitem(app.conf, "task_always_eager", True)  # side effects would run here and now
    user = make_user("late", organization)
    user.email = "late@example.com"
    user.save()
    job = make_running_job(organization, status=states.TRAINING, created_by=user)
    signed_post(client, pod_event(job, 1, "metrics", step=3, data={"loss": 2.0, "total_steps": 10}), job.webhook_secret)
    _end(job, how, client)
    job.refresh_from_db()
    secret, before, step_before = job.webhook_secret, _frozen(job), job.current_step
    assert secret and job.finished_at, "the secret outlives the terminal move by the late window"
    fake.reset()

    late = [
        (pod_event(job, 4, "metrics", step=4, data={"loss": 1.9, "total_steps": 10}), True),
        (pod_event(job, 5, "checkpoint_saved", step=4, data={"step": 4, "uri": "file:///ckpt/step-4"}), True),
        (pod_event(job, 6, "log", data={"message": "late line"}), True),
        (pod_event(job, 2, "metrics", step=2, data={"loss": 2.1, "total_steps": 10}), True),  # older: kept, no regress
        (pod_event(job, 7, "stage_changed", data={"stage": "evaluating"}), False),
        (pod_event(job, 8, "completed", step=10, data={"adapter_uri": "file:///other",
                                                       "final_metrics": {"step": 10, "total_steps": 10}}), False),
        (pod_event(job, 9, "failed", data={"error_class": "nan_loss", "message": "late failure"}), False),
        (pod_event(job, 10, "interrupted", step=4, data={"checkpoint_uri": "file:///ckpt/step-9",
                                                         "checkpoint_step": 9}), False),
        (pod_event(job, 11, "heartbeat"), False),
    ]
    with django_capture_on_commit_callbacks(execute=True):
        for ev, applies in late:
            response = signed_post(client, ev, secret)
            assert response.status_code == 200, response.content
            body = response.json()
            assert (body["stored"], body["applied"], body["status"]) == (True, applies, how), (ev.type, body)

    job.refresh_from_db()
    assert _frozen(job) == before  # status, stage, result, error, moves, cost: all as they were
    assert mail.outbox == [] and fake.methods_called() == []  # no notification, no second terminate
    # The data is kept: points, the checkpoint, progress forward only.
    assert set(MetricPoint.objects.filter(job=job).values_list("step", flat=True)) == {2, 3, 4}
    assert list(Checkpoint.objects.filter(job=job).values_list("step", flat=True)) == [4]  # not the interrupted one
    assert job.current_step == max(step_before, 4) and job.total_steps == 10
    assert JobEvent.objects.filter(job=job, source="pod", event_id__in=[ev.event_id for ev, _ in late]).count() == len(late)
    # The notification would have been sent, had a late event asked for it.
    from training.notifications import notify_job

    assert notify_job(job_id=job.pk, kind=states.FAILED)["email"] == 1


def test_after_the_late_window_events_get_410_and_the_secret_is_erased(organization, client, settings):
    settings.POD_EVENT_LATE_WINDOW_S = 45
    job = make_running_job(organization, status=states.TRAINING)
    secret = job.webhook_secret
    _end(job, states.COMPLETED, client)
    late = pod_event(job, 1, "metrics", step=6, data={"loss": 1.0})
    assert signed_post(client, late, secret).json()["applied"] is True
    # The window is over (finished_at moved back rather than waiting 45 s).
    TrainingJob.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(seconds=46))
    too_late = pod_event(job, 2, "metrics", step=7, data={"loss": 0.9})
    response = signed_post(client, too_late, secret)
    assert response.status_code == 410 and response.json()["error"]["code"] == "job_finished"
    job.refresh_from_db()
    assert job.webhook_secret == ""  # erased by the refused event
    assert not JobEvent.objects.filter(event_id=too_late.event_id).exists()
    assert not MetricPoint.objects.filter(job=job, step=7).exists()
    assert signed_post(client, pod_event(job, 3, "log"), secret).status_code == 410


def test_a_forged_late_event_is_still_refused(organization, client):
    job = make_running_job(organization, status=states.TRAINING)
    _end(job, states.COMPLETED, client)
    response = signed_post(client, pod_event(job, 1, "metrics", step=6), "not-the-secret")
    assert response.status_code == 401
    assert not MetricPoint.objects.filter(job=job).exists()


def test_reconcile_erases_the_secrets_whose_window_is_over(organization, client, settings):
    from training.services.webhook_secrets import pod_event_secret, webhook_secrets_revoke_expired

    settings.POD_EVENT_LATE_WINDOW_S = 45
    recent, old, running = (make_running_job(organization, status=states.TRAINING) for _ in range(3))
    for job in (recent, old):
        _end(job, states.FAILED, client)
    TrainingJob.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(seconds=46))
    # A terminal job written without finished_at (by hand) has no window.
    by_hand = make_running_job(organization, status=states.CANCELLED)

    assert webhook_secrets_revoke_expired() == 2
    assert webhook_secrets_revoke_expired() == 0
    secrets = dict(TrainingJob.objects.filter(pk__in=[recent.pk, old.pk, running.pk, by_hand.pk])
                   .values_list("pk", "webhook_secret"))
    assert secrets[old.pk] == secrets[by_hand.pk] == ""
    assert secrets[recent.pk] and secrets[running.pk]
    assert pod_event_secret(job_id=recent.pk) == secrets[recent.pk]
    assert pod_event_secret(job_id=recent.pk, now=timezone.now() + timedelta(seconds=46)) == ""
