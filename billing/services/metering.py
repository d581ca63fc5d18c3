"""Live cost: per-second metering of every pod a job rented.

A job is billed for its pods, not its states: one segment per pod, from the pod's own start (its
`pod_launched` / `pod_adopted` audit row, with the provider's start time) until the provider
confirmed it gone (`pod_gone`, with the provider's end time when it gave one), at the pod's own
$/h as the provider reported it at launch and at every reconciliation (`pod_cost`); the catalog's
rate only while none was reported. No pod, no charge: provisioning without a pod, refused creates
and capacity waits cost nothing. Jobs without pod audit rows (from before they were written) are
metered from their transitions, only where a pod is known to have existed.
"""
from __future__ import annotations

import logging
import math
from datetime import datetime, timezone as dt_timezone
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from billing.errors import EstimateError
from billing.models import JobCost
from billing.money import cents, cost_exact, to_decimal
from billing.services.catalog import gpu_rate, gpu_type_get
from training import states
from core.broadcast import broadcast_job_update

logger = logging.getLogger(__name__)


def month_of(moment: datetime) -> "datetime.date":
    moment = timezone.localtime(moment, dt_timezone.utc) if timezone.is_aware(moment) else moment
    return moment.date().replace(day=1)


POD_STARTED_TYPES = ("pod_launched", "pod_adopted")
POD_GONE_TYPE = "pod_gone"
POD_COST_TYPE = "pod_cost"  # a reconciliation: what the provider said the pod costs
POD_EVENT_TYPES = (*POD_STARTED_TYPES, POD_GONE_TYPE, POD_COST_TYPE)


def _from_ts(value) -> datetime | None:
    return datetime.fromtimestamp(float(value), tz=dt_timezone.utc) if value not in (None, "") else None


def billable_intervals(job, now: datetime) -> list[dict]:
    """[{start, end, attempt, open, cost_per_hr, ...}] of the job's billable stretches, oldest first.

    One per pod the job rented (its pod audit rows): from the pod's own start to the provider's
    confirmation that it is gone (the provider's own end time when it gave one), open until then.
    The rate is the pod's own $/h as the provider last reported it (at launch, then at every
    reconciliation). No pod, no charge: refused creates and capacity waits cost nothing.
    Jobs without pod audit rows (from before pods were recorded) fall back to their transitions.
    """
    pod_rows = list(job.events.filter(type__in=POD_EVENT_TYPES).order_by("created_at", "id")
                    .values("created_at", "type", "attempt", "data"))
    if pod_rows:
        return _pod_intervals(job, pod_rows, now)
    return _transition_intervals(job, now)


def _pod_intervals(job, rows: list[dict], now: datetime) -> list[dict]:
    started: dict[str, dict] = {}
    gone: dict[str, dict] = {}
    provider_rate: dict[str, object] = {}
    for row in rows:
        data = row["data"] or {}
        pod_id = data.get("pod_id")
        if not pod_id:
            continue
        if row["type"] in POD_STARTED_TYPES:
            started.setdefault(pod_id, row)
            if data.get("cost_per_hr") is not None:
                provider_rate.setdefault(pod_id, data["cost_per_hr"])
        elif row["type"] == POD_GONE_TYPE:
            gone.setdefault(pod_id, row)
        elif row["type"] == POD_COST_TYPE and data.get("provider_rate") is not None:
            provider_rate[pod_id] = data["provider_rate"]  # the latest reading wins
    intervals = []
    for pod_id, row in started.items():
        data = row["data"] or {}
        start = _from_ts(data.get("started_at")) or row["created_at"]
        end_row = gone.get(pod_id)
        if end_row is not None:
            end = _from_ts((end_row["data"] or {}).get("ended_at")) or end_row["created_at"]
            is_open = False
        else:
            end, is_open = now, True
        intervals.append({"start": start, "end": max(start, end), "attempt": row["attempt"] or job.attempt,
                          "open": is_open, "cost_per_hr": provider_rate.get(pod_id), "pod_id": pod_id,
                          "what": {"gpu_type": data.get("gpu_type", job.gpu_type),
                                   "cloud_type": data.get("cloud_type", job.cloud_type),
                                   "spot": bool(data.get("spot", job.spot))},
                          "bid_per_gpu": data.get("bid_per_gpu", job.bid_per_gpu)})
    intervals.sort(key=lambda i: i["start"])
    return intervals


def _transition_intervals(job, now: datetime) -> list[dict]:
    """The fallback for jobs without pod audit rows: from each move into the pod states to the next
    move out, counted only when a pod is known to have existed in it (the pod reported a stage,
    the launch recorded its rate, or the job holds a pod id now)."""
    transitions = list(job.events.exclude(to_status="").order_by("created_at", "id")
                       .values("created_at", "to_status", "attempt", "pod_timestamp", "source", "data"))
    intervals: list[dict] = []
    if not transitions:
        if job.launched_at is None or not job.pod_id:
            return []
        running = job.status in states.POD_STATES
        end = now if running else (job.finished_at or job.launched_at)
        return [{"start": job.launched_at, "end": max(job.launched_at, end), "attempt": job.attempt, "open": running,
                 "cost_per_hr": None}]
    current = None
    for ev in transitions:
        when = ev["created_at"]
        if ev["to_status"] in states.POD_STATES:
            if current is None:
                data = ev["data"] or {}
                current = {"start": when, "attempt": ev["attempt"] or job.attempt, "open": True,
                           "cost_per_hr": data.get("cost_per_hr"),
                           "pod": data.get("cost_per_hr") is not None}
            if ev["to_status"] != states.PROVISIONING:
                current["pod"] = True
            continue
        if current is not None:
            end = when
            if ev["pod_timestamp"]:
                pod_end = datetime.fromtimestamp(ev["pod_timestamp"], tz=dt_timezone.utc)
                end = min(when, max(current["start"], pod_end))
            current.update(end=end, open=False)
            intervals.append(current)
            current = None
    if current is not None:
        if job.status in states.POD_STATES:
            current.update(end=max(current["start"], now), open=True)
            current["pod"] = current["pod"] or bool(job.pod_id)
        else:  # the closing move was not audited: the job's own end time, else now
            current.update(end=max(current["start"], job.finished_at or now), open=False)
        intervals.append(current)
    return [i for i in intervals if i.pop("pod")]


def _catalog_rate(job, what: dict | None = None, bid=None) -> tuple[Decimal, dict]:
    what = what or {"gpu_type": job.gpu_type, "cloud_type": job.cloud_type, "spot": job.spot}
    bid = job.bid_per_gpu if bid is None else bid
    try:
        rate = gpu_rate(gpu=gpu_type_get(what["gpu_type"]), gpu_id=what["gpu_type"], cloud_type=what["cloud_type"],
                        spot=what["spot"], bid_per_gpu=bid if what["spot"] else None,
                        provider=job.provider)
        per_hour = rate.per_hour * max(1, job.gpu_count)  # catalog prices are per GPU
    except EstimateError:
        # Never bill nothing silently: the metering goes on at 0 and says why in the log.
        logger.error("job %s: GPU type %r has no price; its pod is metered at $0/h until one is set",
                     job.pk, what["gpu_type"])
        per_hour = Decimal("0")
    return per_hour, dict(what)


def meter(job, cost: JobCost, now: datetime) -> JobCost:
    """Recompute `cost` (segments, seconds, total, current rate) for `job` up to `now`.
    Caller holds the JobCost row lock; nothing is saved here."""
    intervals = billable_intervals(job, now)
    old = list(cost.segments or [])
    segments = []
    total = Decimal("0")
    seconds = 0
    open_rate = Decimal("0")
    previous_by_start = {seg.get("start"): seg for seg in old}
    for interval in intervals:
        previous = previous_by_start.get(interval["start"].isoformat())
        if interval.get("cost_per_hr") not in (None, ""):
            # The pod's own price, as the provider reported it: what the bill will say.
            rate, source = to_decimal(interval["cost_per_hr"]), "provider"
            what = interval.get("what") or {"gpu_type": job.gpu_type, "cloud_type": job.cloud_type, "spot": job.spot}
        elif previous is not None:
            rate, source = to_decimal(previous["rate_per_hour"]), previous.get("rate_source", "catalog")
            what = {k: previous.get(k) for k in ("gpu_type", "cloud_type", "spot")}
        else:
            # Not reported yet: the catalog's price (an estimate) until a reconciliation reads it.
            rate, what = _catalog_rate(job, interval.get("what"), interval.get("bid_per_gpu"))
            source = "catalog"
        secs = max(0, math.ceil((interval["end"] - interval["start"]).total_seconds()))
        exact = cost_exact(secs, rate)
        total += exact
        seconds += secs
        if interval["open"]:
            open_rate = rate
        segment = {"attempt": interval["attempt"], "start": interval["start"].isoformat(),
                   "end": interval["end"].isoformat(), "open": interval["open"], "seconds": secs,
                   "rate_per_hour": str(rate), "rate_source": source, "cost": str(exact), **what}
        if interval.get("pod_id"):
            segment["pod_id"] = interval["pod_id"]
        if previous is not None and previous.get("provider"):
            segment["provider"] = previous["provider"]  # the last reconciliation's reading
        segments.append(segment)
    cost.segments = segments
    cost.billable_s = seconds
    # One rounding per job: reports add these cents, so totals equal the sum of their parts.
    new_cost = cents(total)
    # A stale reader (an older `now` than the last metering) must not undo a newer reading; a
    # current one may lower the cost (the provider's rate or end time replaced an estimate).
    stale = cost.metered_at is not None and now < cost.metered_at
    cost.cost = max(new_cost, cost.cost) if cost.settled_at is None and open_rate and stale else new_cost
    cost.rate_per_hour = open_rate
    cost.metered_at = now
    return cost


def job_cost_meter(*, job_id, now: datetime | None = None) -> JobCost | None:
    """Meter one job in its own transaction (the beat task's path). Locks only the JobCost row."""
    from training.models import TrainingJob  # noqa: PLC0415

    now = now or timezone.now()
    with transaction.atomic():
        cost = JobCost.objects.select_for_update().filter(job_id=job_id).first()
        job = TrainingJob.objects.select_related("dataset").filter(pk=job_id).first()
        if job is None:
            return None
        if cost is None:
            from billing.services.jobs import job_cost_create  # noqa: PLC0415

            cost = job_cost_create(job=job, now=now)
            cost = JobCost.objects.select_for_update().get(pk=cost.pk)
        if cost.settled_at is not None:
            return cost
        meter(job, cost, now)
        cost.save()
        broadcast_cost(cost)
    return cost


def cost_payload(cost: JobCost) -> dict:
    return {
        "kind": "cost",
        "cost": {
            "spent": str(cost.cost),
            "rate_per_hour": str(cost.rate_per_hour),
            "billable_s": cost.billable_s,
            "estimate": {"low": str(cost.est_cost_low), "point": str(cost.est_cost), "high": str(cost.est_cost_high)},
            "reserved": str(cost.reserved),
            "metered_at": cost.metered_at.isoformat() if cost.metered_at else None,
            "settled": cost.settled_at is not None,
        }
    }


def broadcast_cost(cost: JobCost) -> None:
    """Push the job's cost to its websocket group after the transaction commits (best effort:
    broadcast_job_update never raises)."""
    job_id, organization_id, payload = str(cost.job_id), cost.organization_id, cost_payload(cost)
    transaction.on_commit(lambda: broadcast_job_update(job_id, payload, organization_id))
