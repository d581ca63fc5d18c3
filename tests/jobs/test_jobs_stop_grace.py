"""A user's stop (the OpenAI API's pause, stop early) gives the pod a long grace to finish a slow
step and write its checkpoint (POD_STOP_GRACE_S), not the terminate grace; and a pod that ends
without reporting its stop keeps the user's reason in the job's history."""
import pytest

from tests.jobs.factories import make_running_job
from training import states
from training.models import Checkpoint, JobEvent

pytestmark = pytest.mark.django_db


class RecordingProvider:
    def __init__(self):
        self.calls = []

    def stop(self, pod_id, *, grace_s):
        self.calls.append(("stop", pod_id, grace_s))
        return True

    def terminate(self, pod_id):
        self.calls.append(("terminate", pod_id))
        return True


def test_signal_stop_uses_the_stop_grace(organization, settings, monkeypatch):
    from training.services import pods

    settings.POD_STOP_GRACE_S = 321
    recorder = RecordingProvider()
    monkeypatch.setattr(pods, "get_provider", lambda name: recorder)
    job = make_running_job(organization, status=states.TRAINING)
    pods.job_signal_stop(job_id=job.pk)
    assert recorder.calls == [("stop", job.pod_id, 321)]


def test_local_provider_stop_passes_its_grace(monkeypatch, tmp_path):
    from training.providers.local import LocalProvider

    provider = LocalProvider.__new__(LocalProvider)
    seen = {}
    monkeypatch.setattr(LocalProvider, "_stop", lambda self, pod_id, *, by, grace_s=None: seen.update(
        pod_id=pod_id, by=by, grace_s=grace_s) or True)
    assert provider.stop("pod-1", grace_s=300) is True
    assert seen == {"pod_id": "pod-1", "by": "user", "grace_s": 300}


@pytest.mark.parametrize("checkpoint", [False, True])
def test_pod_gone_during_a_pause_keeps_the_pause_reason(organization, checkpoint):
    from training.services import pods

    job = make_running_job(organization, status=states.TRAINING)
    if checkpoint:
        Checkpoint.objects.create(job=job, step=4, uri="file:///ckpt/step-4")
    job.stop_requested = True
    job.save(update_fields=["stop_requested"])
    JobEvent.objects.create(job=job, event_id="stop-x", source=JobEvent.SOURCE_SYSTEM, type="stop_requested",
                            attempt=job.attempt, message="paused by eng (OpenAI API)")
    assert pods._interrupt(job.pk, "the pod is gone (terminated by the cloud or lost)")
    job.refresh_from_db()
    last = job.events.filter(type="transition").order_by("-created_at").first()
    assert last.message.startswith("paused by eng (OpenAI API); the pod ended before reporting its stop")
    assert job.status == (states.COMPLETED if checkpoint else states.CANCELLED)
    from finetuning.serializers import _message

    level, text = _message(last, 0)
    assert ("checkpoint at step 4 is kept" in text) if checkpoint else ("before its first checkpoint" in text)
