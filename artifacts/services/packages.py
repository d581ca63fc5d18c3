"""The one-click deployment package: gather the job's adapter, tokenizer, curve, dataset stats
and validation results, build the zip (artifacts.package), store and register it."""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from django.db import transaction

from artifacts.errors import ArtifactNotReady
from artifacts.models import ArtifactKind, ModelArtifact
from artifacts.package import PackageInputs, build_package
from artifacts.package.builder import slugify
from artifacts.storage import get_storage

from .registry import _get_job, job_artifacts_register, job_output_key, job_report_load

logger = logging.getLogger(__name__)


def _dataset_summary(dataset) -> dict:
    stats = dataset.stats or {}
    return {
        "name": dataset.name, "format": dataset.source_format, "conversations": dataset.conversation_count,
        "pairs": dataset.pair_count, "trainable_turns": dataset.trainable_turns,
        "train_conversations": dataset.train_conversations, "val_conversations": dataset.val_conversations,
        "tokens": stats.get("tokens") or {}, "sha256": dataset.content_sha256,
        "distributions": stats.get("distributions") or {},
    }


def job_package_build(*, job_id, report: dict | None = None) -> ModelArtifact:
    """Build, store and register the job's deployment package (kind `package`). Building again
    replaces the job's package (same key). `report` is a validation report dict; without one the
    stored report (report_artifact_store) is used when there is one.

    Raises ArtifactNotReady when the job has no adapter yet."""
    job = _get_job(job_id)
    adapter = ModelArtifact.objects.filter(job=job, kind=ArtifactKind.ADAPTER).first()
    if adapter is None:
        job_artifacts_register(job_id=job.pk)  # completed jobs whose registration has not run yet
        adapter = ModelArtifact.objects.filter(job=job, kind=ArtifactKind.ADAPTER).first()
    if adapter is None:
        raise ArtifactNotReady(f"job {job.pk} has no adapter yet ({job.status}); a package needs a completed job")
    tokenizer = ModelArtifact.objects.filter(job=job, kind=ArtifactKind.TOKENIZER).first()
    storage = get_storage()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="brightrun-package-") as tmp:
        tmp = Path(tmp)
        adapter_files = [f["path"] for f in adapter.files if f["path"] != "README.md"]
        tokenizer_files = [f["path"] for f in (tokenizer.files if tokenizer else [])]
        for rel in adapter_files:
            storage.get_file(f"{adapter.key}/{rel}", tmp / "adapter" / rel)
        for rel in tokenizer_files:
            storage.get_file(f"{tokenizer.key}/{rel}", tmp / "tokenizer" / rel)
        result = job.result or {}
        name = "-".join(p for p in [slugify(job.client) if job.client else "", slugify(job.name) if job.name else "",
                                     f"v{adapter.version}" if adapter.version else str(job.pk)[:8]] if p)
        inputs = PackageInputs(
            name=name,
            base_model=job.base_model,
            adapter_dir=tmp / "adapter", adapter_files=adapter_files,
            tokenizer_dir=tmp / "tokenizer", tokenizer_files=tokenizer_files,
            job={"id": str(job.pk), "client": job.client, "organization": job.organization.name,
                 "finished_at": job.finished_at.strftime("%Y-%m-%d") if job.finished_at else "—",
                 "gpu_type": job.gpu_type, "provider": job.provider, "status": job.status,
                 "stopped_early": bool(result.get("stopped_early")),
                 "quantized_4bit": bool(result.get("quantized_4bit"))},
            dataset=_dataset_summary(job.dataset),
            hyperparameters=dict(job.hyperparameters or {}),
            curve=[{"step": p["step"], **(p["values"] or {})} for p in job.metrics.order_by("step").values("step", "values")],
            eval=result.get("eval"),
            report=report if report is not None else job_report_load(job),
            version=adapter.version,
        )
        built = build_package(inputs, tmp / "out")
        key = f"{job_output_key(job)}/packages/{built.path.name}"
        stored = storage.put_file(key, built.path, "application/zip")
    seconds = round(time.perf_counter() - started, 3)
    with transaction.atomic():
        # A rebuild under another name (the client or job name changed) replaces the old row.
        ModelArtifact.objects.filter(job=job, kind=ArtifactKind.PACKAGE).exclude(key=key).delete()
        artifact, _ = ModelArtifact.objects.update_or_create(
            job=job, kind=ArtifactKind.PACKAGE, key=key,
            defaults={"organization_id": job.organization_id, "client": job.client, "name": built.path.name,
                      "uri": stored.uri, "bytes": stored.bytes, "sha256": stored.sha256,
                      "version": None,
                      "metadata": {"adapter_version": adapter.version, "adapter": str(adapter.pk),
                                   "files": built.checksums, "build_seconds": seconds,
                                   "zip_seconds": built.seconds, "with_report": inputs.report is not None}},
        )
    logger.info("package %s for job %s: %d bytes in %.2f s", key, job.pk, stored.bytes, seconds)
    return artifact
