"""Alerts at the crossing: 80% and 95% fire when spend plus the running jobs' metered cost crosses
them, at most one metering interval late, and say how far past they can be (interval × rate)."""
from __future__ import annotations

from decimal import Decimal

import pytest
from billing_factories import T0, after, create_and_admit, move, pod_up, sample_dataset

from billing.models import BudgetAlert
from billing.services.budgets import budget_create
from billing.services.enforcement import budgets_enforce
from training.services.jobs import job_stop_for_budget
from billing.services.metering import month_of


@pytest.fixture
def dataset(organization, sample_file):
    return sample_dataset(organization, sample_file)


@pytest.mark.parametrize("hard_cap", [False, True])
def test_thresholds_fire_within_one_interval_of_the_crossing_and_state_the_bound(organization, dataset, settings,
                                                                                 hard_cap):
    settings.BILLING_ENFORCE_INTERVAL_S = 30
    budget = budget_create(organization=organization, client="acme-health", limit=Decimal("10.00"),
                           hard_cap=hard_cap)
    # Reserve little: the job's estimate is small, its pod costs $7.20/h ($0.002/s).
    job = create_and_admit(organization, dataset, client="acme-health", base_model="meta-llama/Meta-Llama-3-8B-Instruct",
                           overrides={"num_epochs": 1})
    move(job, "provisioning", T0, pod=False)
    pod_up(job, T0, cost_per_hr=7.2)
    move(job, "training", after(5), pod=False)
    # A job that already ended, holding 75% of the month.
    done = create_and_admit(organization, dataset, client="acme-health")
    from billing.models import JobCost
    JobCost.objects.filter(job=done).update(cost=Decimal("7.50"), settled_at=T0, reserved=0, month=month_of(T0))
    JobCost.objects.filter(job=job).update(month=month_of(T0))
    seen = {}
    for k in range(1, 80):
        now = after(30 * k)
        budgets_enforce(now=now, stop=job_stop_for_budget)
        spend_now = Decimal("7.50") + Decimal("0.002") * 30 * k
        for alert in BudgetAlert.objects.filter(budget=budget, kind=BudgetAlert.KIND_THRESHOLD):
            seen.setdefault(alert.threshold, (spend_now, alert))
        if len(seen) == 2:
            break
    assert sorted(seen) == [80, 95]
    for threshold, (spend_at_check, alert) in seen.items():
        crossing = Decimal("10.00") * threshold / 100
        # Noticed at the first check at or past the crossing: at most one interval ($0.06) late.
        assert crossing <= alert.spent <= crossing + Decimal("0.06")
        assert alert.spent == spend_at_check
        assert "$7.20/h" in alert.message and "at most 30 s late ($0.06)" in alert.message
        assert ("overshot by at most $0.06" in alert.message) == hard_cap
