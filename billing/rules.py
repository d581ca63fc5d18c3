"""The budget rules as plain functions of numbers and times (no database), so that admission, the
enforcer and the simulated-clock tests run exactly the same arithmetic.

Commitment of one job at time `now` — what the month must still be able to pay for it:

    settled                      its final cost
    queued / between attempts    max(reserved, cost)
    running                      max(reserved, cost so far + rate × horizon)
    stop requested               cost so far + rate × (stop allowance not yet used)   (its reservation is released)

`horizon` = enforcement interval + stop allowance (how long a stopped pod may still bill).
Admission refuses a start when the budget's commitments plus the new reservation exceed the limit;
the enforcer stops running jobs while the commitments exceed it. docs/billing.md proves the bound.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Iterable

ZERO = Decimal("0")


@dataclass(frozen=True)
class JobState:
    job_id: Any
    cost: Decimal                 # metered at `metered_at`
    reserved: Decimal
    rate_per_hour: Decimal        # of the pod billing now; 0 when none is
    metered_at: datetime | None
    settled: bool = False
    stop_requested_at: datetime | None = None
    started_at: datetime | None = None

    @property
    def running(self) -> bool:
        return not self.settled and self.rate_per_hour > 0


def _per_s(rate_per_hour: Decimal) -> Decimal:
    return rate_per_hour / Decimal(3600)


def accrued(job: JobState, now: datetime) -> Decimal:
    """Cost so far, extrapolated from the last metering at the current rate."""
    if not job.running or job.metered_at is None:
        return job.cost
    elapsed = max(0.0, (now - job.metered_at).total_seconds())
    return job.cost + _per_s(job.rate_per_hour) * Decimal(str(elapsed))


def commitment(job: JobState, now: datetime, *, horizon_s: float, stop_allowance_s: float) -> Decimal:
    if job.settled:
        return job.cost
    if not job.running:
        return max(job.reserved, job.cost)
    so_far = accrued(job, now)
    if job.stop_requested_at is not None:
        used = max(0.0, (now - job.stop_requested_at).total_seconds())
        # A stop that overran its allowance is counted like a running job (it may go on).
        left = stop_allowance_s - used if used <= stop_allowance_s else horizon_s
        return so_far + _per_s(job.rate_per_hour) * Decimal(str(left))
    return max(job.reserved, so_far + _per_s(job.rate_per_hour) * Decimal(str(horizon_s)))


def total_commitment(jobs: Iterable[JobState], now: datetime, *, horizon_s: float, stop_allowance_s: float) -> Decimal:
    return sum((commitment(j, now, horizon_s=horizon_s, stop_allowance_s=stop_allowance_s) for j in jobs), ZERO)


def minimum_reservation(rate_per_hour: Decimal, horizon_s: float) -> Decimal:
    """A start reserves at least one horizon of its pod's time, so a job that runs past a far too
    short estimate is still covered until the enforcer sees it."""
    return (_per_s(rate_per_hour) * Decimal(str(horizon_s))).quantize(Decimal("0.01"), rounding="ROUND_CEILING")


def admission_allows(committed: Decimal, reservation: Decimal, limit: Decimal) -> bool:
    return committed + reservation <= limit


def jobs_to_stop(jobs: list[JobState], limit: Decimal, now: datetime, *, horizon_s: float,
                 stop_allowance_s: float) -> list[Any]:
    """The running jobs to stop so the commitments fit the limit again (empty when they fit).
    Jobs past their reservation go first, then the most expensive per hour, then the newest."""
    total = total_commitment(jobs, now, horizon_s=horizon_s, stop_allowance_s=stop_allowance_s)
    if total <= limit:
        return []
    candidates = [j for j in jobs if j.running and j.stop_requested_at is None]

    def overrunning(j: JobState) -> bool:
        return accrued(j, now) + _per_s(j.rate_per_hour) * Decimal(str(horizon_s)) > j.reserved

    candidates.sort(key=lambda j: (not overrunning(j), -j.rate_per_hour,
                                   -(j.started_at.timestamp() if j.started_at else 0.0)))
    chosen = []
    for j in candidates:
        before = commitment(j, now, horizon_s=horizon_s, stop_allowance_s=stop_allowance_s)
        after = commitment(replace(j, stop_requested_at=now), now, horizon_s=horizon_s,
                           stop_allowance_s=stop_allowance_s)
        total -= before - after
        chosen.append(j.job_id)
        if total <= limit:
            break
    return chosen


def thresholds_due(spent: Decimal, limit: Decimal, thresholds: Iterable[int], fired: Iterable[int]) -> list[int]:
    """Thresholds (percent) that `spent` has reached and that have not fired yet this month."""
    fired = set(fired)
    if limit <= 0:
        return sorted(t for t in thresholds if t not in fired)
    return sorted(t for t in thresholds if t not in fired and spent * 100 >= limit * t)


def month_bounds(month: date) -> tuple[date, date]:
    last = calendar.monthrange(month.year, month.month)[1]
    nxt = month.replace(day=last) + timedelta(days=1)
    return month.replace(day=1), nxt


def forecast(spent: Decimal, open_commitments: Decimal, month: date, now: datetime) -> Decimal:
    """Spend expected by month end: the larger of (spent + what queued and running jobs still
    reserve) and the month-to-date pace carried to the end of the month."""
    start, end = month_bounds(month)
    total_s = (end - start).total_seconds() if hasattr(end - start, "total_seconds") else (end - start).days * 86400
    start_dt = datetime(start.year, start.month, start.day, tzinfo=now.tzinfo)
    elapsed = min(max((now - start_dt).total_seconds(), 0.0), total_s)
    pace = spent * Decimal(str(total_s / elapsed)) if elapsed >= 3600 else spent
    return max(spent + open_commitments, pace).quantize(Decimal("0.01"))
