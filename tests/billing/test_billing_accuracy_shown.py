"""Estimator accuracy where users decide: the estimate API (and so the new-job page) shows the
median and 90th percentile of |actual − estimate| ÷ actual on completed jobs of the same kind."""
from __future__ import annotations

from decimal import Decimal

import pytest
from billing_factories import H100, LLAMA_8B, LLAMA_70B, create_and_admit, sample_dataset

from billing.models import JobCost
from billing.selectors import estimate_accuracy_for_kind


@pytest.fixture
def dataset(organization, sample_file):
    return sample_dataset(organization, sample_file)


def _completed(organization, dataset, *, est_s: int, actual_s: int, base_model=LLAMA_8B, gpu_type=H100,
               est_cost="10.00", actual_cost="10.00"):
    job = create_and_admit(organization, dataset, base_model=base_model, gpu_type=gpu_type)
    JobCost.objects.filter(job=job).update(est_duration_s=est_s, actual_duration_s=actual_s, final_status="completed",
                                           est_cost=Decimal(est_cost), actual_cost=Decimal(actual_cost),
                                           settled_at=job.created_at)
    return job


def test_perfect_estimates_score_zero_and_useless_ones_fail(organization, dataset):
    for actual in (1000, 2000, 3000):
        _completed(organization, dataset, est_s=actual, actual_s=actual)
    good = estimate_accuracy_for_kind(organization=organization, gpu_type=H100, base_model=LLAMA_8B)
    assert good["completed_jobs"] == 3 and good["median"] == 0 and good["p90"] == 0
    assert good["measure"] == "cost"
    # A useless estimator (always 10 s, whatever the run) is shown as such.
    for actual in (1000, 2000, 3000):
        _completed(organization, dataset, est_s=10, actual_s=actual, base_model=LLAMA_70B,
                   est_cost="0.01", actual_cost="10.00")
    bad = estimate_accuracy_for_kind(organization=organization, gpu_type=H100, base_model=LLAMA_70B)
    assert bad["median"] > 0.99 and bad["p90"] > 0.99 and "off by 100%" in bad["text"]


def test_the_estimate_api_shows_the_error_of_the_same_kind(api_client, make_user, organization, dataset):
    for est, actual in ((900, 1000), (1100, 1000), (1000, 1000), (1300, 1000), (1000, 1000)):
        _completed(organization, dataset, est_s=est, actual_s=actual,
                   est_cost=f"{est / 100:.2f}", actual_cost=f"{actual / 100:.2f}")
    _completed(organization, dataset, est_s=100, actual_s=1000, gpu_type="NVIDIA L40S", est_cost="1.00")  # another kind
    api_client.force_authenticate(make_user("eve", organization))
    body = {"dataset": str(dataset.pk), "base_model": LLAMA_8B, "preset": "balanced", "gpu_type": H100,
            "cloud_type": "SECURE", "spot": False, "provider": "runpod"}
    accuracy = api_client.post("/api/v1/estimates/", body, format="json").json()["accuracy"]
    assert accuracy["completed_jobs"] == 5 and accuracy["kind"]["size_class"] == "8b"
    assert accuracy["median"] == 0.1 and accuracy["p90"] == 0.3  # errors 0, 0, .1, .1, .3
    assert "5 completed jobs" in accuracy["text"]
    other = api_client.post("/api/v1/estimates/", {**body, "gpu_type": "NVIDIA L40S"}, format="json").json()
    assert other["accuracy"]["completed_jobs"] == 1 and other["accuracy"]["median"] == 0.9
