"""Follow-ups of a state move, delivered at least once even when the broker is down at that moment.

`job_move` (training.services.jobs) writes one OutboxMessage per follow-up task (terminate, resume,
artifact registration, validation, notification) in the transaction that moves the job: the move
and its follow-ups commit together or not at all. After the commit the same rows are relayed to
Celery at once (`outbox_relay(ids=...)`); a row the broker did not take stays unsent and is relayed
again by the beat loop (`pods_reconcile`, every RECONCILE_INTERVAL_S) once the broker answers. A
row is marked sent only after the broker took it, so a crash in between sends it twice; every
follow-up task is idempotent. Order is kept per relay pass (by id); a failed publish stops the pass.
"""
from __future__ import annotations

import logging

from django.db.models import F
from django.utils import timezone

from training.models import OutboxMessage

logger = logging.getLogger(__name__)
BATCH = 200


def outbox_add(task: str, *args, job_id=None, countdown_s: int = 0) -> OutboxMessage:
    """Call inside the transaction whose commit must cause `task(*args)`."""
    return OutboxMessage.objects.create(task=task, args=list(args), job_id=job_id, countdown_s=int(countdown_s))


def _publish(row: OutboxMessage) -> None:
    import importlib

    module, name = row.task.rsplit(".", 1)
    task = getattr(importlib.import_module(module), name)  # the task object its module defines
    task.apply_async(args=row.args, kwargs=row.kwargs, countdown=row.countdown_s or None, retry=False)


def outbox_relay(*, ids: list[int] | None = None, limit: int = BATCH) -> int:
    """Send unsent rows (these `ids`, or the oldest `limit`); return how many the broker took."""
    rows = OutboxMessage.objects.filter(sent_at__isnull=True)
    if ids is not None:
        if not ids:
            return 0
        rows = rows.filter(pk__in=ids)
    sent = 0
    for row in rows.order_by("id")[:limit]:
        try:
            _publish(row)
        except Exception as exc:  # noqa: BLE001 - the broker is away: keep the row for the next pass
            OutboxMessage.objects.filter(pk=row.pk).update(attempts=F("attempts") + 1,
                                                           last_error=f"{type(exc).__name__}: {exc}"[:1000])
            logger.warning("outbox: %s for job %s not sent yet (%s); the relay loop retries", row.task, row.job_id, exc)
            break
        OutboxMessage.objects.filter(pk=row.pk).update(sent_at=timezone.now(), attempts=F("attempts") + 1,
                                                       last_error="")
        sent += 1
    return sent


def outbox_pending() -> int:
    return OutboxMessage.objects.filter(sent_at__isnull=True).count()
