"""Live updates to websocket clients through the channel layer, sent after commit.

Group names: `job-<uuid>` for one job's page, `org-<uuid>-jobs` for the organization's job list.
A failure to publish never breaks the write that caused it: clients re-sync from the snapshot
they get on (re)connect.
"""
from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync

logger = logging.getLogger(__name__)


def job_group(job_id) -> str:
    return f"job-{job_id}"


def org_jobs_group(organization_id) -> str:
    return f"org-{organization_id}-jobs"


def _send(group: str, payload: dict[str, Any]) -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": "job.update", "payload": payload})
    except Exception:  # noqa: BLE001 - live updates are best effort; the database is the truth
        logger.warning("could not publish to %s", group, exc_info=True)


def broadcast_job_update(job_id, payload: dict[str, Any], organization_id=None) -> None:
    _send(job_group(job_id), payload)
    if organization_id is not None and payload.get("kind") in {"status", "progress", "cost"}:
        _send(org_jobs_group(organization_id), {**payload, "job_id": str(job_id)})
