"""Rows for job tests, made through the real services where it matters."""
from __future__ import annotations

import json
import secrets
import time

from gpu_worker import signing
from gpu_worker.contracts import PodEvent
from tests.conftest import SAMPLE_FILE


def make_dataset(organization):
    from training.services.datasets import dataset_import

    return dataset_import(organization=organization, source=SAMPLE_FILE.read_bytes(), filename="sample.json").dataset


def make_running_job(organization, *, status="training", attempt=1, provider="fake", **fields):
    """A job as the launch leaves it (pod named, secret set), moved to `status` by the state table."""
    from training import states
    from training.models import TrainingJob
    from training.providers import pod_name

    dataset = make_dataset(organization)
    job = TrainingJob.objects.create(
        organization=organization, dataset=dataset, base_model="tiny", preset="balanced",
        hyperparameters={"num_epochs": 1}, provider=provider, gpu_type="NVIDIA A40", status=states.QUEUED,
        attempt=attempt, webhook_secret=secrets.token_urlsafe(32), **fields,
    )
    job.pod_name = pod_name(job.pk, attempt)
    job.pod_id = fields.get("pod_id", job.pod_name)
    job.status = status
    job.save()
    return job


def move_locked(job_id, to_status, *, reason="", **fields) -> bool:
    """What a service does to move a job: lock it, set `fields`, job_move. False (nothing changed)
    when the table does not allow the move."""
    from django.db import transaction

    from training import states
    from training.services.jobs import job_lock, job_move

    with transaction.atomic():
        job = job_lock(job_id)
        if not states.can_move(job.status, to_status):
            return False
        for name, value in fields.items():
            setattr(job, name, value)
        job_move(job, to_status, reason=reason)
        return True


def pod_event(job, seq, type_, step=0, data=None, attempt=None, timestamp=None) -> PodEvent:
    attempt = job.attempt if attempt is None else attempt
    return PodEvent(event_id=f"evt_{job.pk}_{attempt}_{seq}", job_id=str(job.pk), attempt=attempt, seq=seq,
                    type=type_, timestamp=timestamp or time.time(), step=step, data=data or {})


def signed_post(client, event: PodEvent | None, secret: str, *, body: bytes | None = None, headers=None,
                timestamp=None):
    body = event.to_json() if body is None else body
    hdrs = headers if headers is not None else signing.sign_headers(secret, event.event_id, body, timestamp=timestamp)
    meta = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in hdrs.items()}
    return client.post("/api/v1/pod-events/", data=body, content_type="application/json", **meta)


def training_events(job, steps=6, checkpoint_every=2):
    """A realistic in-order stream of one attempt's events."""
    seq = 0
    events = []

    def add(type_, step=0, data=None):
        nonlocal seq
        seq += 1
        events.append(pod_event(job, seq, type_, step, data))

    for stage in ("preprocessing", "model_loading", "training"):
        add("stage_changed", 0, {"stage": stage})
    for step in range(1, steps + 1):
        add("metrics", step, {"loss": 3.0 - step * 0.1, "learning_rate": 1e-4, "total_steps": steps, "epoch": step / steps})
        if step % checkpoint_every == 0:
            add("checkpoint_saved", step, {"step": step, "uri": f"file:///ckpt/step-{step}", "bytes": 100})
    add("stage_changed", steps, {"stage": "finalizing"})
    add("stage_changed", steps, {"stage": "evaluating"})
    # Like the pod's (gpu_worker/runner.py): the final counts travel with `completed`.
    add("completed", steps, {"adapter_uri": "file:///adapter", "eval": {"base_perplexity": 9.0, "adapted_perplexity": 7.0},
                             "final_metrics": {"step": steps, "total_steps": steps, "epoch": 1.0,
                                               "loss": 3.0 - steps * 0.1}})
    return events


def dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
