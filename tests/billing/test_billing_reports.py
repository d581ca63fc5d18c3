from __future__ import annotations

import csv
import io
import random
from decimal import Decimal

import pytest
from billing_factories import T0, make_job, sample_dataset
from django.contrib.auth import get_user_model

from accounts.models import Role
from billing import selectors
from billing.models import Budget, JobCost
from billing.money import cents, cost_exact
from billing.services.metering import month_of

MARCH = month_of(T0)


@pytest.fixture
def dataset(organization, sample_file):
    return sample_dataset(organization, sample_file)


@pytest.fixture
def spend(organization, dataset, make_user):
    """40 settled jobs over 3 users and 3 clients, each cost an awkward number of seconds at an
    awkward rate (fractions of a cent everywhere)."""
    rnd = random.Random(7)
    users = [make_user(f"u{i}", organization) for i in range(3)]
    costs = []
    for i in range(40):
        job = make_job(organization, dataset, created_by=users[i % 3], client=["a", "b", ""][i % 3], status="completed")
        exact = cost_exact(rnd.randint(1, 20000), Decimal(rnd.choice(["0.39", "1.99", "4.76", "2.4499"])))
        JobCost.objects.create(job=job, organization=organization, client=job.client, created_by=job.created_by,
                               month=MARCH, cost=cents(exact), settled_at=T0, final_status="completed")
        costs.append(cents(exact))
    return costs


def test_every_report_adds_up_to_the_same_total_to_the_cent(organization, spend):
    total = selectors.spend_total(organization=organization, month=MARCH)
    assert total == sum(spend)
    for rows in (selectors.spend_by_user(organization=organization, month=MARCH),
                 selectors.spend_by_client(organization=organization, month=MARCH),
                 selectors.spend_by_job(organization=organization, month=MARCH)):
        assert sum(r["spent"] for r in rows) == total
    [march] = [m for m in selectors.spend_by_month(organization=organization, now=T0) if m["month"] == "2026-03"]
    assert march["spent"] == total and march["jobs"] == 40
    lines = list(csv.DictReader(io.StringIO(selectors.spend_csv(organization=organization, month=MARCH))))
    assert lines[-1]["job"] == "TOTAL" and Decimal(lines[-1]["spent"]) == total
    assert sum(Decimal(r["spent"]) for r in lines[:-1]) == total


def test_budget_status_has_numbers_alerts_and_a_chart(organization, spend):
    from billing.services.budgets import budget_create

    budget = budget_create(organization=organization, limit=Decimal("500"))
    status = selectors.budget_status(budget=budget, month=MARCH, now=T0)
    total = sum(spend)
    assert Decimal(status["spent"]) == total and Decimal(status["remaining"]) == Decimal("500") - total
    assert status["chart"]["daily_cumulative"] and status["thresholds"] == [80, 95]
    assert Decimal(status["forecast"]) >= total


@pytest.mark.slow
def test_api_is_scoped_to_the_callers_organization_and_roles(api_client, organization, other_organization, spend,
                                                             make_user):
    engineer = get_user_model().objects.get(username="u0")
    api_client.force_authenticate(engineer)
    response = api_client.get("/api/v1/billing/spend/", {"by": "client", "month": "2026-03"})
    assert response.status_code == 200
    assert Decimal(response.json()["total"]) == sum(spend)
    assert api_client.post("/api/v1/budgets/", {"limit": "100"}, format="json").status_code == 403
    csv_response = api_client.get("/api/v1/billing/spend/export/", {"month": "2026-03"})
    assert csv_response["Content-Type"] == "text/csv" and b"TOTAL" in csv_response.content

    manager = make_user("mona", organization, role=Role.BUDGET_MANAGER)
    api_client.force_authenticate(manager)
    created = api_client.post("/api/v1/budgets/", {"limit": "250.00", "client": "a", "thresholds": [50, 90]},
                              format="json")
    assert created.status_code == 201, created.content
    budget_id = created.json()["id"]
    assert api_client.post("/api/v1/budgets/", {"limit": "1", "client": "a"}, format="json").status_code == 400
    patched = api_client.patch(f"/api/v1/budgets/{budget_id}/", {"limit": "300"}, format="json")
    assert patched.status_code == 200 and patched.json()["limit"] == "300.00"
    status = api_client.get(f"/api/v1/budgets/{budget_id}/status/", {"month": "2026-03"}).json()
    assert status["limit"] == "300.00" and "chart" in status

    outsider = make_user("olga", other_organization, role=Role.ADMIN)
    api_client.force_authenticate(outsider)
    assert api_client.get(f"/api/v1/budgets/{budget_id}/").status_code == 404
    assert api_client.get("/api/v1/billing/spend/", {"month": "2026-03"}).json()["rows"] == []
    assert Budget.objects.filter(organization=other_organization).count() == 0
    assert api_client.get("/api/v1/billing/gpu-types/").status_code == 200
