from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from billing_factories import A100, LLAMA_70B, create_and_admit, job_fields, make_job, sample_dataset
from django.db import connection, transaction

from billing.errors import BudgetExceeded
from billing.models import JobCost
from billing.services import job_admit
from billing.services.budgets import budget_create, reservation_for
from billing.services.estimates import config_from_job, estimate
from training.models import TrainingJob


@pytest.fixture
def dataset(organization, sample_file):
    return sample_dataset(organization, sample_file)


def reservation_of(organization, dataset, **kw) -> Decimal:
    with transaction.atomic():
        job = make_job(organization, dataset, **kw)
        value = reservation_for(estimate(config_from_job(job)))
        transaction.set_rollback(True)
    return value


def test_admitted_job_stores_its_estimate_and_reservation(organization, dataset):
    job = create_and_admit(organization, dataset, client="acme-health")
    cost = JobCost.objects.get(job=job)
    assert cost.est_cost_low < cost.est_cost < cost.est_cost_high
    assert cost.reserved == cost.est_cost_high
    assert cost.client == "acme-health" and cost.month.day == 1
    assert cost.estimate["assumptions"]


def test_start_that_would_cross_the_cap_is_refused_with_what_fits(organization, dataset):
    one = reservation_of(organization, dataset)
    limit = one * Decimal("1.9")
    budget_create(organization=organization, limit=limit)
    create_and_admit(organization, dataset)
    with pytest.raises(BudgetExceeded) as refused:
        create_and_admit(organization, dataset)
    err = refused.value
    assert err.http_status == 402 and err.code == "budget_exceeded"
    left = limit - one
    assert f"${left:,.2f} left of ${limit:,.2f}" in err.message
    assert "reserved by 1 queued or running job" in err.message
    assert "What would fit:" in err.message
    kinds = {next(iter(a["change"])) for a in err.detail["alternatives"]}
    assert "num_epochs" in kinds and len(kinds) >= 2
    for option in err.detail["alternatives"]:
        assert Decimal(option["reserve"]) <= left
    assert TrainingJob.objects.count() == 1  # the refused job was rolled back with its transaction


def test_client_budget_applies_only_to_its_client_and_soft_budgets_never_refuse(organization, dataset):
    one = reservation_of(organization, dataset)
    budget_create(organization=organization, client="globex-bank", limit=one / 2)
    create_and_admit(organization, dataset, client="initech")  # another client: no cap
    with pytest.raises(BudgetExceeded, match="client 'globex-bank'"):
        create_and_admit(organization, dataset, client="globex-bank")
    budget_create(organization=organization, limit=Decimal("0.01"), hard_cap=False)
    create_and_admit(organization, dataset, client="initech")


def test_a_finished_job_frees_its_reservation_for_the_next(organization, dataset):
    from billing.services import job_settle
    from billing_factories import T0, after, move

    one = reservation_of(organization, dataset)
    budget_create(organization=organization, limit=one * Decimal("1.5"))
    first = create_and_admit(organization, dataset)
    move(first, "provisioning", T0)
    move(first, "failed", after(60))
    job_settle(job_id=first.pk)
    cost = JobCost.objects.get(job=first)
    assert cost.reserved == 0 and cost.cost == cost.actual_cost > 0
    create_and_admit(organization, dataset)  # fits now: 60 s spent, not the whole reservation


def test_a_job_with_no_price_is_refused_only_where_a_cap_applies(organization, dataset):
    from billing.errors import EstimateError

    job = create_and_admit(organization, dataset, gpu_type="NVIDIA Imaginary 1TB")
    assert "no price" in JobCost.objects.get(job=job).estimate["error"]
    budget_create(organization=organization, limit=Decimal("1000"))
    with pytest.raises(EstimateError, match="cannot check this run against the budget"):
        create_and_admit(organization, dataset, gpu_type="NVIDIA Imaginary 1TB")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_starts_with_budget_for_three_admit_exactly_three(organization, dataset):
    one = reservation_of(organization, dataset, gpu_type=A100, base_model=LLAMA_70B)
    budget_create(organization=organization, limit=one * 3 + one / 2)
    fields = job_fields(organization, dataset, gpu_type=A100, base_model=LLAMA_70B)
    barrier = threading.Barrier(50)
    outcomes: list[str] = []
    lock = threading.Lock()

    def start():
        try:
            barrier.wait(timeout=30)
            with transaction.atomic():
                job = TrainingJob.objects.create(**fields)
                job_admit(job=job)
            outcome = "admitted"
        except BudgetExceeded:
            outcome = "refused"
        except Exception as exc:  # noqa: BLE001 - reported below
            outcome = f"error: {exc!r}"
        finally:
            connection.close()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=start) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(set(outcomes)) == ["admitted", "refused"], outcomes
    assert outcomes.count("admitted") == 3
    assert outcomes.count("refused") == 47
    assert TrainingJob.objects.count() == 3 and JobCost.objects.count() == 3
    assert sum(JobCost.objects.values_list("reserved", flat=True)) <= one * 3 + one / 2


def test_the_jobs_service_is_refused_through_the_hook(organization, dataset):
    """The real job_create calls job_admit inside its transaction: a refusal creates nothing."""
    from training.services.jobs import job_create

    budget_create(organization=organization, limit=Decimal("0.10"))
    with pytest.raises(BudgetExceeded):
        job_create(organization=organization, dataset=dataset, base_model=LLAMA_70B, gpu_type=A100,
                   provider="runpod", start=False)
    assert TrainingJob.objects.count() == 0 and JobCost.objects.count() == 0
    job = job_create(organization=organization, dataset=dataset, base_model=LLAMA_70B, gpu_type=A100,
                     provider="local", start=False)
    assert JobCost.objects.get(job=job).reserved == 0  # the local provider costs nothing


def test_priced_local_pods_make_caps_testable_and_a_zero_cap_blocks_them(organization, dataset, settings, tmp_path):
    """LOCAL_POD_RATE_PER_HOUR prices local pods: the estimate is no longer $0, a $0 hard cap
    refuses the start, and the local provider reports the rate as the pod's own cost."""
    from training.providers import clear_provider_cache, get_provider

    free = reservation_of(organization, dataset, provider="local")
    budget_create(organization=organization, limit=Decimal("0"))
    assert free == 0
    create_and_admit(organization, dataset, provider="local")  # free: a $0 cap lets it start
    settings.LOCAL_POD_RATE_PER_HOUR = 2.5
    priced = reservation_of(organization, dataset, provider="local")
    assert priced > 0
    with pytest.raises(BudgetExceeded) as refused:
        create_and_admit(organization, dataset, provider="local")
    assert refused.value.detail["needed"] == str(priced) and refused.value.detail["limit"] == "0.00"
    settings.LOCAL_PODS_DIR = str(tmp_path / "pods")
    clear_provider_cache()
    try:
        assert get_provider("local").rate_per_hour == 2.5
    finally:
        clear_provider_cache()
