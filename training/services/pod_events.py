"""Applying pod events: each is stored once (unique per job and event id) and applied under the
job's row lock by one handler per event type. A late or repeated event never moves a job
backwards. A finished job's state is final: its pod's late events (inside the late window,
`training.services.webhook_secrets`) only add data — metric points, checkpoints, logs, forward-only
progress — and never move, bill or notify.

Each handler reads its event's typed payload (`event.payload`, a dataclass of
gpu_worker.contracts.PAYLOADS, parsed once at the webhook) and moves the job only through
`job_move`. The hand-written SQL of this path (the locked read, the store-once insert, the metric
upsert) is in training/services/pod_events_sql.py."""
from __future__ import annotations

import contextlib
import copy
import logging
from dataclasses import dataclass
from typing import Any, Callable

from asgiref.sync import async_to_sync
from django.db import transaction
from django.utils import timezone

from billing import services as billing
from gpu_worker import contracts
from gpu_worker.contracts import PodEvent
from training import states
from training.broadcast import job_updates_collected, publish_job_updates
from training.models import Checkpoint, TrainingJob
from training.selectors import checkpoint_live
from training.services.jobs import job_move, job_stopped, stop_reason
from training.services.pod_events_sql import event_store, job_locked, metric_points_write
from training.services.metric_rollups import metric_rollups_add
from training.services.webhook_secrets import late_window_open

logger = logging.getLogger(__name__)

METRIC_KEYS = contracts.METRIC_KEYS  # declared by the pod's contract


@dataclass(frozen=True)
class IngestResult:
    stored: bool      # False: a duplicate (already stored), nothing done
    applied: bool     # False: stored for the record but changed nothing (stale attempt; for a finished
                      # job, any event but a late metrics/checkpoint/log one inside the late window)
    status: str
    # With publish=False: the committed live updates the caller must publish
    # (training.broadcast.publish_job_updates).
    live: tuple = ()
    job_id: str = ""
    organization_id: Any = None


# ------------------------------------------------------------------ one handler per event type
# Each receives the locked job and the event and may change the job (saved by the caller).

def _on_stage_changed(job: TrainingJob, event: PodEvent, live: list) -> None:
    stage = event.payload.stage
    # A late stage event never moves the job backwards; a lost one is skipped over.
    if stage in states.POD_STAGES and states.can_move(job.status, stage):
        job_move(job, stage, reason=f"pod reports {stage}", event_id=f"{event.event_id}:move")
        live.append({"kind": "stage", "stage": stage})


def _on_metrics(job: TrainingJob, event: PodEvent, live: list) -> None:
    payload: contracts.MetricsPayload = event.payload
    rows = list(payload.points)  # one per step (a pod may batch several steps in one event)
    metric_rollups_add(job_id=job.pk, rows=rows)  # chart rollups; first: it compares with what is stored
    metric_points_write(job, event.attempt, rows)
    step, vals = max(rows, key=lambda r: r[0])
    if step >= job.current_step:  # progress never goes backwards
        job.current_step = step
        job.total_steps = int(vals.get("total_steps") or payload.total_steps or job.total_steps)
        job.epoch = float(vals.get("epoch") or job.epoch)
        job.last_loss = vals.get("loss", job.last_loss)
        job.tokens_per_s = vals.get("tokens_per_s", job.tokens_per_s)
        job.eta_s = vals.get("eta_s", job.eta_s)
    live.append({"kind": "metrics", "points": [{"step": s, **v} for s, v in rows]})


def _on_checkpoint_saved(job: TrainingJob, event: PodEvent, live: list) -> None:
    saved: contracts.CheckpointPayload = event.payload
    checkpoint, _ = Checkpoint.objects.update_or_create(
        job=job, step=saved.step,
        defaults={"uri": saved.uri, "bytes": saved.bytes, "complete": True,
                  "attempt": event.attempt, "epoch": saved.epoch, "valid_loss": saved.valid_loss},
    )
    # Ids, never the storage URI (a file:// path or bucket key is internal): `id` is the checkpoint
    # in GET /api/v1/jobs/{id}/checkpoints/ and `ftckpt-<id>` in /v1/.
    live.append({"kind": "checkpoint", **checkpoint_live(checkpoint), "valid_loss": saved.valid_loss})


def _on_log(job: TrainingJob, event: PodEvent, live: list) -> None:
    entry: contracts.LogPayload = event.payload
    live.append({"kind": "log", "level": entry.level, "message": entry.message})


def _on_completed(job: TrainingJob, event: PodEvent, live: list) -> None:
    done: contracts.CompletedPayload = event.payload
    job.result = dict(done.result)
    job.adapter_uri = done.adapter_uri
    # The final counts come with the event (gpu_worker.runner's `final_metrics`), so they do not
    # depend on the last metrics arriving first: those may come late, or be dropped by the pod.
    if done.total_steps:
        job.total_steps = done.total_steps
    job.current_step = max(job.current_step, done.final_step or event.step or 0)
    if job.total_steps:
        job.current_step = max(job.current_step, job.total_steps)
    if states.can_move(job.status, states.COMPLETED):  # not from queued: that pod never started
        job_move(job, states.COMPLETED, reason="the pod finished", event_id=f"{event.event_id}:move")


def _on_failed(job: TrainingJob, event: PodEvent, live: list) -> None:
    failure: contracts.FailedPayload = event.payload
    job.error_class = failure.error_class[:60]
    job.error_message = failure.message
    job.error_suggestion = failure.suggestion
    job.error_fix = failure.fix
    job.error_traceback = failure.traceback_tail[-5000:]
    job_move(job, states.FAILED, reason=f"{job.error_class}: {job.error_message}"[:500], event_id=f"{event.event_id}:move")


def _on_interrupted(job: TrainingJob, event: PodEvent, live: list) -> None:
    stopped: contracts.InterruptedPayload = event.payload
    if stopped.checkpoint_uri:
        Checkpoint.objects.update_or_create(job=job, step=stopped.checkpoint_step,
                                            defaults={"uri": stopped.checkpoint_uri, "complete": True,
                                                      "attempt": event.attempt})
    if job.stop_requested:
        # The user's reason ("paused by ... (OpenAI API)") stays the history's and the API's text.
        job_stopped(job, stop_reason(job) or "stopped at the user's request")
        return
    interruption_record(job, checkpoint_uri=stopped.checkpoint_uri, step=event.step,
                        reason="the pod was interrupted (SIGTERM)")


def _on_heartbeat(job: TrainingJob, event: PodEvent, live: list) -> None:
    pass


HANDLERS: dict[str, Callable[[TrainingJob, PodEvent, list], None]] = {
    contracts.EVENT_STAGE_CHANGED: _on_stage_changed,
    contracts.EVENT_METRICS: _on_metrics,
    contracts.EVENT_CHECKPOINT_SAVED: _on_checkpoint_saved,
    contracts.EVENT_LOG: _on_log,
    contracts.EVENT_COMPLETED: _on_completed,
    contracts.EVENT_FAILED: _on_failed,
    contracts.EVENT_INTERRUPTED: _on_interrupted,
    contracts.EVENT_HEARTBEAT: _on_heartbeat,
}

# What a finished job still takes from its pod (late events, inside the late window): data only.
# Stage, terminal and interruption events are stored and ignored; a heartbeat has nothing to keep.
LATE_DATA_EVENTS = frozenset({contracts.EVENT_METRICS, contracts.EVENT_CHECKPOINT_SAVED, contracts.EVENT_LOG})


def interruption_record(job: TrainingJob, *, checkpoint_uri: str | None, step: int, reason: str) -> bool:
    """Move to `interrupted` with resume_from set to the last complete checkpoint (caller holds
    the lock). The steps lost (done since that checkpoint) are counted when the job resumes."""
    if not checkpoint_uri:
        last = job.checkpoints.filter(complete=True).order_by("-step").first()
        checkpoint_uri = last.uri if last else ""
    job.resume_from = checkpoint_uri or ""
    job.interruptions += 1
    if not states.can_move(job.status, states.INTERRUPTED):  # already interrupted, or never started
        return False
    job_move(job, states.INTERRUPTED, reason=reason, data={"checkpoint_uri": checkpoint_uri, "step": step})
    return True


def _field_values(job: TrainingJob) -> dict[str, Any]:
    # Shallow copies of the JSON values, so a handler that changes one in place is still seen.
    return {f.attname: copy.copy(getattr(job, f.attname)) for f in job._meta.concrete_fields if not f.primary_key}


def _changed_fields(job: TrainingJob, before: dict[str, Any]) -> list[str]:
    return [name for name, value in before.items() if getattr(job, name) != value]


def pod_event_ingest(*, job_id, event: PodEvent, publish: bool = True) -> IngestResult:
    """Store `event` once and apply it. Safe to call with the same event any number of times,
    concurrently, in any order.

    Its live updates go to the channel layer after commit; with `publish=False` (the async webhook
    view) they are returned in `live` for the caller to send with
    `training.broadcast.publish_job_updates`, unless an
    outer transaction is still open (then they still wait for its commit here)."""
    live: list[dict[str, Any]] = []
    # Returning the live updates (publish=False) covers the ones sent on commit too (a move's
    # status, billing's cost), unless an outer transaction delays the commit past this call.
    collect = not publish and not transaction.get_connection().in_atomic_block
    with job_updates_collected() if collect else contextlib.nullcontext() as on_commit_updates, \
            transaction.atomic():
        # The job's cost row comes in the same query (not locked): billing decides from its
        # `metered_at` whether this event needs a metering (see job_cost_update).
        job = job_locked(job_id)
        if not event_store(job, event):
            return IngestResult(stored=False, applied=False, status=job.status)
        # Only the current attempt's pod speaks for the job.
        if event.attempt != job.attempt:
            return IngestResult(stored=True, applied=False, status=job.status)
        # A finished job keeps the data of its pod's late events, nothing else (its state is final).
        late = job.is_terminal
        if late and (event.type not in LATE_DATA_EVENTS or not late_window_open(job.finished_at)):
            return IngestResult(stored=True, applied=False, status=job.status)
        before = _field_values(job)
        HANDLERS[event.type](job, event, live)
        if late and job.status != before["status"]:
            raise RuntimeError(f"a late {event.type} event changed a finished job's status")  # a handler bug
        if not late:
            job.last_event_at = timezone.now()
        # Only what changed: a metrics event writes a few columns, not the whole row.
        job.save(update_fields=[*_changed_fields(job, before), "updated_at"])
        if not late:  # a finished job is settled: a late event is never metered
            billing.job_cost_update(job=job, status_changed=job.status != before["status"])
        status = job.status
        job_pk, org_id = str(job.pk), job.organization_id
        progress = {"kind": "progress", "status": status, "step": job.current_step, "total_steps": job.total_steps,
                    "loss": job.last_loss, "eta_s": job.eta_s}
    for payload in live:
        if payload["kind"] == "metrics":
            # One message instead of two: the job's consumer splits it (training.consumers) and the
            # organization's list gets the progress alone (training.broadcast.publish_job_updates).
            payload["progress"] = progress
    if collect:
        # What went out on commit went first before, and still does; another job's (none today)
        # is published here.
        mine = [payload for jid, payload, _org in on_commit_updates if jid == job_pk]
        for jid, payload, org in on_commit_updates:
            if jid != job_pk:
                async_to_sync(publish_job_updates)(jid, [payload], org)
        live = mine + live
    if live and (publish or transaction.get_connection().in_atomic_block):
        payloads = tuple(live)
        transaction.on_commit(lambda: async_to_sync(publish_job_updates)(job_pk, payloads, org_id))
        live = []
    return IngestResult(stored=True, applied=True, status=status, live=tuple(live), job_id=job_pk,
                        organization_id=org_id)

