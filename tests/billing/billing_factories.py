"""Rows for the billing tests: a dataset imported from the sample file, jobs created directly (the
jobs services are another app's), and audit rows that move a job the way job_move records it."""
from __future__ import annotations

import contextlib
from datetime import datetime, timedelta, timezone as dt_timezone

from django.db import transaction

from billing.services import job_admit
from gpu_worker.presets import resolve_hyperparameters
from training.models import JobEvent, TrainingJob

H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"
LLAMA_70B = "meta-llama/Meta-Llama-3-70B-Instruct"
LLAMA_8B = "meta-llama/Meta-Llama-3-8B-Instruct"
T0 = datetime(2026, 3, 10, 12, 0, 0, tzinfo=dt_timezone.utc)


def sample_dataset(organization, sample_file):
    from training.services.datasets import dataset_import

    return dataset_import(organization=organization, source=sample_file.read_bytes(),
                          filename="brightrun-sample.json").dataset


def job_fields(organization, dataset, **kw):
    overrides = kw.pop("overrides", {})
    preset = kw.pop("preset", "balanced")
    fields = {
        "organization": organization, "dataset": dataset, "base_model": LLAMA_70B, "preset": preset,
        "overrides": overrides, "hyperparameters": resolve_hyperparameters(preset, overrides).to_dict(),
        "provider": "runpod", "gpu_type": H100, "cloud_type": "SECURE", "spot": False,
    }
    fields.update(kw)
    return fields


def make_job(organization, dataset, **kw) -> TrainingJob:
    return TrainingJob.objects.create(**job_fields(organization, dataset, **kw))


def create_and_admit(organization, dataset, **kw) -> TrainingJob:
    """What the jobs service does: create the row and call job_admit in one transaction."""
    with transaction.atomic():
        job = make_job(organization, dataset, **kw)
        job_admit(job=job)
    return job


_seq = {"n": 0}


POD_STATES = ("provisioning", "preprocessing", "model_loading", "training", "finalizing", "evaluating")


def pod_up(job: TrainingJob, at: datetime, *, attempt: int = 1, cost_per_hr=None, pod_id: str | None = None,
           **what) -> str:
    """A pod rented for the job at `at`, recorded the way training.services.pods does."""
    pod_id = pod_id or f"pod{job.pk.hex[:8]}a{attempt}"
    data = {"pod_id": pod_id, "pod_name": f"brightrun-{job.pk}-{attempt}", "cost_per_hr": cost_per_hr,
            "started_at": at.timestamp(), "gpu_type": what.get("gpu_type", job.gpu_type),
            "cloud_type": what.get("cloud_type", job.cloud_type), "spot": what.get("spot", job.spot),
            "bid_per_gpu": str(job.bid_per_gpu) if job.bid_per_gpu is not None else None}
    JobEvent.objects.create(job=job, event_id=f"pod-{data['pod_name']}", source=JobEvent.SOURCE_SYSTEM,
                            type="pod_launched", attempt=attempt, data=data)
    TrainingJob.objects.filter(pk=job.pk).update(pod_id=pod_id)
    return pod_id


def pod_down(job: TrainingJob, at: datetime, *, pod_id: str) -> None:
    """The provider confirmed the pod gone at `at`."""
    JobEvent.objects.create(job=job, event_id=f"pod-gone-{pod_id}", source=JobEvent.SOURCE_SYSTEM, type="pod_gone",
                            data={"pod_id": pod_id, "ended_at": at.timestamp(), "how": "terminated"})


def move(job: TrainingJob, to_status: str, at: datetime, *, attempt: int = 1, pod_timestamp: float | None = None,
         data: dict | None = None, pod: bool = True) -> JobEvent:
    """Record a transition the way the jobs services do (audit row + status), at time `at`.
    With `pod` (the default) a pod comes with the move into the pod states and is gone with the
    move out (at the pod's own timestamp when given), as on a provider that confirms at once."""
    _seq["n"] += 1
    job.refresh_from_db()
    if pod and to_status in POD_STATES and job.status not in POD_STATES:
        pod_up(job, at, attempt=attempt, cost_per_hr=(data or {}).get("cost_per_hr"))
    elif pod and to_status not in POD_STATES and job.status in POD_STATES and job.pod_id:
        end = min(at, datetime.fromtimestamp(pod_timestamp, tz=dt_timezone.utc)) if pod_timestamp else at
        pod_down(job, end, pod_id=job.pod_id)
        TrainingJob.objects.filter(pk=job.pk).update(pod_id="")
    job.refresh_from_db()
    event = JobEvent.objects.create(job=job, event_id=f"t-{_seq['n']}", source=JobEvent.SOURCE_SYSTEM,
                                    type="transition", attempt=attempt, from_status=job.status, to_status=to_status,
                                    pod_timestamp=pod_timestamp, data=data or {})
    JobEvent.objects.filter(pk=event.pk).update(created_at=at)
    updates = {"status": to_status, "attempt": attempt}
    if to_status == "provisioning" and job.launched_at is None:
        updates["launched_at"] = at
    if to_status in ("completed", "failed", "cancelled"):
        updates["finished_at"] = at
    TrainingJob.objects.filter(pk=job.pk).update(**updates)
    job.refresh_from_db()
    return job


def after(seconds: float, start: datetime = T0) -> datetime:
    return start + timedelta(seconds=seconds)


@contextlib.contextmanager
def fake_runpod(settings, monkeypatch, home, *, api_key: str, **server_kwargs):
    """The project's fake RunPod server, with the settings that make the real SDK talk to it."""
    from tests.fakes.runpod_server import FakeRunPodServer
    from training.providers import clear_provider_cache

    monkeypatch.setenv("HOME", str(home))  # the SDK reads ~/.runpod/config.toml
    with FakeRunPodServer(api_key=api_key, terminate_polls=0, **server_kwargs) as server:
        settings.GPU_PROVIDER = "runpod"
        settings.RUNPOD_API_KEY = api_key
        settings.RUNPOD_API_BASE_URL = server.base_url
        settings.RUNPOD_IMAGE = "brightrun/gpu-worker:test"
        clear_provider_cache()
        try:
            yield server
        finally:
            clear_provider_cache()
