"""History & analysis page: every job of the organization with its outcome, sorting, filtering,
CSV export, the quality-vs-cost scatter, and a query count that does not grow with the jobs."""
import csv
import io
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from billing.models import JobCost
from tests.dashboard.test_dashboard_pages import _completed_validation_run
from tests.jobs.factories import make_running_job
from training.models import TrainingJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_eng(organization, make_user):
    client = Client()
    client.force_login(make_user("eng", organization))
    return client


def _job(organization, name, *, cost=None, loss=None, valid_loss=None, status="completed", preset="balanced"):
    from django.utils import timezone

    job = make_running_job(organization, status=status, name=name)
    TrainingJob.objects.filter(pk=job.pk).update(
        last_loss=loss, preset=preset, hyperparameters={"num_epochs": 2.0, "learning_rate": 0.0002, "lora_r": 16},
        result={"final_metrics": {"valid_loss": valid_loss}} if valid_loss is not None else {},
        launched_at=timezone.now() - timezone.timedelta(seconds=3725), finished_at=timezone.now())
    if cost is not None:
        JobCost.objects.update_or_create(job=job, defaults={"organization": organization, "cost": Decimal(cost),
                                                            "month": timezone.now().date().replace(day=1)})
    job.refresh_from_db()
    return job


def test_history_lists_every_job_with_its_outcome(client_eng, organization, other_organization):
    validated = _job(organization, "validated-run", cost="12.50", loss=0.912345, valid_loss=1.0456789)
    _completed_validation_run(validated)
    _job(organization, "plain-run", cost="3.00", loss=1.5)
    make_running_job(other_organization, status="completed", name="their-run")
    page = client_eng.get("/history/").content.decode()
    assert "validated-run" in page and "plain-run" in page and "their-run" not in page
    assert "62.3% [51.0%, 73.2%], n=48" in page and "Brand voice: Pass" in page
    assert "$12.50" in page and "1h 02m" in page and "0.9123" in page and "1.046" in page
    assert "num epochs 2, learning rate 2.00e-04, lora r 16" in page
    assert page.count("<circle") == 1, "only the job with a win rate and a cost is a point"
    assert 'name="ids"' in page and 'action="/jobs/compare/"' in page


def test_history_sorts_and_filters(client_eng, organization):
    _job(organization, "cheap", cost="1.00", preset="conservative")
    _job(organization, "dear", cost="9.00")
    _job(organization, "unpriced")
    page = client_eng.get("/history/?sort=-cost").content.decode()
    assert page.index("dear") < page.index("cheap") < page.index("unpriced")
    page = client_eng.get("/history/?sort=cost").content.decode()
    assert page.index("cheap") < page.index("dear") < page.index("unpriced"), "no value goes last both ways"
    page = client_eng.get("/history/?preset=conservative").content.decode()
    assert "cheap" in page and ">dear<" not in page
    assert client_eng.get("/history/?dataset=not-a-uuid").status_code == 404
    assert client_eng.get("/history/?sort=nonsense").status_code == 200


def test_history_csv_export(client_eng, organization):
    validated = _job(organization, "validated-run", cost="12.50", loss=0.9, valid_loss=1.04)
    _completed_validation_run(validated)
    response = client_eng.get("/history.csv?q=validated")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 1
    row = rows[0]
    assert row["name"] == "validated-run" and row["cost_usd"] == "12.50" and row["win_rate"] == "0.6234"
    assert row["verdict"] == "pass" and row["val_loss"] == "1.04" and row["duration_s"] == "3725"


def test_history_query_count_is_constant(client_eng, organization):
    for i in range(3):
        _completed_validation_run(_job(organization, f"few-{i}", cost="1.00"))
    with CaptureQueriesContext(connection) as few:
        client_eng.get("/history/")
    for i in range(12):
        _completed_validation_run(_job(organization, f"more-{i}", cost="2.00"))
    with CaptureQueriesContext(connection) as more:
        assert client_eng.get("/history/").status_code == 200
    assert len(more) == len(few), [q["sql"][:120] for q in more.captured_queries]
