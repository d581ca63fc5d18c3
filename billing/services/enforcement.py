"""The budget enforcer (beat, every BILLING_ENFORCE_INTERVAL_S): meter every running job, stop
running jobs of a hard-capped budget whose commitments would cross the limit before the next check,
record and send the threshold alerts. Safe with two schedulers at once: each budget is handled
under its row lock (the second checker skips a locked budget), stops and alerts are idempotent.

Billing decides, training acts: this module chooses which jobs to stop and why, and calls the
`stop` it is given for each one. The jobs app passes its own stop service (training.tasks.
budgets_enforce gives training.services.jobs.job_stop_for_budget); billing never imports it."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import rules
from billing.models import Budget, BudgetAlert, JobCost
from billing.money import usd
from billing.services.budgets import (
    budget_alerts_check,
    budget_numbers,
    horizon_s,
    job_states,
    month_label,
    stop_allowance_s,
)
from billing.services.jobs import job_settle
from billing.services.metering import job_cost_meter, month_of
from billing.services.notifications import alert_deliver_on_commit
from training import states

logger = logging.getLogger(__name__)

# stop(job_id=, reason=): stop the job at its next step boundary, keeping its checkpoint. An
# exception means it could not; the job is counted as running and tried again on the next pass.
StopJob = Callable[..., object]


@dataclass
class EnforceResult:
    metered: int = 0
    settled: int = 0
    stopped: list = field(default_factory=list)
    stop_failed: list = field(default_factory=list)
    alerts: list = field(default_factory=list)


def _meter_open_jobs(now: datetime, result: EnforceResult) -> None:
    open_ids = list(JobCost.objects.filter(settled_at__isnull=True).values_list("job_id", "job__status"))
    for job_id, status in open_ids:
        if states.is_terminal(status):
            # job_settle normally runs on commit of the terminal move; repair a missed one.
            job_settle(job_id=job_id)
            result.settled += 1
        elif status in states.POD_STATES or status == states.INTERRUPTED:
            job_cost_meter(job_id=job_id, now=now)
            result.metered += 1


def _months_to_check(budget: Budget, now: datetime) -> list:
    """This month, plus earlier months that still have a job running (a job is charged to the
    month it started in)."""
    months = {month_of(now)}
    scope = JobCost.objects.filter(organization_id=budget.organization_id, settled_at__isnull=True,
                                   rate_per_hour__gt=0)
    if budget.client:
        scope = scope.filter(client=budget.client)
    months.update(scope.values_list("month", flat=True).distinct())
    return sorted(months)


def budget_enforce(*, budget_id, now: datetime, result: EnforceResult, stop: StopJob) -> None:
    to_stop: list[tuple] = []
    with transaction.atomic():
        budget = Budget.objects.select_for_update(skip_locked=True).filter(pk=budget_id, active=True).first()
        if budget is None:
            return  # another enforcer holds it (or it was switched off)
        for month in _months_to_check(budget, now):
            if budget.hard_cap:
                states_ = job_states(budget, month)
                chosen = rules.jobs_to_stop(states_, budget.limit, now, horizon_s=horizon_s(),
                                            stop_allowance_s=stop_allowance_s())
                if chosen:
                    numbers = budget_numbers(budget, month, now, states=states_)
                    JobCost.objects.filter(job_id__in=chosen).update(stop_requested_at=now)
                    to_stop.extend((job_id, budget, month, numbers) for job_id in chosen)
            result.alerts.extend(budget_alerts_check(budget=budget, month=month, now=now))
    # Stops happen outside the budget's lock: they lock the job and may talk to the provider.
    for job_id, budget, month, numbers in to_stop:
        reason = (f"the {budget.scope} budget for {month_label(month)} would be exceeded "
                  f"({usd(numbers.spent)} spent of {usd(numbers.limit)}); stopped with its checkpoint kept, "
                  "resume it after the limit is raised or next month")
        try:
            stop(job_id=job_id, reason=reason)
            ok = True
        except Exception:  # noqa: BLE001 - one job that cannot be stopped must not spare the others
            logger.exception("stopping job %s at the budget cap failed", job_id)
            ok = False
        if not ok:
            JobCost.objects.filter(job_id=job_id).update(stop_requested_at=None)
            result.stop_failed.append(job_id)
            continue
        result.stopped.append(job_id)
        with transaction.atomic():
            try:
                with transaction.atomic():
                    alert = BudgetAlert.objects.create(
                        budget=budget, month=month, kind=BudgetAlert.KIND_STOPPED, job_id=job_id,
                        spent=numbers.spent, limit=numbers.limit, remaining=numbers.limit - numbers.spent,
                        forecast=numbers.forecast, message=f"Job {job_id} was stopped: {reason}.")
            except IntegrityError:
                continue
            alert_deliver_on_commit(alert.pk)
            result.alerts.append(alert)


def budgets_enforce(*, stop: StopJob, now: datetime | None = None) -> EnforceResult:
    """One pass of the enforcer (training.tasks.budgets_enforce calls this every
    BILLING_ENFORCE_INTERVAL_S, with the jobs app's stop service as `stop`)."""
    now = now or timezone.now()
    result = EnforceResult()
    _meter_open_jobs(now, result)
    for budget_id in Budget.objects.filter(active=True).values_list("pk", flat=True):
        budget_enforce(budget_id=budget_id, now=now, result=result, stop=stop)
    return result
