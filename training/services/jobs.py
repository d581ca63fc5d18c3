"""Job lifecycle rules: create, the one transition function, cancel, stop early, retry, notes.

`job_move` is the only code that assigns `TrainingJob.status`; its caller holds the row lock
(`job_lock`). The moves and their follow-up tasks are tables in training/states.py.
"""
from __future__ import annotations

import logging
import secrets
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing import services as billing
from gpu_worker.contracts import JobSpec
from core.job_config import JobConfigError, job_config_resolve
from training import states
from core.broadcast import broadcast_job_update
from core.errors import DomainError
from training.services.job_inputs import notes_check
from training.services.outbox import outbox_add, outbox_relay
from training.models import JobEvent, TrainingJob

logger = logging.getLogger(__name__)


BUDGET_STOP = "budget_cap"
MAX_GPUS_PER_POD = 8  # RunPod's largest pods


class JobStateError(DomainError):
    code = "invalid_job_state"
    http_status = 409


# --------------------------------------------------------------------------- create

_FALLBACK_KEYS = {"gpu_type", "cloud_type", "spot", "bid_per_gpu"}


def capacity_fallback_clean(value, *, gpu_type: str, cloud_type: str, spot: bool) -> dict[str, Any]:
    """Validate what a job accepts when its GPU type has no capacity: `alternatives`, tried in
    order (each changes some of gpu_type, cloud_type, spot, bid_per_gpu), and for a spot job
    `on_demand_after_spot_failures` (N spot capacity refusals, then on-demand is tried too)."""
    if not value:
        return {}
    if not isinstance(value, dict) or set(value) - {"alternatives", "on_demand_after_spot_failures"}:
        raise JobConfigError('capacity_fallback must be {"alternatives": [...], "on_demand_after_spot_failures": N}',
                             detail={"field": "capacity_fallback"})
    alternatives = value.get("alternatives") or []
    if not isinstance(alternatives, list) or len(alternatives) > 8:
        raise JobConfigError("capacity_fallback.alternatives must be a list of at most 8 alternatives",
                             detail={"field": "capacity_fallback"})
    cleaned = []
    for i, alt in enumerate(alternatives):
        if not isinstance(alt, dict) or not alt or set(alt) - _FALLBACK_KEYS:
            raise JobConfigError(f"capacity_fallback.alternatives[{i}] must change some of "
                                 f"{', '.join(sorted(_FALLBACK_KEYS))}", detail={"field": "capacity_fallback"})
        alt = dict(alt)
        if "cloud_type" in alt:
            alt["cloud_type"] = str(alt["cloud_type"]).upper()
            if alt["cloud_type"] not in ("SECURE", "COMMUNITY"):
                raise JobConfigError(f"capacity_fallback.alternatives[{i}].cloud_type must be SECURE or COMMUNITY",
                                     detail={"field": "capacity_fallback"})
        if "spot" in alt:
            alt["spot"] = bool(alt["spot"])
        if alt.get("bid_per_gpu") is not None:
            try:
                if float(alt["bid_per_gpu"]) <= 0:
                    raise ValueError
            except (TypeError, ValueError):
                raise JobConfigError(f"capacity_fallback.alternatives[{i}].bid_per_gpu must be a price > 0",
                                     detail={"field": "capacity_fallback"}) from None
            alt["bid_per_gpu"] = str(alt["bid_per_gpu"])
        cleaned.append(alt)
    out: dict[str, Any] = {"alternatives": cleaned}
    n = value.get("on_demand_after_spot_failures")
    if n is not None:
        if not spot:
            raise JobConfigError("on_demand_after_spot_failures applies to spot jobs only",
                                 detail={"field": "capacity_fallback"})
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise JobConfigError("on_demand_after_spot_failures must be a whole number ≥ 1",
                                 detail={"field": "capacity_fallback"})
        out["on_demand_after_spot_failures"] = n
    return out


@transaction.atomic
def job_create(
    *,
    organization,
    dataset,
    created_by=None,
    preset: str = "balanced",
    overrides: dict[str, Any] | None = None,
    base_model: str | None = None,
    gpu_type: str | None = None,
    cloud_type: str = "SECURE",
    spot: bool = False,
    bid_per_gpu=None,
    gpu_count: int = 1,
    provider: str | None = None,
    client: str = "",
    name: str = "",
    notes: str = "",
    parent: TrainingJob | None = None,
    test_hooks: dict[str, Any] | None = None,
    capacity_fallback: dict[str, Any] | None = None,
    start: bool = True,
) -> TrainingJob:
    """Create a queued job and (on commit) launch it. Refused before anything is written when the
    configuration is invalid or the budget would be broken."""
    if dataset.organization_id != organization.pk:
        raise JobConfigError("the dataset belongs to another organization", detail={"field": "dataset"})
    base_model = base_model or settings.DEFAULT_BASE_MODEL
    notes_check(notes)
    hp = job_config_resolve(preset=preset, overrides=overrides or {}, base_model=base_model)
    if spot and bid_per_gpu is not None and float(bid_per_gpu) <= 0:
        raise JobConfigError("bid_per_gpu must be > 0 for a spot pod", detail={"field": "bid_per_gpu"})
    if not isinstance(gpu_count, int) or isinstance(gpu_count, bool) or not 1 <= gpu_count <= MAX_GPUS_PER_POD:
        raise JobConfigError(f"gpu_count must be a whole number from 1 to {MAX_GPUS_PER_POD} (GPUs on one pod), "
                             f"not {gpu_count!r}", detail={"field": "gpu_count"})
    capacity_fallback = capacity_fallback_clean(capacity_fallback, gpu_type=gpu_type or settings.DEFAULT_GPU_TYPE,
                                                cloud_type=cloud_type, spot=spot)
    if test_hooks and not settings.ALLOW_TEST_HOOKS:
        raise JobConfigError("test hooks are disabled on this server (ALLOW_TEST_HOOKS)")
    job = TrainingJob.objects.create(
        organization=organization,
        dataset=dataset,
        created_by=created_by,
        client=client,
        name=name or f"{dataset.name} · {preset}",
        base_model=base_model,
        preset=preset,
        overrides=overrides or {},
        hyperparameters=hp.to_dict(),
        provider=provider or settings.GPU_PROVIDER,
        gpu_type=gpu_type or settings.DEFAULT_GPU_TYPE,
        cloud_type=cloud_type,
        spot=spot,
        bid_per_gpu=bid_per_gpu,
        gpu_count=gpu_count,
        notes=notes,
        parent=parent,
        test_hooks=test_hooks or {},
        capacity_fallback=capacity_fallback,
        stage_times={states.QUEUED: timezone.now().isoformat()},
    )
    billing.job_admit(job=job)  # raises BudgetExceeded → the transaction rolls back, nothing is created
    JobEvent.objects.create(job=job, event_id="created", source=JobEvent.SOURCE_SYSTEM, type="created",
                            to_status=states.QUEUED, message=f"created with preset {preset}",
                            data={"overrides": overrides or {}, "parent": str(parent.pk) if parent else None})
    if start:
        from training import tasks

        tasks.job_launch.delay_on_commit(str(job.pk))
    return job


# --------------------------------------------------------------------------- the one transition

class IllegalMove(JobStateError):
    """A move the table (training.states.ALLOWED_MOVES) does not allow: a caller that may see late
    or out-of-order requests asks `states.can_move` first."""

    code = "illegal_job_move"


class JobNotLocked(RuntimeError):
    """job_move was called without the job's row lock in the current transaction (a bug)."""


def _transaction_marker(connection):
    # The outermost atomic block stands for the transaction: a row locked inside it stays locked
    # until it ends.
    return connection.atomic_blocks[0] if connection.in_atomic_block and connection.atomic_blocks else None


def job_locked_mark(job: TrainingJob) -> TrainingJob:
    """Record that `job` was just read with its row lock (SELECT ... FOR UPDATE) in the current
    transaction; for code that locks it by other means than job_lock (pod_events_sql)."""
    job._row_lock = _transaction_marker(transaction.get_connection())
    return job


def job_lock(job_id, *, select_related: tuple[str, ...] = ()) -> TrainingJob:
    """The job read with its row lock (select_for_update), inside the caller's transaction.atomic:
    what job_move requires."""
    query = TrainingJob.objects.select_for_update()
    if select_related:
        query = query.select_related(*select_related)
    return job_locked_mark(query.get(pk=job_id))


def job_move(job: TrainingJob, to_status: str, *, reason: str = "", event_id: str | None = None,
             data: dict[str, Any] | None = None) -> None:
    """The only way a job's status changes. `job` comes from job_lock (or job_locked_mark) in the
    transaction still open; raises JobNotLocked otherwise, and IllegalMove when the table does not
    allow the move. Saves the job (with whatever the caller set on it), writes the audit row,
    writes the follow-up tasks of the table (states.ON_ENTER) to the outbox in this transaction,
    and on commit broadcasts the new status, settles a finished job's cost and relays the tasks."""
    connection = transaction.get_connection()
    marker = _transaction_marker(connection)
    if marker is None or getattr(job, "_row_lock", None) is not marker:
        raise JobNotLocked(f"job_move({to_status!r}) without the row lock of job {job.pk} in the current "
                           "transaction: read it with job_lock() inside transaction.atomic()")
    from_status = job.status
    if not states.can_move(from_status, to_status):
        raise IllegalMove(f"a {from_status} job cannot become {to_status}",
                          detail={"from": from_status, "to": to_status})
    now = timezone.now()
    job.status = to_status
    job.stage_times = {**(job.stage_times or {}), to_status: now.isoformat()}
    if to_status in states.POD_STAGES:
        job.stage = to_status
    if states.is_terminal(to_status):
        # The webhook secret is not revoked here: the pod's late events (data only, never a state
        # change) are still verified for POD_EVENT_LATE_WINDOW_S after finished_at, then refused
        # and the secret erased (training.services.webhook_secrets).
        job.finished_at = now
    job.save()
    JobEvent.objects.create(
        job=job,
        event_id=event_id or f"transition-{secrets.token_hex(8)}",
        source=JobEvent.SOURCE_SYSTEM,
        type="transition",
        attempt=job.attempt,
        from_status=from_status,
        to_status=to_status,
        message=reason,
        data=data or {},
    )
    job_id, org_id = str(job.pk), job.organization_id
    # The follow-up tasks are written now, in the move's transaction (training/services/outbox.py):
    # a broker outage at commit time delays them, never loses them.
    ids = [outbox_add(f.task, job_id, *f.args, job_id=job.pk,
                      countdown_s=getattr(settings, f.countdown_setting) if f.countdown_setting else 0).pk
           for f in states.followups(from_status, to_status)]
    transaction.on_commit(lambda: _after_move(job_id, org_id, from_status, to_status, reason, ids))


def _after_move(job_id: str, organization_id, from_status: str, to_status: str, reason: str,
                outbox_ids: list[int]) -> None:
    broadcast_job_update(job_id, {"kind": "status", "status": to_status, "from": from_status, "reason": reason},
                         organization_id)
    if states.is_terminal(to_status):
        billing.job_settle(job_id=job_id)
    outbox_relay(ids=outbox_ids)


# --------------------------------------------------------------------------- user actions

def job_cancel(*, job_id, reason: str = "cancelled by the user") -> TrainingJob:
    """Cancel now: the job is `cancelled` at once and its pod is terminated (on commit)."""
    with transaction.atomic():
        job = job_lock(job_id)
        if job.is_terminal:
            raise JobStateError(f"the job is already {job.status}; there is nothing to cancel")
        job.cancel_requested = True
        job_move(job, states.CANCELLED, reason=reason)
        return job


def job_stop_early(*, job_id, reason: str = "stopped early by the user") -> TrainingJob:
    """Stop at the next step boundary and keep the adapter of the last checkpoint.

    The pod gets SIGTERM (it saves a checkpoint and reports `interrupted`); seeing
    stop_requested, the event handler completes the job from that checkpoint instead of resuming.
    """
    with transaction.atomic():
        job = job_lock(job_id)
        if job.is_terminal:
            raise JobStateError(f"the job is already {job.status}")
        if job.status == states.QUEUED:
            job_move(job, states.CANCELLED, reason=reason + " before it started")
            return job
        job.stop_requested = True
        job.save(update_fields=["stop_requested", "updated_at"])
        JobEvent.objects.create(job=job, event_id=f"stop-{secrets.token_hex(8)}", source=JobEvent.SOURCE_SYSTEM,
                                type="stop_requested", attempt=job.attempt, message=reason)
        if job.status == states.INTERRUPTED:
            job_stopped(job, reason)
            return job
    from training import tasks

    tasks.job_signal_stop.delay(str(job.pk))
    return job


def job_stop_for_budget(*, job_id, reason: str) -> TrainingJob | None:
    """The budget enforcer's stop: the pod stops at the next step boundary and saves a checkpoint
    (as for stop early); the job then ends `cancelled` with the reason, and a retry with
    resume=True continues from that checkpoint next month or after a raise."""
    with transaction.atomic():
        job = job_lock(job_id)
        if job.is_terminal:
            return None
        job.error_class = BUDGET_STOP
        job.error_message = reason
        job.error_suggestion = ("raise the budget or wait for next month, then retry with resume: "
                                "the retry continues from the last checkpoint")
        if job.status in (states.QUEUED, states.INTERRUPTED):
            job.save()
            job_move(job, states.CANCELLED, reason=reason)
            return job
        job.stop_requested = True
        job.save()
        JobEvent.objects.create(job=job, event_id=f"stop-{secrets.token_hex(8)}", source=JobEvent.SOURCE_SYSTEM,
                                type="stop_requested", attempt=job.attempt, message=reason)
    from training import tasks

    tasks.job_signal_stop.delay(str(job.pk))
    return job


def stop_reason(job: TrainingJob) -> str | None:
    """The reason the user gave when asking for the stop (its `stop_requested` event), if any."""
    return (job.events.filter(type="stop_requested").order_by("-created_at").values_list("message", flat=True)
            .first())


def job_stopped(job: TrainingJob, reason: str) -> None:
    """The pod of a job with stop_requested has stopped (caller holds the lock): a budget stop
    ends cancelled; a user's stop early completes with the last checkpoint's adapter."""
    if job.error_class == BUDGET_STOP:
        job_move(job, states.CANCELLED, reason=job.error_message or reason)
    else:
        _finish_from_checkpoint(job, reason)


def _finish_from_checkpoint(job: TrainingJob, reason: str) -> None:
    """Caller holds the lock. Complete with the last checkpoint's adapter, or cancel when none exists."""
    checkpoint = job.checkpoints.filter(complete=True).order_by("-step").first()
    if checkpoint is None:
        job_move(job, states.CANCELLED, reason=reason + "; no checkpoint existed yet, so there is no adapter to keep")
        return
    job.adapter_uri = checkpoint.uri.rstrip("/") + "/adapter"
    job.result = {**(job.result or {}), "stopped_early": True, "checkpoint_step": checkpoint.step,
                  "adapter_uri": job.adapter_uri}
    job_move(job, states.COMPLETED, reason=f"{reason}; adapter kept from the checkpoint at step {checkpoint.step}")


def job_retry(*, job_id, created_by=None, apply_fix: bool = False, resume: bool = False) -> TrainingJob:
    """A new job linked to `job_id` with the same configuration, optionally with the suggested
    fix applied; `resume` starts it from the old job's last checkpoint (after a budget stop)."""
    old = TrainingJob.objects.select_related("dataset", "organization").get(pk=job_id)
    if not old.is_terminal:
        raise JobStateError(f"the job is still {old.status}; cancel it before retrying")
    overrides = dict(old.overrides or {})
    if apply_fix:
        if not old.error_fix:
            raise JobStateError("this job has no suggested fix to apply; retry without it")
        overrides.update(old.error_fix)
    job = job_create(
        organization=old.organization, dataset=old.dataset, created_by=created_by or old.created_by,
        preset=old.preset, overrides=overrides, base_model=old.base_model, gpu_type=old.gpu_type,
        cloud_type=old.cloud_type, spot=old.spot, bid_per_gpu=old.bid_per_gpu, gpu_count=old.gpu_count,
        capacity_fallback=old.capacity_fallback or None,
        provider=old.provider, client=old.client, name=f"{old.name} (retry)", parent=old, test_hooks=old.test_hooks, start=False,
    )
    if resume:
        checkpoint = old.checkpoints.filter(complete=True).order_by("-step").first()
        if checkpoint is not None:
            TrainingJob.objects.filter(pk=job.pk).update(resume_from=checkpoint.uri)
    from training import tasks

    transaction.on_commit(lambda: tasks.job_launch.delay(str(job.pk)))
    return job


def job_notes_set(*, job_id, notes: str) -> TrainingJob:
    with transaction.atomic():
        job = job_lock(job_id)
        job.notes = notes
        job.save(update_fields=["notes", "updated_at"])
        return job


# --------------------------------------------------------------------------- the pod's spec

def job_spec_build(job: TrainingJob) -> JobSpec:
    """The pod's job spec for the current attempt. Storage access comes from the artifacts
    app's grant: file:// URIs on disk, presigned URLs and an upload policy scoped to the
    job's own prefix on S3 (the pod then holds no storage credentials)."""
    from gpu_worker.contracts import Hyperparameters

    from artifacts.services import pod_storage_grant
    from artifacts.services.grants import pod_read_uri
    from validation import benchmark as validation_benchmark

    grant = pod_storage_grant(job=job)
    # The organization's benchmark split, evaluated on the pod too (validation.benchmark).
    bench = validation_benchmark.for_pod(job)
    if bench is not None:
        bench = {**{k: v for k, v in bench.items() if k != "val_key"}, "val_uri": pod_read_uri(bench["val_key"])}
    return JobSpec(
        benchmark=bench,
        job_id=str(job.pk),
        attempt=job.attempt,
        base_model=job.base_model,
        train_uri=grant["train_uri"],
        val_uri=grant["val_uri"],
        output_uri=grant["output_uri"],
        storage_grant=grant if grant["mode"] != "file" else None,
        hyperparameters=Hyperparameters.from_dict(job.hyperparameters),
        callback_url=f"{settings.PUBLIC_BASE_URL}/api/v1/pod-events/",
        webhook_secret=job.webhook_secret,
        hf_token=settings.HF_TOKEN,
        resume_from=grant["resume_from"],
        checkpoint_every=settings.CHECKPOINT_EVERY_STEPS,
        gpu_count=job.gpu_count,
        eval_max_replies=settings.POD_EVAL_MAX_REPLIES,
        eval_max_new_tokens=settings.POD_EVAL_MAX_NEW_TOKENS,
        eval_max_emotion_items=settings.POD_EVAL_MAX_EMOTION_ITEMS,
        eval_knowledge=settings.POD_EVAL_KNOWLEDGE,
        eval_lm_tasks=tuple(settings.POD_EVAL_LM_TASKS),
        eval_lm_limit=settings.POD_EVAL_LM_LIMIT,
        test_hooks=dict(job.test_hooks or {}),
    )
