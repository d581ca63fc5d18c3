"""Budgets: create/change them, the numbers of a month, admission by reservation, alerts."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q

from billing import rules
from billing.errors import BudgetExceeded, EstimateError
from billing.models import Budget, BudgetAlert, GpuType, JobCost
from billing.money import cents, to_decimal, usd
from billing.services.estimates import Estimate, EstimateConfig, estimate, with_changes
from core.errors import DomainError

logger = logging.getLogger(__name__)


def horizon_s() -> float:
    return float(settings.BILLING_ENFORCE_INTERVAL_S + settings.BILLING_STOP_ALLOWANCE_S)


def stop_allowance_s() -> float:
    return float(settings.BILLING_STOP_ALLOWANCE_S)


def alert_interval_s() -> float:
    """How late a threshold crossing can be noticed: the metering and checking interval."""
    return float(settings.BILLING_ENFORCE_INTERVAL_S)


def month_label(month: date) -> str:
    return month.strftime("%B %Y")


# -- budgets -------------------------------------------------------------------------------------

def _clean_thresholds(thresholds) -> list[int]:
    if thresholds is None:
        return list(settings.BILLING_DEFAULT_THRESHOLDS)
    try:
        values = sorted({int(t) for t in thresholds})
    except (TypeError, ValueError) as exc:
        raise DomainError("thresholds must be whole percentages, e.g. [80, 95]", code="invalid_thresholds") from exc
    if any(not 0 < t <= 100 for t in values):
        raise DomainError("each threshold must be between 1 and 100 (percent of the limit)", code="invalid_thresholds")
    return values


def budget_create(*, organization, limit, client: str = "", thresholds=None, hard_cap: bool = True,
                  notify_emails: str = "", created_by=None) -> Budget:
    limit = cents(to_decimal(limit))
    if limit < 0:
        raise DomainError("a budget limit cannot be negative", code="invalid_limit")
    try:
        with transaction.atomic():
            return Budget.objects.create(organization=organization, client=client or "", limit=limit,
                                         thresholds=_clean_thresholds(thresholds), hard_cap=hard_cap,
                                         notify_emails=notify_emails or "", created_by=created_by)
    except IntegrityError as exc:
        scope = f"client {client!r}" if client else "the whole organization"
        raise DomainError(f"there is already a budget for {scope}; change that one instead",
                          code="budget_exists", detail={"client": client}) from exc


def budget_update(*, budget: Budget, **changes) -> Budget:
    with transaction.atomic():
        budget = Budget.objects.select_for_update().get(pk=budget.pk)
        if "limit" in changes:
            limit = cents(to_decimal(changes.pop("limit")))
            if limit < 0:
                raise DomainError("a budget limit cannot be negative", code="invalid_limit")
            budget.limit = limit
        if "thresholds" in changes:
            budget.thresholds = _clean_thresholds(changes.pop("thresholds"))
        for key in ("hard_cap", "active", "notify_emails"):
            if key in changes:
                setattr(budget, key, changes.pop(key))
        if changes:
            raise DomainError(f"cannot change {', '.join(sorted(changes))} of a budget", code="invalid_input")
        budget.save()
    return budget


# -- the numbers of one month --------------------------------------------------------------------

def _scope(budget: Budget) -> Q:
    q = Q(organization_id=budget.organization_id)
    return q & Q(client=budget.client) if budget.client else q


def job_states(budget: Budget, month: date, *, exclude_job=None) -> list[rules.JobState]:
    rows = JobCost.objects.filter(_scope(budget), month=month)
    if exclude_job is not None:
        rows = rows.exclude(job_id=exclude_job)
    return [
        rules.JobState(job_id=r["job_id"], cost=r["cost"], reserved=r["reserved"], rate_per_hour=r["rate_per_hour"],
                       metered_at=r["metered_at"], settled=r["settled_at"] is not None,
                       stop_requested_at=r["stop_requested_at"], started_at=r["created_at"])
        for r in rows.values("job_id", "cost", "reserved", "rate_per_hour", "metered_at", "settled_at",
                             "stop_requested_at", "created_at")
    ]


@dataclass(frozen=True)
class BudgetNumbers:
    budget: Budget
    month: date
    limit: Decimal
    spent: Decimal          # metered cost of the month's jobs (what has been paid for)
    reserved: Decimal       # what queued and running jobs still hold beyond their cost
    committed: Decimal      # spent + reserved, running jobs projected over the horizon
    remaining: Decimal      # limit − committed (what a new start may reserve)
    forecast: Decimal
    open_jobs: int
    running_jobs: int

    @property
    def percent_spent(self) -> float:
        return float(self.spent * 100 / self.limit) if self.limit else 0.0

    def to_dict(self) -> dict:
        return {
            "budget": self.budget.pk, "month": self.month.strftime("%Y-%m"), "limit": str(self.limit),
            "spent": str(self.spent), "reserved": str(self.reserved), "committed": str(self.committed),
            "remaining": str(self.remaining), "forecast": str(self.forecast),
            "percent_spent": round(self.percent_spent, 1), "open_jobs": self.open_jobs,
            "running_jobs": self.running_jobs,
        }


def budget_numbers(budget: Budget, month: date, now: datetime, *, states: list[rules.JobState] | None = None) -> BudgetNumbers:
    states = job_states(budget, month) if states is None else states
    spent = sum((j.cost for j in states), Decimal("0"))
    open_states = [j for j in states if not j.settled]
    reserved = sum((max(Decimal("0"), j.reserved - j.cost) for j in open_states), Decimal("0"))
    committed = cents(rules.total_commitment(states, now, horizon_s=horizon_s(), stop_allowance_s=stop_allowance_s()))
    return BudgetNumbers(
        budget=budget, month=month, limit=budget.limit, spent=spent, reserved=reserved, committed=committed,
        remaining=budget.limit - committed, forecast=rules.forecast(spent, reserved, month, now),
        open_jobs=len(open_states), running_jobs=sum(1 for j in open_states if j.running),
    )


def budgets_for(*, organization_id, client: str):
    return Budget.objects.filter(organization_id=organization_id, active=True).filter(
        Q(client="") | Q(client=client or "")).order_by("pk")


# -- admission -----------------------------------------------------------------------------------

def reservation_for(est: Estimate) -> Decimal:
    return max(est.cost.high, rules.minimum_reservation(est.rate_per_hour, horizon_s()))


def budget_admit(*, job, est: Estimate, config: EstimateConfig | None, month: date, now: datetime) -> Decimal:
    """Reserve the high end of `est` for `job` against every hard-capped budget it falls under.
    Holds the budgets' row locks until the caller's transaction ends, so concurrent starts are
    decided one after another against up-to-date commitments. Raises BudgetExceeded."""
    reservation = reservation_for(est)
    budgets = list(budgets_for(organization_id=job.organization_id, client=job.client)
                   .filter(hard_cap=True).select_for_update())
    refusals = []
    for budget in budgets:
        numbers = budget_numbers(budget, month, now, states=job_states(budget, month, exclude_job=job.pk))
        if not rules.admission_allows(numbers.committed, reservation, budget.limit):
            refusals.append(numbers)
    if refusals:
        tightest = min(refusals, key=lambda n: n.remaining)
        message, detail = _refusal(tightest, est, reservation, config)
        raise BudgetExceeded(message, detail=detail)
    return reservation


def _refusal(numbers: BudgetNumbers, est: Estimate, reservation: Decimal, config: EstimateConfig | None):
    available = max(Decimal("0"), numbers.remaining)
    budget = numbers.budget
    scope = f"the budget of client {budget.client!r}" if budget.client else "the organization's budget"
    others = numbers.open_jobs
    message = (f"This run may cost up to {usd(reservation)} (estimate {usd(est.cost.point)}); {scope} for "
               f"{month_label(numbers.month)} has {usd(available)} left of {usd(numbers.limit)} "
               f"({usd(numbers.spent)} spent, {usd(numbers.reserved)} reserved by {others} queued or running "
               f"job{'s' if others != 1 else ''}).")
    options = alternatives(config, available) if config is not None else []
    if options:
        message += " What would fit: " + "; ".join(o["text"] for o in options) + "."
    else:
        message += (" Nothing smaller fits: wait for running jobs to finish, or ask a budget manager to raise "
                    "the limit.")
    detail = {"budget": budget.pk, "client": budget.client, "month": numbers.month.strftime("%Y-%m"),
              "limit": str(numbers.limit), "spent": str(numbers.spent), "reserved": str(numbers.reserved),
              "remaining": str(available), "needed": str(reservation), "alternatives": options}
    return message, detail


def _reserve_of(config: EstimateConfig) -> Decimal | None:
    try:
        return reservation_for(estimate(config))
    except (EstimateError, ValueError):
        return None


def alternatives(config: EstimateConfig, available: Decimal) -> list[dict]:
    """Changes to `config` whose reservation fits in `available`: fewer epochs, spot, a cheaper GPU."""
    options: list[dict] = []
    epochs = float(config.hyperparameters.num_epochs)
    step = 0.5
    candidate = (int(epochs / step) * step) if epochs > step else 0
    if candidate >= epochs:
        candidate -= step
    while candidate >= step:
        needed = _reserve_of(with_changes(config, num_epochs=candidate))
        if needed is not None and needed <= available:
            options.append({"change": {"num_epochs": candidate}, "reserve": str(needed),
                            "text": f"{candidate:g} epochs instead of {epochs:g} (up to {usd(needed)})"})
            break
        candidate -= step
    if not config.spot:
        needed = _reserve_of(with_changes(config, spot=True))
        if needed is not None and needed <= available:
            options.append({"change": {"spot": True}, "reserve": str(needed),
                            "text": f"a spot pod instead of on-demand (up to {usd(needed)})"})
    fitting = []
    for gpu in GpuType.objects.filter(active=True).exclude(gpu_id=config.gpu_type):
        try:
            est = estimate(with_changes(config, gpu_type=gpu.gpu_id))
        except (EstimateError, ValueError):
            continue
        needed = reservation_for(est)
        if est.fits_memory and needed <= available:
            fitting.append((needed, gpu))
    for needed, gpu in sorted(fitting, key=lambda p: p[0])[:2]:
        options.append({"change": {"gpu_type": gpu.gpu_id}, "reserve": str(needed),
                        "text": f"{gpu.display_name} instead of {config.gpu_type} (up to {usd(needed)})"})
    return options


# -- alerts --------------------------------------------------------------------------------------

def budget_alerts_check(*, budget: Budget, month: date, now: datetime) -> list[BudgetAlert]:
    """Record an alert for each threshold the month's spend has reached and that has not fired
    yet. The constraint (budget, month, threshold) makes it once even with two checkers at once.
    Delivery (e-mail, Slack) happens after commit, for new alerts only."""
    from billing.services.notifications import alert_deliver_on_commit  # noqa: PLC0415

    states_ = job_states(budget, month)
    numbers = budget_numbers(budget, month, now, states=states_)
    # Spend at this moment: settled costs plus every running job's metered cost carried to now at
    # its pod's rate. Checked every metering interval, so a crossing is noticed at most one
    # interval late, by at most (interval × the running jobs' rate) past the threshold.
    spent_now = cents(sum((rules.accrued(j, now) for j in states_), Decimal("0")))
    running_rate = sum((j.rate_per_hour for j in states_ if j.running), Decimal("0"))
    late_s = alert_interval_s()
    bound = cents(running_rate * Decimal(late_s) / Decimal(3600))
    percent = float(spent_now * 100 / numbers.limit) if numbers.limit else 0.0
    fired = set(BudgetAlert.objects.filter(budget=budget, month=month, kind=BudgetAlert.KIND_THRESHOLD)
                .values_list("threshold", flat=True))
    created = []
    for threshold in rules.thresholds_due(spent_now, numbers.limit, budget.threshold_list(), fired):
        message = (f"{'Client ' + budget.client if budget.client else budget.organization.name} has spent "
                   f"{usd(spent_now)} of its {usd(numbers.limit)} budget for {month_label(month)} "
                   f"({percent:.0f}%, threshold {threshold}%), running jobs included. Remaining "
                   f"{usd(max(numbers.limit - spent_now, Decimal('0')))}"
                   f" (after reservations {usd(max(numbers.remaining, Decimal('0')))}); forecast to month end "
                   f"{usd(numbers.forecast)}. Running jobs bill {usd(running_rate)}/h and spend is checked every "
                   f"{late_s:g} s: this notice is at most {late_s:g} s late ({usd(bound)}), and "
                   + (f"the hard cap can be overshot by at most {usd(bound)} (metering interval × running rate) "
                      "while its checks run on time." if budget.hard_cap else
                      "this budget has no hard cap: nothing stops the jobs."))
        try:
            with transaction.atomic():
                alert = BudgetAlert.objects.create(
                    budget=budget, month=month, kind=BudgetAlert.KIND_THRESHOLD, threshold=threshold,
                    spent=spent_now, limit=numbers.limit, remaining=numbers.limit - spent_now,
                    forecast=numbers.forecast, message=message)
        except IntegrityError:
            continue  # another checker recorded it first: it delivers it
        alert_deliver_on_commit(alert.pk)
        created.append(alert)
    return created
