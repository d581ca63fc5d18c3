"""The three hooks the jobs services call, and what they do to a job's JobCost row.

- `job_admit(job=)`: inside the transaction that creates the job. Estimates it, reserves the high
  end against every hard-capped budget it falls under (under the budgets' row locks), stores the
  estimate. Raises BudgetExceeded (a DomainError) to refuse: the caller's transaction then rolls
  back and no job exists.
- `job_cost_update(job=, status_changed=True)`: after every pod event, with the job row locked.
  Meters the job's cost to now and pushes it to the job's websocket group on commit. An event that
  moved nothing (metrics, logs, checkpoints: `status_changed=False`) meters only when the last
  metering is older than BILLING_EVENT_METER_INTERVAL_S (5 s): a pod reports many times a second,
  and the beat task meters every open job every 30 s anyway.
- `job_settle(job_id=)`: on commit after a terminal state. Final metering, releases the
  reservation (the month now counts the actual cost), sets actual duration and cost beside the
  estimate and, for a completed job, records its measured throughput and recalibrates.
"""
from __future__ import annotations

import logging
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing import tables
from billing.errors import EstimateError, SpotBidError
from billing.models import JobCost, ThroughputSample
from billing.money import to_decimal
from billing.services.budgets import budget_admit, budgets_for, reservation_for
from billing.services.calibration import calibration_recompute
from billing.services.catalog import free_providers, spot_bid_for
from billing.services.estimates import _quantization, config_from_job, estimate
from billing.services.metering import POD_EVENT_TYPES, broadcast_cost, job_cost_meter, meter, month_of
from training import states

logger = logging.getLogger(__name__)


def _estimate_fields(est) -> dict:
    return {
        "estimate": est.to_dict(),
        "est_duration_low_s": est.duration_s.low, "est_duration_s": est.duration_s.point,
        "est_duration_high_s": est.duration_s.high,
        "est_cost_low": est.cost.low, "est_cost": est.cost.point, "est_cost_high": est.cost.high,
    }


def job_cost_create(*, job, now=None) -> JobCost:
    """A JobCost for a job that was never admitted through `job_admit` (created before billing
    existed): best-effort estimate, no budget check, reservation = high estimate."""
    now = now or timezone.now()
    fields = {"organization_id": job.organization_id, "client": job.client or "", "created_by_id": job.created_by_id,
              "month": month_of(job.created_at or now)}
    try:
        est = estimate(config_from_job(job))
        fields.update(_estimate_fields(est))
        if not job.is_terminal:
            fields["reserved"] = reservation_for(est)
    except (EstimateError, ValueError) as exc:
        fields["estimate"] = {"error": str(exc)}
    cost, _ = JobCost.objects.get_or_create(job=job, defaults=fields)
    return cost


def spot_bid_decide(job) -> None:
    """A spot job is priced before admission: without a bid it bids the current spot price of its
    GPU type and cloud (read from RunPod when a key is set, else the catalog's), stored on the job
    so the estimate, the reservation and the pod use the same bid; a bid below RunPod's minimum,
    or no spot price to default to, is refused (SpotBidError, 400) with the minimum."""
    if job.provider in free_providers() or job.provider == "local":
        return
    _alternative_bids_decide(job)
    if not job.spot:
        return
    given = job.bid_per_gpu
    decided = spot_bid_for(gpu_id=job.gpu_type, cloud_type=job.cloud_type, provider=job.provider)
    minimum = decided.minimum
    if given is not None:
        if minimum is not None and to_decimal(given) < minimum:
            raise SpotBidError(
                f"a spot bid of ${to_decimal(given)}/h per GPU is below RunPod's minimum of ${minimum}/h for "
                f"{job.gpu_type}: bid at least ${minimum}, or leave the bid empty to bid the current spot price",
                detail={"field": "bid_per_gpu", "minimum_bid": str(minimum),
                        "spot_price": str(decided.bid) if decided.bid is not None else None})
        return
    if decided.bid is None:
        raise SpotBidError(
            f"no spot price is known for {job.gpu_type} on {job.cloud_type.lower()} cloud, so a spot pod has no "
            "bid to default to: set bid_per_gpu"
            + (f" (at least RunPod's minimum of ${minimum}/h)" if minimum is not None else "")
            + ", or run on-demand",
            detail={"field": "bid_per_gpu", "minimum_bid": str(minimum) if minimum is not None else None})
    job.bid_per_gpu = decided.bid
    type(job).objects.filter(pk=job.pk).update(bid_per_gpu=decided.bid)


def _alternative_bids_decide(job) -> None:
    """A spot capacity alternative without a bid bids the spot price of its own GPU type and cloud."""
    fallback = dict(job.capacity_fallback or {})
    changed = False
    alternatives = []
    for i, alt in enumerate(fallback.get("alternatives") or []):
        alt = dict(alt)
        if alt.get("spot", job.spot) and alt.get("bid_per_gpu") is None:
            gpu, cloud = alt.get("gpu_type", job.gpu_type), alt.get("cloud_type", job.cloud_type)
            if gpu == job.gpu_type and cloud == job.cloud_type and job.bid_per_gpu is not None:
                bid = to_decimal(job.bid_per_gpu)
            else:
                bid = spot_bid_for(gpu_id=gpu, cloud_type=cloud, provider=job.provider).bid
            if bid is None:
                raise SpotBidError(f"capacity alternative {i + 1} ({gpu}, {cloud.lower()} cloud, spot) has no spot price "
                                   "to bid: give it a bid_per_gpu, or make it on-demand",
                                   detail={"field": "capacity_fallback", "alternative": i})
            alt["bid_per_gpu"] = str(bid)
            changed = True
        alternatives.append(alt)
    if changed:
        fallback["alternatives"] = alternatives
        job.capacity_fallback = fallback
        type(job).objects.filter(pk=job.pk).update(capacity_fallback=fallback)


def job_reprice(*, job_id) -> None:
    """The job now runs on another GPU type, cloud or on-demand (a capacity alternative): its
    estimate and reservation are recomputed for what it got (receiver of
    training.signals.job_relaunched_elsewhere). Time already billed keeps its pods' rates."""
    from training.models import TrainingJob  # noqa: PLC0415

    with transaction.atomic():
        job = TrainingJob.objects.select_related("dataset").filter(pk=job_id).first()
        cost = JobCost.objects.select_for_update().filter(job_id=job_id, settled_at__isnull=True).first()
        if job is None or cost is None:
            return
        try:
            est = estimate(config_from_job(job))
        except (EstimateError, ValueError) as exc:
            logger.warning("job %s: cannot re-price after a capacity fallback: %s", job_id, exc)
            return
        for key, value in _estimate_fields(est).items():
            setattr(cost, key, value)
        cost.reserved = max(reservation_for(est), cost.cost)
        cost.save()
        broadcast_cost(cost)


def on_job_relaunched_elsewhere(sender=None, *, job_id, **kwargs) -> None:
    try:
        job_reprice(job_id=job_id)
    except Exception:  # noqa: BLE001 - the reservation stays as it was; metering is unaffected
        logger.exception("re-pricing job %s after a capacity fallback failed", job_id)


def job_admit(*, job) -> None:
    """Called inside the transaction that creates `job` (the caller holds it). Raises
    BudgetExceeded to refuse the start, SpotBidError for a spot job without a usable bid;
    nothing is then created."""
    spot_bid_decide(job)
    now = timezone.now()
    month = month_of(job.created_at or now)
    config = None
    try:
        config = config_from_job(job)
        est = estimate(config)
    except (EstimateError, ValueError) as exc:
        # Without an estimate a hard cap cannot be guaranteed: refuse only where one applies.
        if budgets_for(organization_id=job.organization_id, client=job.client).filter(hard_cap=True).exists():
            raise EstimateError(f"cannot check this run against the budget: {exc}",
                                detail=getattr(exc, "detail", None), code=getattr(exc, "code", "estimate_error")) from exc
        JobCost.objects.create(job=job, organization_id=job.organization_id, client=job.client or "",
                               created_by_id=job.created_by_id, month=month, estimate={"error": str(exc)})
        return
    reservation = budget_admit(job=job, est=est, config=config, month=month, now=now)
    JobCost.objects.create(job=job, organization_id=job.organization_id, client=job.client or "",
                           created_by_id=job.created_by_id, month=month, reserved=reservation,
                           **_estimate_fields(est))


def _metered_recently(job, now) -> bool:
    """Whether the job's cost was metered less than BILLING_EVENT_METER_INTERVAL_S ago, judged
    from a `cost` row the caller selected with the job (select_related), else from the database."""
    interval = getattr(settings, "BILLING_EVENT_METER_INTERVAL_S", 0)
    if interval <= 0:
        return False
    cached = job._state.fields_cache.get("cost")
    if cached is not None:
        metered_at = cached.metered_at
    else:
        metered_at = JobCost.objects.filter(job_id=job.pk).values_list("metered_at", flat=True).first()
    return metered_at is not None and (now - metered_at).total_seconds() < interval


def job_cost_update(*, job, status_changed: bool = True) -> None:
    """Called with the job row locked after every pod event was applied. `status_changed=False`
    (the event moved nothing): skipped when the job was metered less than
    BILLING_EVENT_METER_INTERVAL_S ago."""
    now = timezone.now()
    if not status_changed and _metered_recently(job, now):
        return
    cost = JobCost.objects.select_for_update().filter(job_id=job.pk).first()
    if cost is None:
        job_cost_create(job=job, now=now)
        cost = JobCost.objects.select_for_update().get(job_id=job.pk)
    if cost.settled_at is not None:
        return
    meter(job, cost, now)
    cost.save()
    broadcast_cost(cost)


def job_settle(*, job_id, now=None) -> None:
    """Called on commit after a job reached a terminal state: true up its reservation and cost.
    Idempotent: a second call finds it settled and does nothing. A job whose pod is not yet
    confirmed gone is metered, not settled (see below)."""
    from training.models import TrainingJob  # noqa: PLC0415

    now = now or timezone.now()
    with transaction.atomic():
        job = TrainingJob.objects.select_related("dataset").filter(pk=job_id).first()
        if job is None or not states.is_terminal(job.status):
            return
        cost = JobCost.objects.select_for_update().filter(job_id=job_id).first()
        if cost is None:
            job_cost_create(job=job, now=now)
            cost = JobCost.objects.select_for_update().get(job_id=job_id)
        if cost.settled_at is not None:
            return
        pod_mode = job.events.filter(type__in=POD_EVENT_TYPES).exists()
        meter(job, cost, now if pod_mode else (job.finished_at or now))
        if any(seg.get("open") for seg in cost.segments):
            # A pod bills until the provider confirms it gone: the job is settled then (the
            # pod_gone signal, or the enforcer's next pass). One that is never confirmed is
            # settled after BILLING_POD_GONE_WAIT_S, billed up to then.
            waited = (now - job.finished_at).total_seconds() if job.finished_at else 0.0
            if waited < getattr(settings, "BILLING_POD_GONE_WAIT_S", 900):
                cost.save()
                broadcast_cost(cost)
                return
            logger.warning("job %s ended %.0f s ago and its pod is still not confirmed gone; settled with the "
                           "pod billed up to now", job_id, waited)
            for seg in cost.segments:
                seg["open"] = False
        cost.reserved = Decimal("0")
        cost.rate_per_hour = Decimal("0")
        cost.settled_at = now
        cost.final_status = job.status
        cost.actual_duration_s = cost.billable_s
        cost.actual_cost = cost.cost
        cost.save()
        broadcast_cost(cost)
        if job.status == states.COMPLETED:
            throughput_sample_record(job=job, cost=cost)


def _measured_tokens_per_s(job) -> float | None:
    result = job.result or {}
    value = result.get("tokens_per_s") or job.tokens_per_s
    if value:
        return float(value)
    tokens, seconds = result.get("train_tokens"), result.get("train_seconds")
    return float(tokens) / float(seconds) if tokens and seconds else None


def throughput_sample_record(*, job, cost: JobCost) -> ThroughputSample | None:
    """Store what a completed job measured beside the uncalibrated table's prediction, then
    recalibrate its key. Jobs without a measured throughput leave no sample."""
    measured = _measured_tokens_per_s(job)
    if not measured or measured <= 0:
        return None
    try:
        config = config_from_job(job)
        table = estimate(config, calibrated=False)
    except (EstimateError, ValueError):
        return None
    params_b, _ = tables.model_params_b(job.base_model)
    quant = _quantization(config)
    result = job.result or {}
    train_tokens = result.get("train_tokens") or table.training_tokens
    train_seconds = result.get("train_seconds") or (train_tokens / measured)
    # The overhead of a run with interruptions includes redone work: only clean runs teach it.
    overhead = max(0.0, cost.billable_s - float(train_seconds)) if not job.interruptions else 0.0
    sample, _ = ThroughputSample.objects.update_or_create(
        job=job,
        defaults={
            "gpu_type": job.gpu_type, "size_class": tables.size_class(params_b), "quantization": quant,
            "model_params_b": params_b, "max_seq_len": int(config.hyperparameters.max_seq_len),
            "tokens_per_s": measured, "table_tokens_per_s": table.breakdown["table_tokens_per_s"],
            "overhead_s": overhead, "table_overhead_s": table.breakdown["table_overhead_s"] if overhead else 0.0,
        },
    )
    calibration_recompute(gpu_type=sample.gpu_type, size_class=sample.size_class, quantization=sample.quantization)
    return sample


def on_pod_gone(sender=None, *, job_id, pod_id="", **kwargs) -> None:
    """Receiver of training.signals.pod_gone (sent on commit): close the pod's segment now, and
    settle the job when it has ended."""
    try:
        job_settle(job_id=job_id)
        if not JobCost.objects.filter(job_id=job_id, settled_at__isnull=False).exists():
            job_cost_meter(job_id=job_id)
    except Exception:  # noqa: BLE001 - the enforcer's next pass meters and settles anyway
        logger.exception("metering job %s after its pod %s was gone failed", job_id, pod_id)
