"""End to end on the local provider through a real Celery worker, Redis, PostgreSQL and the
webhook endpoint: the pod runs the real gpu_worker on the tiny model."""
import json
from pathlib import Path

import pytest

from tests.conftest import SAMPLE_FILE
from tests.jobs.conftest import wait_for
from training import states
from training.models import JobEvent, TrainingJob

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
