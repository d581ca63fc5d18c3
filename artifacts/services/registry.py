"""Recording what a job stored: adapter, tokenizer, metrics, checkpoints and reports, with each
client's adapters numbered and one marked current."""
from __future__ import annotations

import csv
import io
import json
import logging
from typing import Any

from django.db import transaction
from django.db.models import Max

from accounts.models import Organization
from artifacts.errors import ArtifactNotFound, ArtifactNotReady
from artifacts.models import ArtifactKind, ModelArtifact
from artifacts.storage import StorageError, get_storage

logger = logging.getLogger(__name__)

# What the worker writes into <output>/adapter/: peft's files, the tokenizer's, and the upload
# manifest (gpu_worker.storage.upload_dir), which is bookkeeping and belongs to neither.
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin", "adapter_config.json", "README.md")
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
NOT_ARTIFACT_FILES = ("manifest.json",)
METRIC_COLUMNS = ("step", "attempt", "epoch", "loss", "learning_rate", "grad_norm", "tokens_per_s",
                  "gpu_memory_mb", "eta_s", "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy")


def job_output_key(job) -> str:
    """The job's storage prefix (the spec's output_uri); training.services.jobs.job_spec_build
    builds the same one."""
    return f"jobs/{job.organization_id}/{job.pk}"


def _adapter_key(job, storage) -> str:
    if job.adapter_uri:
        try:
            return storage.key_for_uri(job.adapter_uri).rstrip("/")
        except StorageError:
            logger.warning("job %s: adapter_uri %s is outside storage; using the job prefix", job.pk, job.adapter_uri)
    return f"{job_output_key(job)}/adapter"


def _entries(storage, base: str, rels: list[str]) -> list[dict[str, Any]]:
    return [{"path": rel, "bytes": storage.size(f"{base}/{rel}"), "sha256": storage.sha256(f"{base}/{rel}")}
            for rel in sorted(rels)]


def _get_job(job_id):
    from training.models import TrainingJob

    job = TrainingJob.objects.select_related("organization", "dataset").filter(pk=job_id).first()
    if job is None:
        raise ArtifactNotFound("no such job", detail={"job": str(job_id)})
    return job


def metrics_export(*, job) -> list:
    """Write the job's training curve (MetricPoint rows) as CSV and JSON next to its outputs.
    Returns the StoredObjects (csv, json)."""
    storage = get_storage()
    points = list(job.metrics.order_by("step").values("step", "attempt", "values"))
    extra = sorted({k for p in points for k in (p["values"] or {})} - set(METRIC_COLUMNS))
    columns = list(METRIC_COLUMNS) + extra
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    rows = []
    for p in points:
        row = {**(p["values"] or {}), "step": p["step"], "attempt": p["attempt"]}
        rows.append(row)
        writer.writerow(row)
    out = job_output_key(job)
    doc = {"job": str(job.pk), "columns": columns, "points": rows, "eval": (job.result or {}).get("eval"),
           "final_metrics": (job.result or {}).get("final_metrics")}
    return [
        storage.put_bytes(f"{out}/exports/training-curve.csv", buf.getvalue().encode(), "text/csv"),
        storage.put_bytes(f"{out}/exports/training-curve.json", json.dumps(doc, indent=1).encode(), "application/json"),
    ]


def _next_version(organization_id, client: str) -> int:
    top = (ModelArtifact.objects.filter(organization_id=organization_id, client=client, kind=ArtifactKind.ADAPTER)
           .aggregate(m=Max("version"))["m"])
    return (top or 0) + 1


def _make_current(artifact: ModelArtifact) -> None:
    """Caller holds the organization's row lock."""
    (ModelArtifact.objects.filter(organization_id=artifact.organization_id, client=artifact.client,
                                  kind=ArtifactKind.ADAPTER, is_current=True)
     .exclude(pk=artifact.pk).update(is_current=False))
    if not artifact.is_current:
        artifact.is_current = True
        artifact.save(update_fields=["is_current"])


def job_artifacts_register(*, job_id) -> list[ModelArtifact]:
    """Record what a completed job left under its output prefix: the adapter (the client's next
    version, made current), its tokenizer, metrics (the worker's metrics.json and eval.json, plus
    CSV/JSON exports of the curve) and its checkpoints.

    Idempotent: calling it again for the same job changes nothing and numbers nothing twice.
    Call it on commit after the job reaches `completed` (the Celery task
    artifacts.tasks.job_artifacts_register does). Raises ArtifactNotReady when the adapter
    weights are not in storage."""
    job = _get_job(job_id)
    from training import states

    if job.status != states.COMPLETED:
        logger.info("job %s is %s, not completed: no artifacts registered", job.pk, job.status)
        return []
    storage = get_storage()
    out = job_output_key(job)
    adapter_key = _adapter_key(job, storage)

    # Storage reads (listing, hashing) happen before any lock is taken.
    rels = [k[len(adapter_key) + 1:] for k in storage.list_keys(adapter_key + "/")]
    if not any(r in WEIGHT_FILES for r in rels):
        raise ArtifactNotReady(
            f"job {job.pk} is completed but no adapter weights are stored under {adapter_key}/; "
            "the pod's upload may have failed: check the job's events, then retry the job",
            detail={"key": adapter_key},
        )
    existing = {(a.kind, a.key) for a in ModelArtifact.objects.filter(job=job)}
    adapter_files = [r for r in rels if r in ADAPTER_FILES]
    tokenizer_files = [r for r in rels if r not in ADAPTER_FILES and r not in NOT_ARTIFACT_FILES]
    folders: dict[str, list[dict]] = {}
    if (ArtifactKind.ADAPTER, adapter_key) not in existing:
        folders[ArtifactKind.ADAPTER] = _entries(storage, adapter_key, adapter_files)
    if tokenizer_files and (ArtifactKind.TOKENIZER, adapter_key) not in existing:
        folders[ArtifactKind.TOKENIZER] = _entries(storage, adapter_key, tokenizer_files)

    singles = []  # (kind, name, StoredObject-like dict, metadata)
    for stored in metrics_export(job=job):
        singles.append((ArtifactKind.METRICS, stored.key.rsplit("/", 1)[-1], stored.key, stored.uri, stored.bytes,
                        stored.sha256, {"source": "control plane export"}))
    for name in ("metrics.json", "eval.json"):
        key = f"{out}/{name}"
        if (ArtifactKind.METRICS, key) not in existing and storage.exists(key):
            singles.append((ArtifactKind.METRICS, name, key, storage.uri_for(key), storage.size(key),
                            storage.sha256(key), {"source": "pod"}))

    checkpoints = []
    for ckpt in job.checkpoints.filter(complete=True).order_by("step"):
        try:
            key = storage.key_for_uri(ckpt.uri).rstrip("/")
        except StorageError:
            continue  # a checkpoint outside this storage (another backend, a test URI) is not ours to keep
        checkpoints.append((key, ckpt))

    with transaction.atomic():
        # One lock per organization serializes version numbers of concurrent completions.
        Organization.objects.select_for_update().get(pk=job.organization_id)
        common = {"organization_id": job.organization_id, "client": job.client}
        if ArtifactKind.ADAPTER in folders:
            files = folders[ArtifactKind.ADAPTER]
            weights = next(f for f in files if f["path"] in WEIGHT_FILES)
            adapter, created = ModelArtifact.objects.get_or_create(
                job=job, kind=ArtifactKind.ADAPTER, key=adapter_key,
                defaults={**common, "name": "adapter", "uri": storage.uri_for(adapter_key),
                          "bytes": sum(f["bytes"] for f in files), "sha256": weights["sha256"], "files": files,
                          "version": _next_version(job.organization_id, job.client),
                          "metadata": {"base_model": job.base_model, "eval": (job.result or {}).get("eval")}},
            )
            if created:
                _make_current(adapter)
        if ArtifactKind.TOKENIZER in folders:
            files = folders[ArtifactKind.TOKENIZER]
            ModelArtifact.objects.get_or_create(
                job=job, kind=ArtifactKind.TOKENIZER, key=adapter_key,
                defaults={**common, "name": "tokenizer", "uri": storage.uri_for(adapter_key),
                          "bytes": sum(f["bytes"] for f in files), "files": files},
            )
        for kind, name, key, uri, size, sha, meta in singles:
            ModelArtifact.objects.update_or_create(
                job=job, kind=kind, key=key,
                defaults={**common, "name": name, "uri": uri, "bytes": size, "sha256": sha, "metadata": meta},
            )
        for key, ckpt in checkpoints:
            ModelArtifact.objects.get_or_create(
                job=job, kind=ArtifactKind.CHECKPOINT, key=key,
                defaults={**common, "name": f"step-{ckpt.step}", "uri": storage.uri_for(key), "bytes": ckpt.bytes,
                          "metadata": {"step": ckpt.step, "attempt": ckpt.attempt}},
            )
    return list(ModelArtifact.objects.filter(job=job).order_by("kind", "key"))


def adapter_set_current(*, artifact_id) -> ModelArtifact:
    """Make this adapter its client's current one (e.g. to roll back to an earlier version)."""
    with transaction.atomic():
        artifact = ModelArtifact.objects.filter(pk=artifact_id, kind=ArtifactKind.ADAPTER).first()
        if artifact is None:
            raise ArtifactNotFound("no such adapter")
        Organization.objects.select_for_update().get(pk=artifact.organization_id)
        artifact.refresh_from_db()
        _make_current(artifact)
    return artifact


def report_artifact_store(*, job_id, report_json, html: str | bytes | None = None,
                          pdf: bytes | None = None) -> list[ModelArtifact]:
    """Store a validation report (JSON, and optionally its HTML and PDF renderings) as `report`
    artifacts of the job. Storing again replaces the previous report of that job.

    `report_json` is a dict (or its JSON text). The deployment package's model card reads it:
    `metrics` as [{name, value, ci_low, ci_high, n}] and `summary` are shown when present."""
    job = _get_job(job_id)
    storage = get_storage()
    base = f"{job_output_key(job)}/reports"
    if isinstance(report_json, (bytes, bytearray)):
        body = bytes(report_json)
        json.loads(body)  # must be JSON
    elif isinstance(report_json, str):
        body = report_json.encode()
        json.loads(body)
    else:
        body = json.dumps(report_json, indent=1, default=str).encode()
    items = [("validation.json", body, "application/json")]
    if html is not None:
        items.append(("validation.html", html.encode() if isinstance(html, str) else html, "text/html"))
    if pdf is not None:
        items.append(("validation.pdf", pdf, "application/pdf"))
    stored = [(name, storage.put_bytes(f"{base}/{name}", data, ctype), ctype) for name, data, ctype in items]
    rows = []
    with transaction.atomic():
        for name, obj, ctype in stored:
            row, _ = ModelArtifact.objects.update_or_create(
                job=job, kind=ArtifactKind.REPORT, key=obj.key,
                defaults={"organization_id": job.organization_id, "client": job.client, "name": name,
                          "uri": obj.uri, "bytes": obj.bytes, "sha256": obj.sha256,
                          "metadata": {"content_type": ctype}},
            )
            rows.append(row)
    return rows


def job_report_load(job) -> dict | None:
    """The job's stored validation report (JSON), if any."""
    row = (ModelArtifact.objects.filter(job=job, kind=ArtifactKind.REPORT, name="validation.json", pruned_at=None)
           .first())
    if row is None:
        return None
    try:
        return json.loads(get_storage().get_bytes(row.key))
    except (StorageError, ValueError):
        logger.warning("job %s: the stored validation report could not be read", job.pk)
        return None
