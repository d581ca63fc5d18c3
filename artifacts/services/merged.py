"""Merged model export: the adapter folded into the base weights (peft's merge_and_unload), for
clients who serve one model without LoRA support. Only where the `train` extra is installed
(torch, transformers, peft are imported inside the function) and only for base models that fit in
memory in full precision (ARTIFACT_MERGE_MAX_BYTES)."""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from django.conf import settings
from django.db import transaction

from artifacts.errors import ArtifactNotReady, MergeNotPossible
from artifacts.models import ArtifactKind, ModelArtifact
from artifacts.storage import get_storage

from .registry import _entries, _get_job, job_output_key

logger = logging.getLogger(__name__)


def _weights_bytes(base: Path) -> int:
    return sum(p.stat().st_size for p in base.glob("*.safetensors")) + sum(p.stat().st_size for p in base.glob("*.bin"))


def merge_limit_bytes() -> int:
    configured = int(getattr(settings, "ARTIFACT_MERGE_MAX_BYTES", 0) or 0)
    if configured:
        return configured
    try:  # half the machine's memory: the base in fp32/bf16 plus the merged copy while saving
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 * 1024 ** 3


def job_merged_export(*, job_id, base_model_path: str | None = None) -> ModelArtifact:
    """Merge the job's adapter into its base model and store the result (a normal Hugging Face
    model folder with the tokenizer) as a `merged` artifact under <output>/merged/.

    `base_model_path` overrides where the base weights are read from (a local folder). Raises
    MergeNotPossible without the train extra or when the base model is too large."""
    try:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise MergeNotPossible("merging needs the `train` extra (torch, transformers, peft): "
                               "run it on a worker installed with `pip install .[train]`") from exc
    job = _get_job(job_id)
    adapter = ModelArtifact.objects.filter(job=job, kind=ArtifactKind.ADAPTER).first()
    if adapter is None:
        raise ArtifactNotReady(f"job {job.pk} has no registered adapter to merge")
    tokenizer_row = ModelArtifact.objects.filter(job=job, kind=ArtifactKind.TOKENIZER).first()
    source = base_model_path or job.base_model
    if Path(source).is_dir():
        size = _weights_bytes(Path(source))
        limit = merge_limit_bytes()
        if size > limit:
            raise MergeNotPossible(
                f"the base model's weights are {size / 1024 ** 3:.1f} GiB, over the merge limit of "
                f"{limit / 1024 ** 3:.1f} GiB (ARTIFACT_MERGE_MAX_BYTES): serve the adapter with vLLM's LoRA "
                "support instead, or merge on a machine with more memory"
            )
    storage = get_storage()
    out_key = f"{job_output_key(job)}/merged"
    with tempfile.TemporaryDirectory(prefix="brightrun-merge-") as tmp:
        tmp = Path(tmp)
        for f in adapter.files:
            storage.get_file(f"{adapter.key}/{f['path']}", tmp / "adapter" / f["path"])
        for f in (tokenizer_row.files if tokenizer_row else []):
            storage.get_file(f"{tokenizer_row.key}/{f['path']}", tmp / "tokenizer" / f["path"])
        base = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
        merged = PeftModel.from_pretrained(base, tmp / "adapter").merge_and_unload()
        merged.save_pretrained(tmp / "merged", safe_serialization=True)
        tok_dir = tmp / "tokenizer" if tokenizer_row else source
        AutoTokenizer.from_pretrained(tok_dir).save_pretrained(tmp / "merged")
        del base, merged
        rels = sorted(p.relative_to(tmp / "merged").as_posix() for p in (tmp / "merged").rglob("*") if p.is_file())
        for rel in rels:
            storage.put_file(f"{out_key}/{rel}", tmp / "merged" / rel)
    files = _entries(storage, out_key, rels)
    weights = [f for f in files if f["path"].endswith(".safetensors")]
    with transaction.atomic():
        artifact, _ = ModelArtifact.objects.update_or_create(
            job=job, kind=ArtifactKind.MERGED, key=out_key,
            defaults={"organization_id": job.organization_id, "client": job.client, "name": "merged",
                      "uri": storage.uri_for(out_key), "bytes": sum(f["bytes"] for f in files),
                      "sha256": weights[0]["sha256"] if len(weights) == 1 else "", "files": files,
                      "metadata": {"base_model": job.base_model, "adapter_version": adapter.version,
                                   "adapter": str(adapter.pk)}},
        )
    logger.info("merged model of job %s stored at %s (%d files)", job.pk, out_key, len(files))
    return artifact


