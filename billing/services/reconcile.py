"""Reconciliation against the provider (beat, every BILLING_RECONCILE_INTERVAL_S): for every live
pod a job is billed for, read what the provider says it costs (its own costPerHr × its uptime) and
set it beside the recorded segment. The reading is kept on the segment (`provider`: rate, uptime,
cost, when) for the spend report; a difference (another rate, or more than
BILLING_RECONCILE_TOLERANCE_S of uptime apart) is recorded as a `pod_cost` event on the job, and
the provider's rate then prices the segment (metering reads the latest `pod_cost`)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.models import JobCost
from billing.money import cost_exact, to_decimal
from billing.services.metering import POD_COST_TYPE, broadcast_cost, meter

logger = logging.getLogger(__name__)


@dataclass
class CostReconcileResult:
    pods_checked: int = 0
    differences: list[dict] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _tolerance_s() -> float:
    return float(getattr(settings, "BILLING_RECONCILE_TOLERANCE_S", 5))


def _provider_pods(provider_name: str) -> dict[str, object]:
    from training.providers import get_provider, pod_name_prefix  # noqa: PLC0415

    return {p.pod_id: p for p in get_provider(provider_name).list(pod_name_prefix() + "-")}


def costs_reconcile(*, now: datetime | None = None) -> CostReconcileResult:
    from training.models import JobEvent, TrainingJob  # noqa: PLC0415
    from training.providers import ProviderError  # noqa: PLC0415

    now = now or timezone.now()
    result = CostReconcileResult()
    from training import states  # noqa: PLC0415

    # Jobs in a pod state, and any other unsettled job still billed for an open pod.
    open_jobs = [(c.job_id, c.job.provider) for c in JobCost.objects.filter(settled_at__isnull=True)
                 .select_related("job").only("job_id", "job__provider", "job__status", "segments")
                 if c.job.status in states.POD_STATES
                 or any(s.get("open") and s.get("pod_id") for s in (c.segments or []))]
    pods_by_provider: dict[str, dict] = {}
    for provider_name in sorted({p for _, p in open_jobs}):
        try:  # one list call per provider, outside any lock (it may take seconds)
            pods_by_provider[provider_name] = _provider_pods(provider_name)
        except ProviderError as exc:
            result.failed[provider_name] = str(exc)
            logger.warning("cost reconciliation: listing %s pods failed: %s", provider_name, exc)
    for job_id, provider_name in open_jobs:
        pods = pods_by_provider.get(provider_name)
        if pods is None:
            continue
        with transaction.atomic():
            cost = JobCost.objects.select_for_update().filter(job_id=job_id, settled_at__isnull=True).first()
            job = TrainingJob.objects.filter(pk=job_id).first()
            if cost is None or job is None:
                continue
            meter(job, cost, now)
            changed = False
            for seg in cost.segments:
                info = pods.get(seg.get("pod_id") or "")
                if not seg.get("open") or info is None or info.cost_per_hr is None:
                    continue
                result.pods_checked += 1
                rate = to_decimal(info.cost_per_hr)
                uptime = float(info.uptime_s) if info.uptime_s is not None else None
                provider_cost = cost_exact(int(uptime), rate) if uptime is not None else None
                reading = {"rate_per_hour": str(rate), "uptime_s": uptime,
                           "cost": str(provider_cost) if provider_cost is not None else None, "at": now.isoformat()}
                seg["provider"] = reading
                recorded_rate = to_decimal(seg["rate_per_hour"])
                seconds_apart = (seg["seconds"] - uptime) if uptime is not None else 0.0
                last = (JobEvent.objects.filter(job=job, type=POD_COST_TYPE, data__pod_id=seg["pod_id"])
                        .order_by("-created_at", "-id").values_list("data", flat=True).first()) or {}
                # A standing gap (RunPod's uptime is the container's: the image pull is not in it)
                # is recorded once, again only when it moves or the rate changes.
                same_as_last = (last and to_decimal(last.get("provider_rate")) == rate
                                and abs(float(last.get("seconds_apart") or 0) - seconds_apart) <= _tolerance_s())
                if (rate != recorded_rate or abs(seconds_apart) > _tolerance_s()) and not same_as_last:
                    difference = {
                        "pod_id": seg["pod_id"], "provider_rate": float(rate), "uptime_s": uptime,
                        "provider_cost": reading["cost"], "recorded_rate": str(recorded_rate),
                        "recorded_seconds": seg["seconds"], "recorded_cost": seg["cost"],
                        "seconds_apart": seconds_apart,
                        "difference": str(to_decimal(seg["cost"]) - provider_cost) if provider_cost is not None else None,
                    }
                    JobEvent.objects.create(
                        job=job, event_id=f"pod-cost-{seg['pod_id']}-{int(now.timestamp())}",
                        source=JobEvent.SOURCE_SYSTEM, type=POD_COST_TYPE, attempt=seg.get("attempt") or job.attempt,
                        message=(f"pod {seg['pod_id']}: the provider bills ${rate}/h × {uptime or 0:.0f} s, recorded "
                                 f"${recorded_rate}/h × {seg['seconds']} s"
                                 + ("; the provider's rate now prices it" if rate != recorded_rate else "")),
                        data=difference)
                    result.differences.append({"job": str(job_id), **difference})
                    changed = True
            if changed:
                readings = {s.get("pod_id"): s.get("provider") for s in cost.segments if s.get("provider")}
                meter(job, cost, now)  # re-priced from the provider's rate
                for seg in cost.segments:
                    if seg.get("pod_id") in readings:
                        seg["provider"] = readings[seg["pod_id"]]
            cost.save()
            broadcast_cost(cost)
    return result


def provider_figure(segments: list[dict]) -> Decimal | None:
    """What the provider said the job's pods cost at their last reading (None: never read)."""
    readings = [s["provider"] for s in segments or [] if s.get("provider") and s["provider"].get("cost")]
    if not readings:
        return None
    return sum((to_decimal(r["cost"]) for r in readings), Decimal("0"))
