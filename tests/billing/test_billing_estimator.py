from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from billing_factories import A100, H100, LLAMA_8B, LLAMA_70B, T0, after, create_and_admit, move, sample_dataset

from billing import tables
from billing.models import JobCost, ThroughputCalibration, ThroughputSample
from billing.money import cents
from billing.selectors import estimate_accuracy
from billing.services import job_settle
from billing.services.estimates import config_from_job, config_from_request, estimate, with_changes
from training.models import TrainingJob


@pytest.fixture
def dataset(organization, sample_file):
    return sample_dataset(organization, sample_file)


@pytest.fixture
def config(dataset):
    return config_from_request(dataset=dataset, base_model=LLAMA_70B, preset="balanced", gpu_type=H100,
                               provider="runpod")


def test_estimate_is_a_range_with_its_assumptions(config, dataset):
    est = estimate(config)
    assert est.duration_s.low < est.duration_s.point < est.duration_s.high
    assert est.cost.low < est.cost.point < est.cost.high
    assert est.rate_per_hour == Decimal("4.76")
    # cost = duration × rate, per second, to the cent
    for s, c in zip(dataclasses.astuple(est.duration_s), dataclasses.astuple(est.cost)):
        assert c == cents(Decimal(s) * Decimal("4.76") / 3600)
    train_tokens = dataset.stats["train_tokens"]
    assert est.training_tokens == train_tokens * 3
    text = " ".join(est.assumptions)
    for needle in ("per epoch in the train split", "70B parameters", "throughput", "setup per attempt", "evaluation",
                   "billed per second", "H100 SXM secure on-demand $4.76/h"):
        assert needle in text, needle
    assert est.fits_memory
    d = est.to_dict()
    assert d["cost"]["point"] == str(est.cost.point) and d["currency"] == "USD"


def test_estimate_moves_the_right_way_with_each_choice(config):
    base = estimate(config)
    more = estimate(with_changes(config, num_epochs=6.0))
    assert more.breakdown["training_s"] == pytest.approx(2 * base.breakdown["training_s"])
    spot = estimate(with_changes(config, spot=True))
    assert spot.cost.point < base.cost.point
    assert spot.duration_s.high > base.duration_s.high  # the high end allows one interruption
    slower = estimate(with_changes(config, gpu_type=A100))
    assert slower.duration_s.point > base.duration_s.point
    longer = estimate(with_changes(config, max_seq_len=8192))
    assert longer.tokens_per_s < base.tokens_per_s
    small = estimate(with_changes(config, base_model=LLAMA_8B))
    assert small.duration_s.point < base.duration_s.point
    on_4090 = estimate(with_changes(config, gpu_type="NVIDIA GeForce RTX 4090"))
    assert not on_4090.fits_memory and "needs about" in on_4090.warnings[0]


def test_local_provider_costs_nothing_and_unknown_gpu_is_refused(config):
    local = estimate(with_changes(config, provider="local"))
    assert local.cost.high == Decimal("0.00") and local.rate_per_hour == 0
    from billing.errors import EstimateError

    with pytest.raises(EstimateError, match="no price in the catalog"):
        estimate(with_changes(config, gpu_type="NVIDIA Imaginary 1TB"))


def test_model_size_from_the_name():
    assert tables.model_params_b("meta-llama/Meta-Llama-3-70B-Instruct") == (70.0, True)
    assert tables.model_params_b("meta-llama/Llama-3.1-8B") == (8.0, True)
    assert tables.model_params_b("Qwen/Qwen2.5-0.5B") == (0.5, True)
    assert tables.model_params_b("/var/models/tiny-llama") == (0.01, True)
    assert tables.model_params_b("/some/dir/model")[1] is False


def _complete(job, *, seconds: int, tokens_per_s: float):
    move(job, "provisioning", T0)
    move(job, "training", after(60))
    TrainingJob.objects.filter(pk=job.pk).update(result={"tokens_per_s": tokens_per_s}, tokens_per_s=tokens_per_s)
    move(job, "completed", after(seconds))
    job_settle(job_id=job.pk)


def test_learning_moves_the_estimate_toward_measured_throughput(organization, dataset):
    first = create_and_admit(organization, dataset)
    cfg = config_from_job(first)
    before = estimate(cfg)
    table_tps = before.breakdown["table_tokens_per_s"]
    measured = table_tps * 0.5  # the real stack is twice as slow as the table says
    _complete(first, seconds=before.duration_s.point * 2, tokens_per_s=measured)
    sample = ThroughputSample.objects.get(job=first)
    assert sample.tokens_per_s == pytest.approx(measured)
    assert sample.table_tokens_per_s == pytest.approx(table_tps)

    one = estimate(cfg)
    assert measured < one.tokens_per_s < before.tokens_per_s  # moved, not all the way on one sample
    for _ in range(8):
        job = create_and_admit(organization, dataset)
        _complete(job, seconds=before.duration_s.point * 2, tokens_per_s=measured)
    many = estimate(cfg)
    assert abs(many.tokens_per_s - measured) < abs(one.tokens_per_s - measured)
    assert many.tokens_per_s == pytest.approx(measured, rel=0.05)
    assert many.calibration["scope"] == "key" and many.calibration["samples"] == 9
    assert many.breakdown["training_s"] == pytest.approx(2 * before.breakdown["training_s"], rel=0.05)
    # consistent history narrows the range
    assert many.calibration["spread"] < before.calibration["spread"]
    # another GPU learns from the global correction
    other = estimate(with_changes(cfg, gpu_type=A100))
    assert other.calibration["scope"] == "global"
    # the global correction is shrunk toward the table: exp(n/(n+2) · ln 0.5) with n = 9
    assert ThroughputCalibration.objects.filter(gpu_type="*").get().tps_factor == pytest.approx(0.5 ** (9 / 11))


def test_accuracy_report_over_completed_jobs(organization, dataset):
    est = None
    for factor in (0.95, 1.0, 1.05, 1.3):
        job = create_and_admit(organization, dataset)
        est = JobCost.objects.get(job=job)
        _complete(job, seconds=int(est.est_duration_s * factor), tokens_per_s=1000.0)
    report = estimate_accuracy(organization=organization)
    assert report["duration"]["count"] == 4
    errors = sorted(round(j["duration_error"], 2) for j in report["jobs"])
    assert errors == [round(1 / 1.3 - 1, 2), round(1 / 1.05 - 1, 2), 0.0, round(1 / 0.95 - 1, 2)]
    assert report["duration"]["within_10"] == 0.75
    assert report["cost"]["count"] == 4


def test_estimate_api(api_client, make_user, organization, other_organization, dataset):
    user = make_user("eve", organization)
    api_client.force_authenticate(user)
    body = {"dataset": str(dataset.pk), "base_model": LLAMA_70B, "preset": "balanced", "overrides": {"num_epochs": 2},
            "gpu_type": H100, "cloud_type": "SECURE", "spot": False, "provider": "runpod"}
    response = api_client.post("/api/v1/estimates/", body, format="json")
    assert response.status_code == 200, response.content
    data = response.json()
    assert set(data["cost"]) == {"low", "point", "high"} and data["assumptions"]
    assert TrainingJob.objects.count() == 0
    bad = api_client.post("/api/v1/estimates/", {**body, "overrides": {"num_epochs": -1}}, format="json")
    assert bad.status_code == 400 and "num_epochs" in bad.json()["error"]["message"]
    stranger = make_user("mallory", other_organization)
    api_client.force_authenticate(stranger)
    assert api_client.post("/api/v1/estimates/", body, format="json").status_code == 404


def test_several_gpus_cost_per_gpu_and_scale_throughput_with_a_stated_efficiency(config):
    one = estimate(config)
    four = estimate(with_changes(config, gpu_count=4))
    assert four.rate_per_hour == 4 * one.rate_per_hour  # the catalog's price is per GPU
    # 70B on 4 GPUs is sharded (FSDP): throughput x 4 x 0.75
    assert four.tokens_per_s == pytest.approx(one.tokens_per_s * 4 * tables.MULTI_GPU_EFFICIENCY["fsdp"])
    assert four.breakdown["training_s"] == pytest.approx(one.breakdown["training_s"] / (4 * 0.75))
    assert four.duration_s.point < one.duration_s.point
    assert four.cost.point > one.cost.point  # scaling is not free
    assert any("4 GPUs (FSDP)" in a and "assumption" in a for a in four.assumptions)
    small = with_changes(config, base_model=LLAMA_8B)
    two = estimate(with_changes(small, gpu_count=2))
    assert two.tokens_per_s == pytest.approx(estimate(small).tokens_per_s * 2 * tables.MULTI_GPU_EFFICIENCY["ddp"])
