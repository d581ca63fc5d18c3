"""Applying pod events: each is stored once (unique per job and event id) and applied under the
job's row lock by one handler per event type. A late or repeated event never moves a job
backwards. A finished job's state is final: its pod's late events (inside the late window,
`training.services.webhook_secrets`) only add data — metric points, checkpoints, logs, forward-only
progress — and never move, bill or notify."""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable

from asgiref.sync import async_to_sync
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import services as billing
from gpu_worker import contracts
from gpu_worker.contracts import PodEvent
from training import states
from training.broadcast import job_updates_collected, publish_job_updates
from training.models import Checkpoint, JobEvent, MetricPoint, TrainingJob
from training.selectors import checkpoint_live
from training.services.jobs import job_locked_mark, job_move, job_stopped, stop_reason
from training.services.hot_sql import hot_cursor
from training.services.metric_rollups import metric_rollups_add
from training.services.webhook_secrets import late_window_open

logger = logging.getLogger(__name__)

METRIC_KEYS = ("loss", "learning_rate", "grad_norm", "tokens_per_s", "epoch", "gpu_memory_mb", "eta_s", "total_steps",
               "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy")


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
    stage = event.data.get("stage")
    # A late stage event never moves the job backwards; a lost one is skipped over.
    if stage in states.POD_STAGES and states.can_move(job.status, stage):
        job_move(job, stage, reason=f"pod reports {stage}", event_id=f"{event.event_id}:move")
        live.append({"kind": "stage", "stage": stage})


def _on_metrics(job: TrainingJob, event: PodEvent, live: list) -> None:
    values = {k: event.data[k] for k in METRIC_KEYS if k in event.data}
    points = event.data.get("points")  # a pod may batch several steps in one event
    rows = [(event.step, values)] if points is None else [(int(p["step"]), {k: p[k] for k in METRIC_KEYS if k in p})
                                                           for p in points]
    rows = list(dict(rows).items())  # a step twice in one batch: its last values, everywhere below
    metric_rollups_add(job_id=job.pk, rows=rows)  # chart rollups; first: it compares with what is stored
    _metric_points_write(job, event.attempt, rows)
    step, vals = max(rows, key=lambda r: r[0])
    if step >= job.current_step:  # progress never goes backwards
        job.current_step = step
        job.total_steps = int(vals.get("total_steps") or event.data.get("total_steps") or job.total_steps)
        job.epoch = float(vals.get("epoch") or job.epoch)
        job.last_loss = vals.get("loss", job.last_loss)
        job.tokens_per_s = vals.get("tokens_per_s", job.tokens_per_s)
        job.eta_s = vals.get("eta_s", job.eta_s)
    live.append({"kind": "metrics", "points": [{"step": s, **v} for s, v in rows]})


def _metric_points_write(job: TrainingJob, attempt: int, rows: list[tuple[int, dict]]) -> None:
    """Insert the points (one per step: the caller drops a step's earlier duplicates), or overwrite a
    step's values (a resumed attempt re-running steps)."""
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        MetricPoint.objects.bulk_create(
            [MetricPoint(job=job, step=step, attempt=attempt, values=vals) for step, vals in rows],
            update_conflicts=True, unique_fields=["job", "step"], update_fields=["values", "attempt"],
        )
        return
    # The same upsert with one array per column: one statement text for any number of points
    # (psycopg converts it once), where bulk_create wrote a new one for every batch size.
    table, q = MetricPoint._meta.db_table, connection.ops.quote_name
    with hot_cursor(connection) as cursor:
        cursor.execute(
            f"INSERT INTO {q(table)} ({q('job_id')}, {q('step')}, {q('attempt')}, {q('values')}, {q('created_at')}) "
            f"SELECT %s::uuid, u.step, %s::integer, u.vals::jsonb, %s::timestamptz "
            f"FROM unnest(%s::integer[], %s::text[]) AS u(step, vals) "
            f"ON CONFLICT ({q('job_id')}, {q('step')}) DO UPDATE SET {q('values')} = excluded.{q('values')}, "
            f"{q('attempt')} = excluded.{q('attempt')}",
            [job.pk, attempt, timezone.now(), [step for step, _ in rows], [json.dumps(v) for _, v in rows]])


def _on_checkpoint_saved(job: TrainingJob, event: PodEvent, live: list) -> None:
    step = int(event.data.get("step", event.step))
    checkpoint, _ = Checkpoint.objects.update_or_create(
        job=job, step=step,
        defaults={"uri": event.data.get("uri", ""), "bytes": int(event.data.get("bytes") or 0), "complete": True,
                  "attempt": event.attempt, "epoch": event.data.get("epoch"),
                  "valid_loss": _finite_or_none(event.data.get("valid_loss"))},
    )
    # Ids, never the storage URI (a file:// path or bucket key is internal): `id` is the checkpoint
    # in GET /api/v1/jobs/{id}/checkpoints/ and `ftckpt-<id>` in /v1/.
    live.append({"kind": "checkpoint", **checkpoint_live(checkpoint),
                 "valid_loss": _finite_or_none(event.data.get("valid_loss"))})


def _finite_or_none(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _on_log(job: TrainingJob, event: PodEvent, live: list) -> None:
    live.append({"kind": "log", "level": event.data.get("level", "info"), "message": event.data.get("message", "")})


def _on_completed(job: TrainingJob, event: PodEvent, live: list) -> None:
    job.result = dict(event.data)
    artifacts = event.data.get("artifacts") or {}
    job.adapter_uri = event.data.get("adapter_uri") or artifacts.get("adapter_uri") or artifacts.get("adapter") or ""
    # The final counts come with the event (gpu_worker.runner's `final_metrics`), so they do not
    # depend on the last metrics arriving first: those may come late, or be dropped by the pod.
    final = event.data.get("final_metrics") or {}
    total = final.get("total_steps") or event.data.get("total_steps")
    if total:
        job.total_steps = int(total)
    job.current_step = max(job.current_step, int(final.get("step") or event.step or 0))
    if job.total_steps:
        job.current_step = max(job.current_step, job.total_steps)
    if states.can_move(job.status, states.COMPLETED):  # not from queued: that pod never started
        job_move(job, states.COMPLETED, reason="the pod finished", event_id=f"{event.event_id}:move")


def _on_failed(job: TrainingJob, event: PodEvent, live: list) -> None:
    data = event.data
    job.error_class = str(data.get("error_class", "unknown"))[:60]
    job.error_message = str(data.get("message", ""))
    job.error_suggestion = str(data.get("suggestion", ""))
    job.error_fix = data.get("fix") or {}
    job.error_traceback = str(data.get("traceback_tail", ""))[-5000:]
    job_move(job, states.FAILED, reason=f"{job.error_class}: {job.error_message}"[:500], event_id=f"{event.event_id}:move")


def _on_interrupted(job: TrainingJob, event: PodEvent, live: list) -> None:
    checkpoint_uri = event.data.get("checkpoint_uri")
    if checkpoint_uri:
        step = int(event.data.get("checkpoint_step") or 0)
        Checkpoint.objects.update_or_create(job=job, step=step, defaults={"uri": checkpoint_uri, "complete": True,
                                                                          "attempt": event.attempt})
    if job.stop_requested:
        # The user's reason ("paused by ... (OpenAI API)") stays the history's and the API's text.
        job_stopped(job, stop_reason(job) or "stopped at the user's request")
        return
    interruption_record(job, checkpoint_uri=checkpoint_uri, step=event.step, reason="the pod was interrupted (SIGTERM)")


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


_JOB_LOCKED: dict[str, tuple] = {}  # per database vendor: (SQL, job converters, cost converters)


def _job_locked_plan(connection) -> tuple:
    from billing.models import JobCost  # noqa: PLC0415

    plan = _JOB_LOCKED.get(connection.vendor)
    if plan is None:
        q = connection.ops.quote_name
        columns = [f"j.{q(f.column)}" for f in TrainingJob._meta.concrete_fields]
        columns += [f"c.{q(f.column)}" for f in JobCost._meta.concrete_fields]
        lock = " FOR UPDATE OF j" if connection.features.has_select_for_update_of else ""
        sql = (f"SELECT {', '.join(columns)} FROM {q(TrainingJob._meta.db_table)} j "
               f"LEFT JOIN {q(JobCost._meta.db_table)} c ON c.{q('job_id')} = j.{q('id')} WHERE j.{q('id')} = %s{lock}")
        plan = _JOB_LOCKED[connection.vendor] = (sql, _converters(TrainingJob, connection), _converters(JobCost, connection))
    return plan


def _converters(model, connection) -> list[tuple]:
    """Per concrete field, (column, what the ORM applies to its value as read): the backend's and
    the field's own converters, as SQLCompiler.get_converters gathers them."""
    out = []
    for field in model._meta.concrete_fields:
        col = field.get_col(model._meta.db_table)
        out.append((col, connection.ops.get_db_converters(col) + col.get_db_converters(connection)))
    return out


def _instance(model, connection, converters: list[tuple], values):
    converted = []
    for (col, field_converters), value in zip(converters, values):
        for converter in field_converters:
            value = converter(value, col, connection)
        converted.append(value)
    return model.from_db(connection.alias, [f.attname for f in model._meta.concrete_fields], converted)


def _job_locked(job_id) -> TrainingJob:
    """The job, locked (FOR UPDATE OF the job's row), with its cost row (not locked) attached as
    `job.cost`: what `select_for_update(of=("self",)).select_related("cost").get(pk=job_id)`
    gives, without compiling that query on every event (it was a fifth of the web process's CPU
    per pod event). Raises TrainingJob.DoesNotExist."""
    from billing.models import JobCost  # noqa: PLC0415

    connection = transaction.get_connection()
    pk = TrainingJob._meta.pk.get_db_prep_value(job_id, connection)
    sql, job_converters, cost_converters = _job_locked_plan(connection)
    with hot_cursor(connection) as cursor:
        cursor.execute(sql, [pk])
        row = cursor.fetchone()
    if row is None:
        raise TrainingJob.DoesNotExist(f"no job {job_id}")
    n = len(TrainingJob._meta.concrete_fields)
    job = _instance(TrainingJob, connection, job_converters, row[:n])
    if row[n] is not None:  # the cost row's id: a job without one gets DoesNotExist on access, as before
        cost = _instance(JobCost, connection, cost_converters, row[n:])
        TrainingJob._meta.get_field("cost").set_cached_value(job, cost)
        JobCost._meta.get_field("job").set_cached_value(cost, job)
    return job_locked_mark(job)


# _event_store's statement on PostgreSQL, written once.
_EVENT_COLUMNS = [f for f in JobEvent._meta.concrete_fields if not f.primary_key]
_EVENT_INSERT = ('INSERT INTO "%s" (%s) VALUES (%s) ON CONFLICT (job_id, event_id) DO NOTHING RETURNING 1' % (
    JobEvent._meta.db_table, ", ".join(f'"{f.column}"' for f in _EVENT_COLUMNS), ", ".join(["%s"] * len(_EVENT_COLUMNS))))


def _event_store(job: TrainingJob, event: PodEvent) -> bool:
    """Store the pod event once (the caller holds the job's lock): False when it is already stored.
    On PostgreSQL one INSERT ... ON CONFLICT DO NOTHING; elsewhere a savepoint around the INSERT,
    whose unique-constraint error marks the duplicate."""
    fields = dict(job=job, event_id=event.event_id, source=JobEvent.SOURCE_POD, type=event.type,
                  attempt=event.attempt, seq=event.seq, step=event.step, data=event.data,
                  pod_timestamp=event.timestamp, message=str(event.data.get("message", ""))[:2000])
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        try:
            with transaction.atomic():
                JobEvent.objects.create(**fields)
        except IntegrityError:
            return False
        return True
    # Two round trips fewer per event than the savepoint (SAVEPOINT, RELEASE), on the hot path.
    row = JobEvent(**fields, created_at=timezone.now())
    values = [f.get_db_prep_save(f.pre_save(row, add=True), connection) for f in _EVENT_COLUMNS]
    with hot_cursor(connection) as cursor:
        cursor.execute(_EVENT_INSERT, values)
        return cursor.fetchone() is not None


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
        job = _job_locked(job_id)
        if not _event_store(job, event):
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

