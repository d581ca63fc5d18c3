"""Download links: a permission check, then short-lived links (S3 presigned URLs, or signed
tokens served by the disk backend's view), valid DOWNLOAD_URL_TTL_S seconds."""
from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from accounts.models import Role
from accounts.selectors import role_for_user
from artifacts.errors import ArtifactGone, ArtifactNotFound, ArtifactPermissionDenied
from artifacts.models import ModelArtifact
from artifacts.storage import get_storage

logger = logging.getLogger(__name__)

# Every member may download, viewers included; the list is here so tightening it is one line.
DOWNLOAD_ROLES = {Role.ADMIN, Role.ENGINEER, Role.BUDGET_MANAGER, Role.VIEWER}


def artifact_download_links(*, artifact_id, user) -> dict:
    """Links to the artifact's bytes for `user`. One `url` for a single object; for a folder
    (adapter, tokenizer, checkpoint, merged model) one link per file under `files`.

    Raises ArtifactNotFound for another organization's artifact (ids reveal nothing),
    ArtifactPermissionDenied for a role that may not download, ArtifactGone once retention
    deleted the files."""
    artifact = ModelArtifact.objects.select_related("organization").filter(pk=artifact_id).first()
    role = role_for_user(user, artifact.organization) if artifact is not None else None
    if artifact is None or role is None:
        raise ArtifactNotFound("no such artifact", detail={"artifact": str(artifact_id)})
    if role not in DOWNLOAD_ROLES:
        raise ArtifactPermissionDenied(f"your role ({role}) may not download artifacts; ask an admin")
    if artifact.pruned_at:
        raise ArtifactGone(
            f"this {artifact.get_kind_display().lower()} was deleted on {artifact.pruned_at:%Y-%m-%d} by the "
            f"retention policy (ARTIFACT_CHECKPOINT_RETENTION_DAYS); adapters and reports are kept"
        )
    storage = get_storage()
    ttl = int(settings.DOWNLOAD_URL_TTL_S)
    body = {"artifact": str(artifact.pk), "kind": artifact.kind, "expires_in": ttl,
            "expires_at": (timezone.now() + timedelta(seconds=ttl)).isoformat(), "url": None, "files": []}
    if artifact.is_folder:
        entries = artifact.files or [
            {"path": k[len(artifact.key) + 1:], "bytes": None, "sha256": None}
            for k in storage.list_keys(artifact.key + "/")
        ]
        for entry in entries:
            key = f"{artifact.key}/{entry['path']}"
            name = entry["path"].replace("/", "_")
            body["files"].append({**entry, "url": storage.presigned_get(key, ttl, filename=name, user_id=user.pk)})
    else:
        body["url"] = storage.presigned_get(artifact.key, ttl, filename=artifact.name or None, user_id=user.pk)
    logger.info("download links for artifact %s issued to user %s (%s s)", artifact.pk, user.pk, ttl)
    return body
