"""Recorded cost against the provider's bill: jobs launched through the real `runpod` SDK against
the project's fake RunPod server (tests/fakes/runpod_server.py), which reports each pod's own
costPerHr and uptime and keeps a per-second ledger. One simulated clock drives both sides."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone
from decimal import Decimal

import pytest
from billing_factories import fake_runpod, H100, create_and_admit, move, sample_dataset

from billing.models import JobCost
from billing.services import job_settle
from billing.services.metering import job_cost_meter
from training.models import TrainingJob
from training.providers import NoCapacityError, ProviderAuthError
from training.services import pods


class Clock:
    def __init__(self):
        self.t = datetime.now(dt_timezone.utc).replace(day=10, hour=12, minute=0, second=0, microsecond=0)

    def __call__(self):
        return self.t

    def ts(self) -> float:
        return self.t.timestamp()

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch):
    import django.utils.timezone

    clock = Clock()
    monkeypatch.setattr(django.utils.timezone, "now", clock)
    return clock


@pytest.fixture
def runpod(settings, tmp_path, monkeypatch, clock):
    with fake_runpod(settings, monkeypatch, tmp_path, api_key="bill-key", clock=clock.ts) as server:
        yield server


@pytest.fixture
def dataset(organization, sample_file):
    return sample_dataset(organization, sample_file)


def _ratio(job, server) -> float:
    cost = JobCost.objects.get(job=job)
    ledger = server.ledger_total(str(job.pk))
    return float(cost.cost) / ledger if ledger else float(cost.cost)


def test_on_demand_job_is_billed_at_the_pods_own_rate_and_matches_the_ledger(organization, dataset, runpod, clock,
                                                                           django_capture_on_commit_callbacks):
    job = create_and_admit(organization, dataset, gpu_type=H100)  # catalog $4.76/h; the pod costs $2.99/h
    assert pods.job_launch(job_id=job.pk).action == "launched"
    clock.advance(30)
    move(job, "training", clock(), pod=False)
    clock.advance(1800)
    cost = job_cost_meter(job_id=job.pk, now=clock())
    assert cost.rate_per_hour == Decimal("2.99") and cost.segments[0]["rate_source"] == "provider"
    move(job, "completed", clock(), pod=False)
    clock.advance(10)  # POD_COMPLETED_EXIT_WAIT_S: the pod still bills
    with django_capture_on_commit_callbacks(execute=True):
        assert pods.job_pod_terminate(job_id=job.pk)
    cost = JobCost.objects.get(job=job)
    assert cost.settled_at is not None  # settled by the pod_gone signal
    assert cost.billable_s == 1840 == runpod.ledger()[0]["seconds"]
    assert 0.98 <= _ratio(job, runpod) <= 1.02


def test_refused_creates_and_capacity_waits_cost_nothing(organization, dataset, runpod, clock):
    job = create_and_admit(organization, dataset, gpu_type=H100)
    runpod.sold_out.add(H100)
    for _ in range(9):  # 9 failed creates over 156 s
        with pytest.raises(NoCapacityError):
            pods.job_launch(job_id=job.pk)
        clock.advance(156 / 9)
    runpod.fail_next("http_401", operation="podFindAndDeployOnDemand")
    runpod.sold_out.clear()
    with pytest.raises(ProviderAuthError) as refused:
        pods.job_launch(job_id=job.pk)
    pods.job_launch_failed(job_id=job.pk, error=refused.value)
    job_settle(job_id=job.pk)
    cost = JobCost.objects.get(job=job)
    assert TrainingJob.objects.get(pk=job.pk).status == "failed"
    assert runpod.ledger_total(str(job.pk)) == 0
    assert cost.settled_at is not None and cost.cost == 0 and cost.billable_s == 0


def test_an_evicted_spot_pod_stops_billing_at_the_providers_time(organization, dataset, runpod, clock):
    job = create_and_admit(organization, dataset, gpu_type=H100, spot=True, bid_per_gpu=Decimal("1.60"))
    pods.job_launch(job_id=job.pk)
    clock.advance(600)
    runpod.evict(TrainingJob.objects.get(pk=job.pk).pod_id)
    clock.advance(25)  # the reconciler sees it one beat later
    pods.pods_reconcile(now=clock())
    cost = job_cost_meter(job_id=job.pk, now=clock())
    assert cost.segments[0]["open"] is False and cost.billable_s == 600
    assert cost.segments[0]["rate_per_hour"] == "1.6"
    assert 0.98 <= _ratio(job, runpod) <= 1.02


def test_reconciliation_reads_the_providers_rate_and_uptime_and_records_the_difference(
        organization, dataset, runpod, clock):
    from billing.selectors import spend_by_job
    from billing.services.metering import month_of
    from billing.services.reconcile import costs_reconcile
    from training.models import JobEvent

    job = create_and_admit(organization, dataset, gpu_type=H100)
    pods.job_launch(job_id=job.pk)
    # The price read after the create failed: the segment is estimated at the catalog's $4.76/h.
    JobEvent.objects.filter(job=job, type="pod_launched").update(
        data={**JobEvent.objects.get(job=job, type="pod_launched").data, "cost_per_hr": None})
    clock.advance(600)
    assert job_cost_meter(job_id=job.pk, now=clock()).rate_per_hour == Decimal("4.76")
    result = costs_reconcile(now=clock())
    assert result.pods_checked == 1 and len(result.differences) == 1
    [diff] = result.differences
    assert diff["provider_rate"] == 2.99 and diff["recorded_rate"] == "4.7600" and diff["uptime_s"] == 600
    event = JobEvent.objects.get(job=job, type="pod_cost")
    assert "$2.99/h" in event.message and "4.76" in event.message
    cost = JobCost.objects.get(job=job)
    assert cost.rate_per_hour == Decimal("2.99") and cost.segments[0]["provider"]["uptime_s"] == 600
    [row] = spend_by_job(organization=organization, month=month_of(clock()))
    assert row["spent"] == row["provider_cost"] == Decimal("0.50")  # 600 s × $2.99/h
    # A second pass agrees: nothing new is recorded.
    clock.advance(60)
    assert costs_reconcile(now=clock()).differences == []
    assert JobEvent.objects.filter(job=job, type="pod_cost").count() == 1


def test_a_standing_uptime_gap_is_recorded_once_not_at_every_pass(organization, dataset, runpod, clock):
    from billing.services.reconcile import costs_reconcile
    from training.models import JobEvent

    job = create_and_admit(organization, dataset, gpu_type=H100)
    pods.job_launch(job_id=job.pk)
    pod_id = TrainingJob.objects.get(pk=job.pk).pod_id
    runpod.pods[pod_id]["_created"] += 30  # the provider counts 30 s less (e.g. the image pull)
    checked = 0
    for _ in range(4):  # never metered before: the reconciliation finds the live job itself
        clock.advance(60)
        checked += costs_reconcile(now=clock()).pods_checked
    assert checked == 4
    [event] = JobEvent.objects.filter(job=job, type="pod_cost")
    assert event.data["seconds_apart"] == pytest.approx(30, abs=1) and event.data["provider_rate"] == 2.99
