"""Live updates to websocket clients through the channel layer, sent after commit.

Group names: `job-<uuid>` for one job's page, `org-<uuid>-jobs` for the organization's job list.
A failure to publish never breaks the write that caused it: clients re-sync from the snapshot
they get on (re)connect.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Iterator

from asgiref.sync import async_to_sync

logger = logging.getLogger(__name__)


def job_group(job_id) -> str:
    return f"job-{job_id}"


def org_jobs_group(organization_id) -> str:
    return f"org-{organization_id}-jobs"


LISTED_KINDS = frozenset({"status", "progress", "cost"})


def job_update_messages(job_id, payload: dict[str, Any], organization_id=None) -> list[tuple[str, dict[str, Any]]]:
    """(group, payload) pairs for one live update: every payload goes to the job's group; the
    organization's job list also gets status, progress and cost (a combined metrics message
    carries its progress for the list under "progress")."""
    sends = [(job_group(job_id), payload)]
    listed = payload.get("progress") if payload.get("kind") == "metrics" else payload
    if organization_id is not None and listed and listed.get("kind") in LISTED_KINDS:
        sends.append((org_jobs_group(organization_id), {**listed, "job_id": str(job_id)}))
    return sends


async def publish_job_updates(job_id, payloads, organization_id=None) -> None:
    """Send live updates in order (a client sees them in this order), best effort."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    for payload in payloads:
        for group, message in job_update_messages(job_id, payload, organization_id):
            try:
                await layer.group_send(group, {"type": "job.update", "payload": message})
            except Exception:  # noqa: BLE001 - live updates are best effort; the database is the truth
                logger.warning("could not publish to %s", group, exc_info=True)


_collecting = threading.local()


@contextlib.contextmanager
def job_updates_collected() -> Iterator[list]:
    """Inside this block (in this thread), `broadcast_job_update` appends (job id, payload,
    organization id) to the yielded list instead of publishing: for a caller that publishes from
    its event loop (the pod-event webhook). Outside an event loop's thread, async_to_sync starts
    a thread and an event loop for every publish, and the channel layer a Redis connection for
    each such loop: a few milliseconds each, paid by the request that happened to meter or move."""
    previous = getattr(_collecting, "items", None)
    items: list = []
    _collecting.items = items
    try:
        yield items
    finally:
        _collecting.items = previous


def broadcast_job_update(job_id, payload: dict[str, Any], organization_id=None) -> None:
    items = getattr(_collecting, "items", None)
    if items is not None:
        items.append((str(job_id), payload, organization_id))
        return
    async_to_sync(publish_job_updates)(job_id, [payload], organization_id)
