"""Capacity fallback the user chose: launch walks the job's alternatives (cloud, GPU types,
on-demand after N spot refusals) through the real SDK against the fake RunPod server, records
which it got and why, re-prices the reservation, and fails only when all are exhausted."""
from __future__ import annotations

from decimal import Decimal

import pytest
from billing_factories import fake_runpod, H100, create_and_admit, sample_dataset

from billing.models import JobCost
from training.models import JobEvent, TrainingJob
from training.providers import NoCapacityError
from training.services import pods

A100_PCIE = "NVIDIA A100 80GB PCIe"
LLAMA_8B = "meta-llama/Meta-Llama-3-8B-Instruct"


@pytest.fixture
def dataset(organization, sample_file):
    return sample_dataset(organization, sample_file)


@pytest.fixture
def runpod(settings, tmp_path, monkeypatch):
    with fake_runpod(settings, monkeypatch, tmp_path, api_key="fb-key") as server:
        yield server


@pytest.mark.slow
def test_launch_walks_the_alternatives_records_what_it_got_and_reprices(organization, dataset, runpod,
                                                                        django_capture_on_commit_callbacks):
    job = create_and_admit(organization, dataset, gpu_type=H100, base_model=LLAMA_8B, capacity_fallback={
        "alternatives": [{"cloud_type": "COMMUNITY"}, {"gpu_type": A100_PCIE}]})
    before = JobCost.objects.get(job=job)
    runpod.sold_out.update({H100})
    with django_capture_on_commit_callbacks(execute=True):
        outcome = pods.job_launch(job_id=job.pk)
    assert outcome.action == "launched"
    job.refresh_from_db()
    assert (job.gpu_type, job.cloud_type, job.spot) == (A100_PCIE, "SECURE", False)
    deploys = [r.input for r in runpod.requests_for("podFindAndDeployOnDemand")]
    assert [(d["gpuTypeId"], d["cloudType"]) for d in deploys][-1] == (A100_PCIE, "SECURE")
    [fallback] = JobEvent.objects.filter(job=job, type="capacity_fallback")
    assert "no capacity for NVIDIA H100 80GB HBM3 (SECURE)" in fallback.message and A100_PCIE in fallback.message
    assert JobEvent.objects.filter(job=job, type="capacity_refused").count() == 2  # secure and community H100
    after = JobCost.objects.get(job=job)
    assert Decimal(after.estimate["rate_per_hour"]) == Decimal("2.10")  # the A100 PCIe's catalog price
    assert after.reserved < before.reserved and after.estimate["gpu_type"] == A100_PCIE


def test_it_fails_only_when_every_alternative_is_refused_naming_them(organization, dataset, runpod):
    job = create_and_admit(organization, dataset, gpu_type=H100, capacity_fallback={
        "alternatives": [{"cloud_type": "COMMUNITY"}, {"gpu_type": A100_PCIE}]})
    runpod.sold_out.update({H100, A100_PCIE})
    with pytest.raises(NoCapacityError) as refused:
        pods.job_launch(job_id=job.pk)
    pods.job_launch_failed(job_id=job.pk, error=refused.value)
    job.refresh_from_db()
    assert job.status == "failed"
    for tried in ("NVIDIA H100 80GB HBM3 (SECURE)", "NVIDIA H100 80GB HBM3 (COMMUNITY)", f"{A100_PCIE} (SECURE)"):
        assert tried in job.error_message
    assert runpod.ledger() == []


def test_a_spot_job_goes_on_demand_after_n_spot_refusals(organization, dataset, runpod):
    job = create_and_admit(organization, dataset, gpu_type=H100, spot=True,
                           capacity_fallback={"on_demand_after_spot_failures": 2})
    runpod.fail_next("no_capacity", operation="podRentInterruptable", times=3)
    for _ in range(2):  # two spot refusals: no on-demand yet, the task retries
        with pytest.raises(NoCapacityError):
            pods.job_launch(job_id=job.pk)
    assert not runpod.requests_for("podFindAndDeployOnDemand")
    pods.job_launch(job_id=job.pk)  # the third spot create is refused too, then on-demand is taken
    job.refresh_from_db()
    assert job.spot is False and job.bid_per_gpu is None and job.pod_id
    assert runpod.ledger()[0]["costPerHr"] == 2.99


def test_a_malformed_fallback_is_refused_at_create(organization, dataset, make_user, api_client):
    api_client.force_authenticate(make_user("eng", organization))
    answer = api_client.post("/api/v1/jobs/", {"dataset": str(dataset.pk), "base_model": LLAMA_8B,
                                               "capacity_fallback": {"alternatives": [{"cloud_type": "MOON"}]}},
                             format="json")
    assert answer.status_code == 400 and "cloud_type must be SECURE or COMMUNITY" in answer.json()["error"]["message"]
    assert not TrainingJob.objects.exists()
