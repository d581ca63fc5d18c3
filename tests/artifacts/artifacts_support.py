"""Helpers for the artifacts tests (fixtures are in conftest.py)."""
from __future__ import annotations

import json
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "AKIAARTIFACTSTEST01"
SECRET_KEY = "artifacts-test-secret-key-0123456789abcd"
def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@dataclass
class S3Server:
    kind: str
    endpoint: str
    validates_signatures: bool

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY,
                            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))

    def new_bucket(self) -> str:
        name = f"art-{uuid.uuid4().hex[:12]}"
        client = self.client()
        deadline = time.monotonic() + 20
        while True:  # SeaweedFS accepts connections a moment before it can create buckets
            try:
                client.create_bucket(Bucket=name)
                return name
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)


# ----------------------------------------------------------------------------- completed jobs

def completed_job(organization, *, adapter_dir: Path | None, client: str = "acme-support", base_model: str = "tiny",
                  checkpoints: int = 0, steps: int = 12):
    """A completed job whose outputs are in the configured storage where the pod puts them:
    <prefix>/adapter/*, metrics.json, eval.json, checkpoints/step-<n>/*; MetricPoint and
    Checkpoint rows as the webhook leaves them."""
    from django.utils import timezone

    from artifacts.services import job_output_key
    from artifacts.storage import get_storage
    from tests.jobs.factories import make_running_job
    from training.models import Checkpoint, MetricPoint

    job = make_running_job(organization, status="evaluating", client=client)
    job.base_model = base_model
    job.hyperparameters = {"lora_r": 4, "lora_alpha": 8, "num_epochs": 1, "max_seq_len": 512, "learning_rate": 0.005}
    storage = get_storage()
    out = job_output_key(job)
    if adapter_dir is not None:
        for path in sorted(Path(adapter_dir).iterdir()):
            storage.put_file(f"{out}/adapter/{path.name}", path)
    storage.put_bytes(f"{out}/metrics.json", json.dumps({"steps": []}).encode())
    ev = {"base_perplexity": 812.4, "adapted_perplexity": 640.2, "relative_change": -0.212, "tokens": 1234}
    storage.put_bytes(f"{out}/eval.json", json.dumps(ev).encode())
    MetricPoint.objects.bulk_create([
        MetricPoint(job=job, step=s, attempt=1, values={"loss": 3.0 - 0.1 * s, "learning_rate": 0.005,
                                                        "tokens_per_s": 1000.0 + s, "epoch": s / steps})
        for s in range(1, steps + 1)])
    for n in range(1, checkpoints + 1):
        step = n * 4
        for name in ("adapter/adapter_model.safetensors", "optimizer.pt", "trainer_state.json", "COMPLETE"):
            storage.put_bytes(f"{out}/checkpoints/step-{step}/{name}", b"x" * 100)
        Checkpoint.objects.create(job=job, step=step, attempt=1, uri=storage.uri_for(f"{out}/checkpoints/step-{step}"),
                                  bytes=400)
    job.status = "completed"
    job.finished_at = timezone.now()
    job.adapter_uri = storage.uri_for(f"{out}/adapter")
    job.result = {"eval": ev, "final_metrics": {"step": steps, "loss": 1.8},
                  "artifacts": {"adapter_uri": job.adapter_uri}, "quantized_4bit": False}
    job.save()
    return job
