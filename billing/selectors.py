"""Reads: spend reports, budget status, the estimator's accuracy. Every amount is a sum of
JobCost.cost (each job rounded once to the cent), so every total equals the sum of its parts."""
from __future__ import annotations

import csv
import io
import math
import statistics
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.utils import timezone

from billing import rules
from billing.models import Budget, BudgetAlert, JobCost
from billing.money import cents
from billing.services.budgets import budget_numbers
from billing.services.metering import month_of
from core.errors import DomainError

ZERO = Decimal("0.00")


def parse_month(text: str | None, now: datetime | None = None) -> date:
    """'2026-03' → date(2026, 3, 1); None → this month."""
    if not text:
        return month_of(now or timezone.now())
    try:
        year, month = text.split("-")[:2]
        return date(int(year), int(month), 1)
    except (ValueError, TypeError) as exc:
        raise DomainError(f"month must look like 2026-03 (got {text!r})", code="invalid_month") from exc


def _costs(organization, month: date | None = None, client: str | None = None):
    rows = JobCost.objects.filter(organization=organization)
    if month is not None:
        rows = rows.filter(month=month)
    if client:
        rows = rows.filter(client=client)
    return rows


def spend_by_month(*, organization, months: int = 12, now: datetime | None = None) -> list[dict]:
    now = now or timezone.now()
    first = month_of(now)
    for _ in range(months - 1):
        first = (first - timedelta(days=1)).replace(day=1)
    rows = (_costs(organization).filter(month__gte=first).values("month")
            .annotate(spent=Sum("cost"), jobs=Count("job")).order_by("month"))
    return [{"month": r["month"].strftime("%Y-%m"), "spent": r["spent"] or ZERO, "jobs": r["jobs"]} for r in rows]


def spend_by_user(*, organization, month: date) -> list[dict]:
    rows = (_costs(organization, month).values("created_by__username")
            .annotate(spent=Sum("cost"), jobs=Count("job")).order_by("-spent", "created_by__username"))
    return [{"user": r["created_by__username"] or "(unknown)", "spent": r["spent"] or ZERO, "jobs": r["jobs"]} for r in rows]


def spend_by_client(*, organization, month: date) -> list[dict]:
    rows = (_costs(organization, month).values("client")
            .annotate(spent=Sum("cost"), jobs=Count("job")).order_by("-spent", "client"))
    return [{"client": r["client"] or "(none)", "spent": r["spent"] or ZERO, "jobs": r["jobs"]} for r in rows]


def spend_by_job(*, organization, month: date, client: str | None = None) -> list[dict]:
    rows = (_costs(organization, month, client).select_related("job", "created_by")
            .order_by("created_at"))
    return [
        {
            "job": str(c.job_id), "name": c.job.name, "status": c.job.status, "client": c.client,
            "user": c.created_by.username if c.created_by else "", "gpu_type": c.job.gpu_type,
            "cloud_type": c.job.cloud_type, "spot": c.job.spot, "billable_s": c.billable_s,
            "spent": c.cost, "estimate": c.est_cost, "estimate_high": c.est_cost_high,
            "reserved": c.reserved if c.settled_at is None else ZERO, "running": c.running,
            "settled": c.settled_at is not None,
            # What the provider said the pods cost at the last reconciliation (blank: never read).
            "provider_cost": _provider_cost(c),
        }
        for c in rows
    ]


def _provider_cost(cost: JobCost):
    from billing.services.reconcile import provider_figure  # noqa: PLC0415

    figure = provider_figure(cost.segments)
    return cents(figure) if figure is not None else None


def spend_total(*, organization, month: date) -> Decimal:
    return _costs(organization, month).aggregate(total=Sum("cost"))["total"] or ZERO


CSV_COLUMNS = ["job", "name", "status", "client", "user", "gpu_type", "cloud_type", "spot", "billable_s",
               "spent", "provider_cost", "estimate", "estimate_high", "reserved", "running", "settled"]


def spend_csv(*, organization, month: date) -> str:
    """One line per job of the month and a total line (the sum of the lines above, to the cent)."""
    rows = spend_by_job(organization=organization, month=month)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.2f}" if isinstance(v, Decimal) else ("" if v is None else v)) for k, v in row.items()})
    total = sum((r["spent"] for r in rows), ZERO)
    writer.writerow({"job": "TOTAL", "spent": f"{total:.2f}"})
    return out.getvalue()


def budget_status(*, budget: Budget, month: date, now: datetime | None = None) -> dict:
    """The budget page: numbers, alerts fired, and a daily cumulative spend series for the chart
    (spend by the day each job was admitted; a running job's cost so far counts on its first day)."""
    now = now or timezone.now()
    numbers = budget_numbers(budget, month, now)
    start, end = rules.month_bounds(month)
    scope = Q(organization_id=budget.organization_id, month=month)
    if budget.client:
        scope &= Q(client=budget.client)
    by_day: dict[date, Decimal] = {}
    for created, cost in JobCost.objects.filter(scope).values_list("created_at", "cost"):
        day = timezone.localtime(created, timezone.get_fixed_timezone(0)).date()
        by_day[day] = by_day.get(day, ZERO) + cost
    series, running = [], ZERO
    day = start
    last_day = min(end - timedelta(days=1), timezone.localtime(now, timezone.get_fixed_timezone(0)).date())
    while day <= last_day:
        running += by_day.get(day, ZERO)
        series.append({"date": day.isoformat(), "spent": str(running)})
        day += timedelta(days=1)
    alerts = BudgetAlert.objects.filter(budget=budget, month=month).order_by("created_at")
    return {
        **numbers.to_dict(),
        "client": budget.client, "hard_cap": budget.hard_cap, "thresholds": budget.threshold_list(),
        "alerts": [{"kind": a.kind, "threshold": a.threshold, "job": str(a.job_id) if a.job_id else None,
                    "message": a.message, "created_at": a.created_at.isoformat()} for a in alerts],
        "chart": {"limit": str(budget.limit), "daily_cumulative": series},
    }


def estimate_accuracy(*, organization=None, since: datetime | None = None) -> dict:
    """Estimate error over completed jobs: (estimate − actual) / actual of duration and cost, the
    mean absolute error and the share within ±10% and ±15%."""
    rows = JobCost.objects.filter(final_status="completed", actual_duration_s__gt=0, est_duration_s__gt=0)
    if organization is not None:
        rows = rows.filter(organization=organization)
    if since is not None:
        rows = rows.filter(settled_at__gte=since)
    jobs = []
    for c in rows.order_by("settled_at"):
        jobs.append({"job": str(c.job_id), "estimate_s": c.est_duration_s, "actual_s": c.actual_duration_s,
                     "duration_error": round(c.duration_error, 4),
                     "estimate_cost": str(c.est_cost), "actual_cost": str(c.actual_cost),
                     "cost_error": round(c.cost_error, 4) if c.cost_error is not None else None,
                     "within_range": c.est_duration_low_s <= c.actual_duration_s <= c.est_duration_high_s})
    return {"jobs": jobs, "duration": _error_summary([j["duration_error"] for j in jobs]),
            "cost": _error_summary([j["cost_error"] for j in jobs if j["cost_error"] is not None]),
            "within_range": (sum(j["within_range"] for j in jobs) / len(jobs)) if jobs else None}


def _error_summary(errors: list[float]) -> dict:
    if not errors:
        return {"count": 0, "mean_abs_error": None, "bias": None, "within_10": None, "within_15": None}
    return {
        "count": len(errors),
        "mean_abs_error": round(statistics.fmean(abs(e) for e in errors), 4),
        "bias": round(statistics.fmean(errors), 4),
        "within_10": round(sum(abs(e) <= 0.10 for e in errors) / len(errors), 4),
        "within_15": round(sum(abs(e) <= 0.15 for e in errors) / len(errors), 4),
    }


def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def estimate_accuracy_for_kind(*, organization, gpu_type: str, base_model: str, provider: str = "",
                               limit: int = 200) -> dict:
    """How far the estimates of completed jobs of the same kind (GPU type and model size class,
    on the same provider) were from what they really cost: median and 90th percentile of
    |actual − estimate| ÷ actual, over the last `limit` such jobs. Measured on cost when each of
    those jobs cost at least $1 (cent rounding below 1%), else on duration (the same error at one
    rate, without the rounding; also what a free provider has)."""
    from billing import tables  # noqa: PLC0415

    params_b, _ = tables.model_params_b(base_model)
    size = tables.size_class(params_b)
    rows = (JobCost.objects.filter(organization=organization, final_status="completed", actual_duration_s__gt=0,
                                   est_duration_s__gt=0, job__gpu_type=gpu_type)
            .select_related("job").order_by("-settled_at"))
    if provider:
        rows = rows.filter(job__provider=provider)
    costs, durations = [], []
    for c in rows[: limit * 3]:
        if tables.size_class(tables.model_params_b(c.job.base_model)[0]) != size:
            continue
        durations.append(abs(c.actual_duration_s - c.est_duration_s) / c.actual_duration_s)
        if c.actual_cost and c.actual_cost >= 1:  # below $1 the cent rounding alone is > 1%
            costs.append(float(abs(c.actual_cost - c.est_cost) / c.actual_cost))
        if len(durations) >= limit:
            break
    measure, errors = ("cost", costs) if costs and len(costs) == len(durations) else ("duration", durations)
    kind = {"gpu_type": gpu_type, "size_class": size, "provider": provider or None}
    if not errors:
        return {"kind": kind, "completed_jobs": 0, "measure": None, "median": None, "p90": None,
                "text": "No completed job of this kind yet: the estimate's range is the table's prior."}
    median, p90 = statistics.median(errors), _nearest_rank(errors, 0.9)
    return {"kind": kind, "completed_jobs": len(errors), "measure": measure, "median": round(median, 4),
            "p90": round(p90, 4),
            "text": (f"On {len(errors)} completed job{'s' if len(errors) != 1 else ''} of this kind ({size}, "
                     f"{gpu_type}) the {measure} estimate was off by {median:.0%} (median), {p90:.0%} at the 90th "
                     "percentile.")}
