"""End to end on the local provider through a real Celery worker, Redis, PostgreSQL and the
webhook endpoint: the pod runs the real gpu_worker on the tiny model."""
import json
from pathlib import Path

import pytest

from tests.conftest import SAMPLE_FILE
from tests.jobs.conftest import wait_for
from training import states
from training.models import JobEvent

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST = {"num_epochs": 1, "max_seq_len": 1024, "micro_batch_size": 2, "gradient_accumulation_steps": 1,
        "lora_r": 4, "lora_alpha": 8}


@pytest.fixture
def dataset(organization):
    from training.services.datasets import dataset_import

    return dataset_import(organization=organization, source=SAMPLE_FILE.read_bytes(), filename="sample.json").dataset


def _create(organization, dataset, user, tiny_model_path, **kw):
    from training.services.jobs import job_create

    return job_create(organization=organization, dataset=dataset, created_by=user, preset="balanced",
                      overrides={**FAST, **kw.pop("overrides", {})}, base_model=str(tiny_model_path), **kw)


def _wait_terminal(job, stack, timeout_s=240):
    def done():
        job.refresh_from_db()
        return job.is_terminal

    try:
        wait_for(done, timeout_s, message=f"job {job.pk} to finish")
    except AssertionError:
        raise AssertionError(f"job stuck in {job.status}; worker log:\n{stack.log()}") from None
    return job


def test_completes_with_adapter_metrics_and_ordered_events(job_stack, organization, make_user, dataset,
                                                           tiny_model_path, storage_root):
    user = make_user("eng", organization)
    job_stack.start_worker()
    job = _create(organization, dataset, user, tiny_model_path)
    job = _wait_terminal(job, job_stack)
    assert job.status == states.COMPLETED, (job.error_class, job.error_message, job_stack.log())

    adapter_dir = Path(job.adapter_uri.removeprefix("file://"))
    assert (adapter_dir / "adapter_model.safetensors").stat().st_size > 0
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert config["r"] == 4

    steps = list(job.metrics.order_by("step").values_list("step", flat=True))
    assert steps == list(range(1, job.total_steps + 1))
    assert job.current_step == job.total_steps > 0

    transitions = list(JobEvent.objects.filter(job=job, type="transition").order_by("created_at", "id")
                       .values_list("to_status", flat=True))
    assert transitions == [states.PROVISIONING, states.PREPROCESSING, states.MODEL_LOADING, states.TRAINING,
                           states.FINALIZING, states.EVALUATING, states.COMPLETED]
    pod_seq = list(JobEvent.objects.filter(job=job, source="pod").order_by("created_at", "id").values_list("seq", flat=True))
    assert pod_seq == sorted(pod_seq)  # stored in the order they were sent
    evaluation = job.result["eval"]
    assert evaluation["adapted_perplexity"] < evaluation["base_perplexity"]
    # The pod is gone afterwards.
    from training.providers import get_provider

    wait_for(lambda: not get_provider("local").list(""), 30, message="the pod to be terminated")


def _adapter_tensors(job):
    from safetensors.numpy import load_file

    return load_file(str(Path(job.adapter_uri.removeprefix("file://")) / "adapter_model.safetensors"))


def test_interrupt_then_automatic_resume_gives_the_same_adapter(job_stack, organization, make_user, dataset,
                                                                tiny_model_path):
    from training.providers import get_provider

    user = make_user("eng", organization)
    job_stack.start_worker()
    hooks = {"sleep_per_step_s": 0.4}
    reference = _wait_terminal(_create(organization, dataset, user, tiny_model_path, test_hooks=hooks), job_stack)
    assert reference.status == states.COMPLETED, reference.error_message

    job = _create(organization, dataset, user, tiny_model_path, test_hooks=hooks)

    def past_a_checkpoint():
        job.refresh_from_db()
        return job.checkpoints.exists() and job.current_step >= 3 and job.pod_id

    wait_for(past_a_checkpoint, 120, interval_s=0.1, message="training past the first checkpoint")
    interrupted_pod = job.pod_id
    assert get_provider("local").interrupt(interrupted_pod)  # SIGTERM, as a spot eviction does
    job = _wait_terminal(job, job_stack)
    assert job.status == states.COMPLETED, (job.error_message, job_stack.log())
    assert job.attempt == 2 and job.interruptions == 1
    resume = JobEvent.objects.get(job=job, type="resume")
    assert resume.data["lost_steps"] == job.lost_steps
    assert resume.data["resumed_step"] >= 2
    statuses = list(JobEvent.objects.filter(job=job, type="transition").values_list("to_status", flat=True))
    assert states.INTERRUPTED in statuses and statuses.count(states.PROVISIONING) == 2

    ours, theirs = _adapter_tensors(job), _adapter_tensors(reference)
    assert ours.keys() == theirs.keys()
    worst = max(float(abs(ours[k] - theirs[k]).max()) for k in ours)
    assert worst <= 1e-6, f"resumed adapter differs by {worst}"


def test_cancel_leaves_no_process_and_late_events_change_nothing(job_stack, organization, make_user, dataset,
                                                                 tiny_model_path, client):
    from gpu_worker import signing
    from gpu_worker.contracts import PodEvent
    from training.services.jobs import job_cancel
    from tests.jobs.conftest import read_pod_json

    user = make_user("eng", organization)
    job_stack.start_worker()
    job = _create(organization, dataset, user, tiny_model_path, test_hooks={"sleep_per_step_s": 1.0})

    def training():
        job.refresh_from_db()
        return job.status == states.TRAINING and job.current_step >= 1

    wait_for(training, 120, message="training to start")
    secret = job.webhook_secret
    job_cancel(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == states.CANCELLED and job.webhook_secret == secret  # kept for the late window

    pods_dir = Path(job_stack.env["LOCAL_PODS_DIR"])

    def no_process():
        for wrapper in pods_dir.glob("*/wrapper.json"):
            info = json.loads(wrapper.read_text())
            for pid in (info.get("pid"), info.get("child_pid"), info.get("pgid")):
                if pid and Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower():
                    return False
        return True

    wait_for(no_process, 40, message="the pod's processes to be gone")
    assert read_pod_json(pods_dir), "the pod was started"

    from billing.models import JobCost

    # What the pod reported while shutting down was kept (late events); now a late `completed`.
    job.refresh_from_db()
    step_before, finished_before = job.current_step, job.finished_at
    moves_before = list(JobEvent.objects.filter(job=job, type="transition").values_list("to_status", flat=True))
    cost_before = JobCost.objects.filter(job=job).values().first()
    late = PodEvent(event_id=f"evt_{job.pk}_{job.attempt}_9999", job_id=str(job.pk), attempt=job.attempt, seq=9999,
                    type="completed", timestamp=__import__("time").time(), step=999, data={"adapter_uri": "file:///x"})
    body = late.to_json()
    response = client.post("/api/v1/pod-events/", data=body, content_type="application/json",
                           **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in signing.sign_headers(secret, late.event_id, body).items()})
    # Inside POD_EVENT_LATE_WINDOW_S: stored for the record, and ignored (a finished job's state is final).
    assert response.status_code == 200, response.content
    assert response.json() == {"stored": True, "applied": False, "duplicate": False, "status": states.CANCELLED}
    job.refresh_from_db()
    assert job.status == states.CANCELLED and job.current_step == step_before and job.adapter_uri == ""
    assert job.finished_at == finished_before and JobEvent.objects.filter(event_id=late.event_id).exists()
    # No move, hence no notification, no settlement, no artifacts: and no charge.
    assert list(JobEvent.objects.filter(job=job, type="transition").values_list("to_status", flat=True)) == moves_before
    assert moves_before.count(states.CANCELLED) == 1
    assert JobCost.objects.filter(job=job).values().first() == cost_before


def test_train_command_waits_and_exits_non_zero_on_failure(job_stack, organization, dataset, tiny_model_path):
    from io import StringIO

    from django.core.management import CommandError, call_command

    job_stack.start_worker()
    out = StringIO()
    sets = [arg for key, value in FAST.items() for arg in ("--set", f"{key}={value}")]
    call_command("train", "--dataset", str(dataset.pk), "--org", organization.slug, "--base-model", str(tiny_model_path),
                 "--provider", "local", "--wait", "--timeout", "240", *sets, stdout=out)
    text = out.getvalue()
    assert "completed: adapter at file://" in text and "step" in text and "loss" in text and "ETA" in text

    with pytest.raises(CommandError) as info:
        call_command("train", "--dataset", str(dataset.pk), "--org", organization.slug, "--base-model",
                     "/nonexistent/model", "--provider", "local", "--wait", "--timeout", "240", *sets, stdout=StringIO())
    assert "failed" in str(info.value) and "model" in str(info.value).lower()
