"""Reads of the artifacts app, always scoped to an organization."""
from __future__ import annotations

from django.db.models import QuerySet

from artifacts.models import ModelArtifact


def artifact_list(*, organization, job_id=None, kind: str | None = None, client: str | None = None,
                  include_pruned: bool = False) -> QuerySet[ModelArtifact]:
    qs = ModelArtifact.objects.filter(organization=organization).select_related("job")
    if job_id is not None:
        qs = qs.filter(job_id=job_id)
    if kind:
        qs = qs.filter(kind=kind)
    if client is not None:
        qs = qs.filter(client=client)
    if not include_pruned:
        qs = qs.filter(pruned_at=None)
    return qs.order_by("-created_at", "kind")


