from __future__ import annotations

from decimal import Decimal

import pytest
from billing_factories import H100, T0, after, create_and_admit, move, pod_down, pod_up, sample_dataset

from billing.models import JobCost
from billing.money import cents, cost_exact
from billing.services import job_cost_update, job_settle
from billing.services.metering import billable_intervals, job_cost_meter
from training.models import TrainingJob


@pytest.fixture
def dataset(organization, sample_file):
    return sample_dataset(organization, sample_file)


def test_interruption_and_resume_are_billed_at_the_rate_of_each_pod(organization, dataset):
    job = create_and_admit(organization, dataset, spot=True, bid_per_gpu=Decimal("2.0000"))
    move(job, "provisioning", T0, attempt=1)
    move(job, "model_loading", after(100), attempt=1)
    move(job, "training", after(200), attempt=1)
    cost = job_cost_meter(job_id=job.pk, now=after(400))
    assert cost.rate_per_hour == Decimal("2.0000") and cost.billable_s == 400
    # The pod is lost at 590 s by its own clock; the reconciler notices at 600 s.
    move(job, "interrupted", after(600), attempt=1, pod_timestamp=after(590).timestamp())
    # Two interruptions later the job falls back to on-demand: the next pod is re-priced, the first is not.
    TrainingJob.objects.filter(pk=job.pk).update(spot=False, bid_per_gpu=None)
    cost = job_cost_meter(job_id=job.pk, now=after(650))
    assert cost.rate_per_hour == 0 and cost.billable_s == 590  # nothing bills between attempts
    move(job, "provisioning", after(700), attempt=2)
    cost = job_cost_meter(job_id=job.pk, now=after(1000))
    assert [s["rate_per_hour"] for s in cost.segments] == ["2.0000", "4.7600"]
    assert cost.rate_per_hour == Decimal("4.7600")
    assert cost.cost == cents(cost_exact(590, Decimal("2")) + cost_exact(300, Decimal("4.76")))
    move(job, "training", after(1100), attempt=2)
    move(job, "completed", after(1300), attempt=2)
    job_settle(job_id=job.pk)
    cost = JobCost.objects.get(job=job)
    # 590 s at $2/h + 600 s at $4.76/h = $0.327778 + $0.793333 = $1.121111 → $1.12, rounded once.
    assert cost.billable_s == 1190 and cost.cost == Decimal("1.12") == cost.actual_cost
    assert cost.actual_duration_s == 1190 and cost.reserved == 0 and cost.final_status == "completed"
    assert [s["attempt"] for s in cost.segments] == [1, 2]


def test_the_providers_reported_rate_wins_over_the_catalog(organization, dataset):
    job = create_and_admit(organization, dataset)
    move(job, "provisioning", T0, data={"cost_per_hr": 3.99})
    cost = job_cost_meter(job_id=job.pk, now=after(3600))
    assert cost.rate_per_hour == Decimal("3.99") and cost.cost == Decimal("3.99")


def test_settle_is_idempotent_and_releases_the_reservation(organization, dataset):
    job = create_and_admit(organization, dataset)
    assert JobCost.objects.get(job=job).reserved > 0
    move(job, "provisioning", T0)
    move(job, "cancelled", after(45))
    job_settle(job_id=job.pk)
    first = JobCost.objects.get(job=job)
    job_settle(job_id=job.pk)
    again = JobCost.objects.get(job=job)
    assert first.settled_at == again.settled_at and again.reserved == 0
    assert again.cost == cents(Decimal(45) * Decimal("4.76") / 3600) == Decimal("0.06")
    assert first.final_status == "cancelled" and not hasattr(first.job, "throughput_sample")


def test_cost_update_hook_meters_under_the_callers_lock(organization, dataset, django_assert_max_num_queries):
    from django.db import transaction

    job = create_and_admit(organization, dataset)
    move(job, "provisioning", T0)
    with transaction.atomic():
        locked = TrainingJob.objects.select_for_update().get(pk=job.pk)
        with django_assert_max_num_queries(6):
            job_cost_update(job=locked)
    cost = JobCost.objects.get(job=job)
    assert cost.metered_at is not None and cost.rate_per_hour == Decimal("4.7600") and cost.cost > 0


def test_a_job_without_audit_rows_is_metered_from_its_timestamps(organization, dataset):
    job = create_and_admit(organization, dataset)
    TrainingJob.objects.filter(pk=job.pk).update(status="training", launched_at=T0, pod_id="pod-1")
    job.refresh_from_db()
    [interval] = billable_intervals(job, after(120))
    assert interval["open"] and (interval["end"] - interval["start"]).total_seconds() == 120
    TrainingJob.objects.filter(pk=job.pk).update(status="completed", finished_at=after(1800))
    job_settle(job_id=job.pk)
    assert JobCost.objects.get(job=job).cost == cents(Decimal(1800) * Decimal("4.76") / 3600) == Decimal("2.38")


def test_local_jobs_cost_nothing(organization, dataset):
    job = create_and_admit(organization, dataset, provider="local", gpu_type=H100)
    move(job, "provisioning", T0)
    cost = job_cost_meter(job_id=job.pk, now=after(3600))
    assert cost.cost == 0 and cost.reserved == 0


def test_cost_is_pushed_to_the_jobs_group_on_commit(organization, dataset, monkeypatch,
                                                    django_capture_on_commit_callbacks):
    from channels.layers import get_channel_layer

    sent = []

    async def record(group, message):
        sent.append((group, message["payload"]))

    monkeypatch.setattr(get_channel_layer(), "group_send", record)
    job = create_and_admit(organization, dataset)
    move(job, "provisioning", T0)
    with django_capture_on_commit_callbacks(execute=True):
        job_cost_meter(job_id=job.pk, now=after(60))
    groups = [g for g, _ in sent]
    assert groups == [f"job-{job.pk}", f"org-{organization.pk}-jobs"]
    assert sent[0][1]["kind"] == "cost" and sent[0][1]["cost"]["spent"] == "0.08"


def test_no_pod_no_charge_refused_creates_and_capacity_waits_cost_nothing(organization, dataset):
    """A job whose creates failed for 156 s (capacity, then 401) never had a pod: it costs $0."""
    job = create_and_admit(organization, dataset)
    move(job, "provisioning", T0, pod=False)
    assert job_cost_meter(job_id=job.pk, now=after(100)).cost == 0
    move(job, "failed", after(156), pod=False)
    job_settle(job_id=job.pk)
    cost = JobCost.objects.get(job=job)
    assert cost.settled_at is not None and cost.cost == 0 and cost.billable_s == 0 and cost.segments == []


def test_a_segment_follows_the_pod_from_its_start_until_it_is_confirmed_gone(organization, dataset):
    """Provisioning without a pod is free; the pod bills from its own start at its own rate (not
    the catalog's $4.76) until the provider confirms it gone, after the job ended; settle waits."""
    job = create_and_admit(organization, dataset)
    move(job, "provisioning", T0, pod=False)               # 40 s of capacity retries: free
    pod_id = pod_up(job, after(40), cost_per_hr=2.99)
    move(job, "training", after(100), pod=False)
    cost = job_cost_meter(job_id=job.pk, now=after(400))
    assert cost.billable_s == 360 and cost.rate_per_hour == Decimal("2.99")
    assert cost.segments[0]["rate_source"] == "provider" and cost.segments[0]["pod_id"] == pod_id
    move(job, "completed", after(1000), pod=False)
    job_settle(job_id=job.pk, now=after(1005))              # the pod is still there: not settled yet
    cost = JobCost.objects.get(job=job)
    assert cost.settled_at is None and cost.segments[0]["open"]
    pod_down(job, after(1012), pod_id=pod_id)               # terminated 12 s after completion
    job_settle(job_id=job.pk, now=after(1013))
    cost = JobCost.objects.get(job=job)
    assert cost.settled_at is not None and cost.billable_s == 972
    assert cost.cost == cents(cost_exact(972, Decimal("2.99"))) == Decimal("0.81")


def test_a_pod_without_a_reported_rate_is_estimated_at_the_catalog_until_one_is_read(organization, dataset):
    from training.models import JobEvent

    job = create_and_admit(organization, dataset)
    move(job, "provisioning", T0, pod=False)
    pod_id = pod_up(job, T0)
    cost = job_cost_meter(job_id=job.pk, now=after(3600))
    assert cost.rate_per_hour == Decimal("4.7600") and cost.segments[0]["rate_source"] == "catalog"
    JobEvent.objects.create(job=job, event_id="rc-1", source="system", type="pod_cost",
                            data={"pod_id": pod_id, "provider_rate": 2.5, "uptime_s": 3600})
    cost = job_cost_meter(job_id=job.pk, now=after(7200))
    assert cost.rate_per_hour == Decimal("2.5") and cost.cost == Decimal("5.00")


def test_a_pod_never_confirmed_gone_is_settled_after_the_wait_billed_until_then(organization, dataset, settings):
    settings.BILLING_POD_GONE_WAIT_S = 900
    job = create_and_admit(organization, dataset)
    move(job, "provisioning", T0, pod=False)
    pod_up(job, T0, cost_per_hr=3.6)
    move(job, "completed", after(600), pod=False)
    job_settle(job_id=job.pk, now=after(1400))
    assert JobCost.objects.get(job=job).settled_at is None  # still waiting for the provider
    job_settle(job_id=job.pk, now=after(1501))
    cost = JobCost.objects.get(job=job)
    assert cost.settled_at is not None and cost.billable_s == 1501 and cost.cost == Decimal("1.50")
    assert cost.reserved == 0 and not any(s["open"] for s in cost.segments)
