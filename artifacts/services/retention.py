"""Retention: checkpoints of finished jobs are deleted ARTIFACT_CHECKPOINT_RETENTION_DAYS after
the job ended. Adapters, tokenizers, metrics, reports, packages and merged models are kept."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from artifacts.models import ArtifactKind, ModelArtifact
from artifacts.storage import get_storage

from .registry import job_output_key

logger = logging.getLogger(__name__)


def checkpoints_prune(*, now: datetime | None = None, limit: int = 200) -> dict:
    """Delete the stored checkpoints of jobs that ended (completed, failed, cancelled) more than
    the retention period before `now`. Marks their checkpoint artifacts pruned and their
    Checkpoint rows incomplete, so nothing offers to resume from a deleted checkpoint.

    Safe to run twice at once: each job's work is idempotent (deleting twice is harmless)."""
    from training import states
    from training.models import Checkpoint, TrainingJob

    now = now or timezone.now()
    cutoff = now - timedelta(days=int(settings.ARTIFACT_CHECKPOINT_RETENTION_DAYS))
    finished = [states.COMPLETED, states.FAILED, states.CANCELLED]
    jobs = (TrainingJob.objects.filter(status__in=finished, finished_at__lt=cutoff)
            .filter(_has_checkpoints_q())
            .order_by("finished_at")[:limit])
    storage = get_storage()
    summary = {"jobs": 0, "objects_deleted": 0, "cutoff": cutoff.isoformat()}
    for job in jobs:
        # A job stopped early keeps its adapter inside its last checkpoint
        # (checkpoints/step-<n>/adapter/): that folder is the adapter, and it stays.
        kept = [a.key.rstrip("/") + "/" for a in ModelArtifact.objects.filter(
            job=job, kind__in=[ArtifactKind.ADAPTER, ArtifactKind.TOKENIZER])]
        prefixes = {f"{job_output_key(job)}/checkpoints/"} | {
            a.key.rstrip("/") + "/" for a in ModelArtifact.objects.filter(job=job, kind=ArtifactKind.CHECKPOINT,
                                                                          pruned_at=None)}
        deleted = 0
        for prefix in prefixes:
            for key in storage.list_keys(prefix):
                if not any(key.startswith(k) for k in kept):
                    storage.delete(key)
                    deleted += 1
        with transaction.atomic():
            ModelArtifact.objects.filter(job=job, kind=ArtifactKind.CHECKPOINT, pruned_at=None).update(pruned_at=now)
            Checkpoint.objects.filter(job=job, complete=True).update(complete=False)
        summary["jobs"] += 1
        summary["objects_deleted"] += deleted
        logger.info("retention: deleted %d checkpoint objects of job %s (ended %s)", deleted, job.pk, job.finished_at)
    return summary


def _has_checkpoints_q():
    """Jobs with something left to prune: a complete Checkpoint row or an unpruned checkpoint artifact."""
    from django.db.models import Exists, OuterRef, Q

    from training.models import Checkpoint

    return Q(Exists(Checkpoint.objects.filter(job=OuterRef("pk"), complete=True))) | Q(
        Exists(ModelArtifact.objects.filter(job=OuterRef("pk"), kind=ArtifactKind.CHECKPOINT, pruned_at=None)))
