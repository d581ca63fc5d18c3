"""The pod's webhook secret after the job ends: kept for a short late window, then erased.

A pod's events can arrive after its job's terminal event (a retry or a proxy reorders them; the
pod flushes its queue for up to 15 s after `completed`). So the terminal move does not revoke the
secret at once: events signed with it are still verified for `POD_EVENT_LATE_WINDOW_S` after
`finished_at`, and their data is kept (`training.services.pod_events`; state never changes).
After the window the secret is refused (410) and erased: lazily by the first refused event, and
by the reconcile beat for jobs nobody writes to. No schema change: `finished_at` bounds the window.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from training import states
from training.models import TrainingJob


def late_window_open(finished_at: datetime | None, *, now: datetime | None = None) -> bool:
    """True while a finished job still accepts its pod's late events. A terminal job without
    `finished_at` (written by hand) has no window."""
    if finished_at is None:
        return False
    return (now or timezone.now()) - finished_at <= timedelta(seconds=settings.POD_EVENT_LATE_WINDOW_S)


def _expired(now: datetime):
    cutoff = now - timedelta(seconds=settings.POD_EVENT_LATE_WINDOW_S)
    return (TrainingJob.objects.filter(status__in=states.TERMINAL_STATES)
            .filter(Q(finished_at__isnull=True) | Q(finished_at__lt=cutoff))
            .exclude(webhook_secret=""))


def pod_event_secret(*, job_id, now: datetime | None = None) -> str | None:
    """The secret that verifies `job_id`'s pod events: None when there is no such job, "" when
    the job no longer accepts events (finished, late window over; the secret is erased here)."""
    now = now or timezone.now()
    row = TrainingJob.objects.filter(pk=job_id).values_list("webhook_secret", "status", "finished_at").first()
    if row is None:
        return None
    secret, status, finished_at = row
    if secret and states.is_terminal(status) and not late_window_open(finished_at, now=now):
        _expired(now).filter(pk=job_id).update(webhook_secret="")
        return ""
    return secret


def webhook_secrets_revoke_expired(*, now: datetime | None = None) -> int:
    """Erase the secrets of jobs whose late window is over (the reconcile beat). Returns how many."""
    return _expired(now or timezone.now()).update(webhook_secret="")
