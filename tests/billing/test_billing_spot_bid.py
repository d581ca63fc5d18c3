"""Spot priced at create: the bid defaults to the current spot price of the GPU type and cloud
(read from RunPod's gpuTypes through the real SDK when a key is set), or the create is refused
with 400 and the minimum bid; the estimate, the reservation and the pod use the same bid."""
from __future__ import annotations

from decimal import Decimal

import pytest
from billing_factories import fake_runpod, H100, create_and_admit, sample_dataset

from billing.errors import SpotBidError
from billing.models import GpuType, JobCost
from training.models import TrainingJob


@pytest.fixture
def dataset(organization, sample_file):
    return sample_dataset(organization, sample_file)


@pytest.fixture
def runpod(settings, tmp_path, monkeypatch):
    with fake_runpod(settings, monkeypatch, tmp_path, api_key="bid-key") as server:
        yield server


def test_a_spot_job_without_a_bid_bids_runpods_current_spot_price_everywhere(organization, dataset, runpod):
    from training.services import pods

    job = create_and_admit(organization, dataset, gpu_type=H100, spot=True)  # seed says $2.69; RunPod $1.75
    job.refresh_from_db()
    assert job.bid_per_gpu == Decimal("1.75")
    assert GpuType.objects.get(gpu_id=H100).secure_spot_price == Decimal("1.75")  # the catalog was refreshed
    cost = JobCost.objects.get(job=job)
    assert Decimal(cost.estimate["rate_per_hour"]) == Decimal("1.75") and cost.reserved == cost.est_cost_high
    pods.job_launch(job_id=job.pk)
    [deploy] = runpod.requests_for("podRentInterruptable")
    assert deploy.input["bidPerGpu"] == 1.75
    assert runpod.ledger()[0]["costPerHr"] == 1.75


def test_a_bid_below_runpods_minimum_is_refused_at_create_with_the_minimum(organization, dataset, runpod):
    with pytest.raises(SpotBidError) as refused:
        create_and_admit(organization, dataset, gpu_type=H100, spot=True, bid_per_gpu=Decimal("1.00"))
    assert refused.value.http_status == 400 and refused.value.detail["minimum_bid"] == "1.5"
    assert "at least $1.5" in refused.value.message
    assert not TrainingJob.objects.exists() and not JobCost.objects.exists()


def test_without_a_key_the_catalog_prices_the_bid_and_no_spot_price_is_a_400(organization, dataset, settings):
    settings.RUNPOD_API_KEY = None
    job = create_and_admit(organization, dataset, gpu_type=H100, spot=True, cloud_type="SECURE")
    job.refresh_from_db()
    assert job.bid_per_gpu == Decimal("2.69")  # the seeded secure spot price
    GpuType.objects.filter(gpu_id=H100).update(community_spot_price=None)
    with pytest.raises(SpotBidError) as refused:
        create_and_admit(organization, dataset, gpu_type=H100, spot=True, cloud_type="COMMUNITY")
    assert "set bid_per_gpu" in refused.value.message and refused.value.code == "spot_bid_required"


def test_the_jobs_api_answers_400_with_the_minimum_bid(organization, dataset, runpod, make_user, api_client):
    api_client.force_authenticate(make_user("eng", organization))
    answer = api_client.post("/api/v1/jobs/", {"dataset": str(dataset.pk), "gpu_type": H100, "spot": True,
                                               "bid_per_gpu": "0.50", "provider": "runpod",
                                               "base_model": "meta-llama/Meta-Llama-3-8B-Instruct"}, format="json")
    assert answer.status_code == 400, answer.json()
    error = answer.json()["error"]
    assert error["code"] == "spot_bid_required" and error["detail"]["minimum_bid"] == "1.5"
