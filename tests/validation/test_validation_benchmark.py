"""The organization's benchmark dataset: marked by an admin (one per organization), carried to the
pod in every job spec whose own validation data differs (never to a job that trained on it), and a
validation run on it records which data it measured, so compare accepts two jobs trained on
different data but measured on the benchmark, and refuses (409, in the OpenAPI schema) otherwise."""
from __future__ import annotations

import json

import pytest

from accounts.models import Role
from tests.api.conftest import drive
from tests.jobs.factories import make_running_job
from tests.training.test_dataset_identity import _import, _part
from tests.validation.test_validation_runs import _bag_of_words, _crafted_evaluation

pytestmark = pytest.mark.django_db


def test_only_an_admin_marks_the_benchmark_and_an_organization_has_one(organization, other_organization,
                                                                        real_file, client_as):
    first = _import(organization, _part(real_file, 0, 24), "24.json")
    second = _import(organization, real_file.read_bytes(), "72.json")
    foreign = _import(other_organization, real_file.read_bytes(), "72.json")
    engineer = client_as("eng", organization, Role.ENGINEER)
    admin = client_as("admin", organization, Role.ADMIN)

    refused = engineer.post(f"/api/v1/datasets/{first.pk}/benchmark/")
    assert refused.status_code == 403 and "admin" in refused.json()["error"]["message"]
    assert admin.post(f"/api/v1/datasets/{first.pk}/benchmark/").json()["is_benchmark"] is True
    assert admin.post(f"/api/v1/datasets/{second.pk}/benchmark/").json()["is_benchmark"] is True
    first.refresh_from_db()
    assert first.is_benchmark is False  # moved, not two
    assert admin.post(f"/api/v1/datasets/{foreign.pk}/benchmark/").status_code == 404
    assert engineer.get(f"/api/v1/datasets/{second.pk}/").json()["is_benchmark"] is True
    assert admin.delete(f"/api/v1/datasets/{second.pk}/benchmark/").json()["is_benchmark"] is False


def test_the_job_spec_carries_the_benchmark_unless_the_job_trained_on_it(organization, real_file):
    from training.services.datasets import dataset_benchmark_set
    from training.services.jobs import job_spec_build
    from validation import benchmark

    # The benchmark: the 72 file with 30% held out. Job A trains on the shipped sample (other
    # conversations); job B on the first 24 conversations with 5% held out, so it trains on some
    # of the benchmark's held-out conversations.
    bench = _import(organization, real_file.read_bytes(), "72.json", val_fraction=0.3)
    dataset_benchmark_set(dataset=bench, on=True)
    job_a = make_running_job(organization, status="provisioning")
    spec = job_spec_build(job_a).benchmark
    assert spec["dataset_id"] == str(bench.pk) and spec["val_fingerprint"] == bench.val_fingerprint
    assert spec["val_uri"].startswith("file://") and spec["val_uri"].endswith("val.jsonl")

    job_b = make_running_job(organization, status="provisioning")
    job_b.dataset = _import(organization, _part(real_file, 0, 24), "24.json", val_fraction=0.05)
    job_b.save(update_fields=["dataset"])
    assert benchmark.benchmark_trained_on(job=job_b, benchmark=bench) > 0
    assert job_spec_build(job_b).benchmark is None

    job_c = make_running_job(organization, status="provisioning")
    job_c.dataset = bench
    job_c.save(update_fields=["dataset"])
    assert job_spec_build(job_c).benchmark is None  # its own validation data is the benchmark


def _benchmark_evaluation(bench, adapted_nll):
    doc = _crafted_evaluation()
    part = _crafted_evaluation()
    for c in part["perplexity"]["conversations"]:
        c["adapted_nll"] = adapted_nll
    doc["benchmark"] = {**part, "dataset_id": str(bench.pk), "name": bench.name,
                        "val_fingerprint": bench.val_fingerprint}
    return doc


def test_a_run_on_the_benchmark_records_it_and_makes_reports_comparable(organization, real_file, client_as,
                                                                        settings, monkeypatch):
    from artifacts.services import job_output_key
    from artifacts.storage import get_storage
    from training.services.datasets import dataset_benchmark_set
    from validation import services
    from validation.judges import offline

    settings.VALIDATION_JUDGE = "offline"
    monkeypatch.setattr(offline, "minilm_embedder", _bag_of_words)
    engineer = client_as("eng", organization, Role.ENGINEER)
    viewer = client_as("viewer", organization, Role.VIEWER)
    job_a = drive(make_running_job(organization, status="provisioning", name="on the sample"))
    job_b = drive(make_running_job(organization, status="provisioning", name="on 24"))
    job_b.dataset = _import(organization, _part(real_file, 48, 72), "24.json")
    job_b.save(update_fields=["dataset"])

    url = f"/api/v1/jobs/{job_a.pk}/validation/"
    assert engineer.post(url, {"validation_data": "benchmark"}, format="json").json()["error"]["code"] == "no_benchmark"
    assert engineer.post(url, {"validation_data": "nope"}, format="json").status_code == 400
    bench = _import(organization, _part(real_file, 0, 24), "bench.json", val_fraction=0.3)
    dataset_benchmark_set(dataset=bench, on=True)
    # Trained before the benchmark was marked: the pod never evaluated it there.
    late = engineer.post(url, {"validation_data": "benchmark"}, format="json")
    assert late.status_code == 409 and late.json()["error"]["code"] == "benchmark_not_evaluated"

    runs = {}
    for job, nll in ((job_a, 200.0), (job_b, 210.0)):
        job.result = {**job.result, "eval": {**job.result["eval"], "benchmark": {
            "dataset_id": str(bench.pk), "val_fingerprint": bench.val_fingerprint}}}
        job.save(update_fields=["result"])
        get_storage().put_bytes(f"{job_output_key(job)}/evaluation.json",
                                json.dumps(_benchmark_evaluation(bench, nll)).encode())
        accepted = engineer.post(f"/api/v1/jobs/{job.pk}/validation/", {"validation_data": "benchmark"}, format="json")
        assert accepted.status_code == 202, accepted.content
        assert accepted.json()["validation_dataset"] == str(bench.pk)
        again = engineer.post(f"/api/v1/jobs/{job.pk}/validation/", {"validation_data": "benchmark"}, format="json")
        assert again.status_code == 200 and again.json()["id"] == accepted.json()["id"]  # joined, not queued twice
        runs[job.pk] = services.validation_run_execute(run_id=accepted.json()["id"])

    run = runs[job_a.pk]
    assert run.status == "completed", run.errors
    assert run.validation_dataset_id == bench.pk and run.inputs["dataset"]["id"] == str(bench.pk)
    assert run.inputs["dataset"]["benchmark"] is True and run.inputs["dataset"]["trained_on"] == str(job_a.dataset_id)
    # Measured from the benchmark section (adapted NLL 200 per ~100 tokens: perplexity ~6.9), not
    # the job's own (250: ~11.6).
    ppl = run.metrics["perplexity"]
    assert ppl["computed"] and 6 < ppl["value"]["value"] < 8

    # Different training data, same benchmark: comparable.
    same = viewer.get(f"/api/v1/reports/compare/?a={job_a.pk}&b={job_b.pk}")
    assert same.status_code == 200, same.content
    assert [s["validation_data"]["dataset_id"] for s in same.json()["reports"]] == [str(bench.pk)] * 2
    # Job B validated on its own data afterwards: its latest report no longer is on the benchmark.
    own = services.validation_run_request(job_id=job_b.pk)
    services.validation_run_execute(run_id=own.pk)
    refused = viewer.get(f"/api/v1/reports/compare/?a={job_a.pk}&b={job_b.pk}")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "validation_data_differs"


def test_a_job_that_trained_on_the_benchmark_is_refused(organization, real_file, client_as):
    from training.services.datasets import dataset_benchmark_set

    bench = _import(organization, real_file.read_bytes(), "72.json", val_fraction=0.3)
    dataset_benchmark_set(dataset=bench, on=True)
    job = drive(make_running_job(organization, status="provisioning"))
    job.dataset = _import(organization, _part(real_file, 0, 24), "24.json", val_fraction=0.05)
    job.save(update_fields=["dataset"])
    response = client_as("eng", organization, Role.ENGINEER).post(
        f"/api/v1/jobs/{job.pk}/validation/", {"validation_data": "benchmark"}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "benchmark_trained_on"
    assert response.json()["error"]["detail"]["trained_on"] > 0


def test_the_compare_409_is_in_the_openapi_schema():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    compare = schema["paths"]["/api/v1/reports/compare/"]["get"]["responses"]
    assert "409" in compare and "validation_data_differs" in compare["409"]["description"]
    run = schema["paths"]["/api/v1/jobs/{id}/validation/"]["post"]
    assert "409" in run["responses"] and "benchmark_not_evaluated" in run["responses"]["409"]["description"]
    assert schema["paths"]["/api/v1/datasets/{id}/benchmark/"]["post"]


def test_the_job_spec_carries_the_lm_eval_tasks_setting(organization, settings):
    from gpu_worker.contracts import JobSpec
    from training.services.jobs import job_spec_build

    job = make_running_job(organization, status="provisioning")
    assert job_spec_build(job).eval_lm_tasks == ()  # none by default (the CPU, the tests)
    settings.POD_EVAL_LM_TASKS = ("arc_easy", "hellaswag")
    settings.POD_EVAL_LM_LIMIT = 50
    spec = job_spec_build(job)
    assert spec.eval_lm_tasks == ("arc_easy", "hellaswag") and spec.eval_lm_limit == 50
    assert JobSpec.from_env_value(spec.to_env_value()).eval_lm_tasks == ("arc_easy", "hellaswag")
    with pytest.raises(ValueError, match="eval_lm_limit"):
        JobSpec.from_dict({**spec.to_dict(), "eval_lm_limit": 0})


def test_lm_eval_results_become_a_report_row(organization, settings, monkeypatch):
    from artifacts.services import job_output_key
    from artifacts.storage import get_storage
    from validation import report, services
    from validation.judges import offline

    settings.VALIDATION_JUDGE = "offline"
    monkeypatch.setattr(offline, "minilm_embedder", _bag_of_words)
    job = drive(make_running_job(organization, status="provisioning"))
    doc = _crafted_evaluation()
    doc["lm_eval"] = {"tasks": {"brightrun_general_mc": {
        "base": {"acc": 0.25, "acc_stderr": 0.1, "acc_norm": 0.3}, "adapted": {"acc": 0.2, "acc_stderr": 0.09,
                                                                                "acc_norm": 0.25}, "n": 20}}}
    get_storage().put_bytes(f"{job_output_key(job)}/evaluation.json", json.dumps(doc).encode())
    run = services.validation_run_for_job(job_id=job.pk)
    assert run.status == "completed", run.errors
    [row] = [report.metric_row(m) for k, m in run.metrics.items() if k.startswith("lm_eval:")]
    assert row["name"] == "Out-of-domain retention (lm-eval: brightrun_general_mc)" and row["n"] == 20
    assert row["value"] == 0.2 and row["base_text"].startswith("0.250") and row["status"] == "measured"
    assert row["ci_low"] == pytest.approx(0.2 - 1.96 * 0.09)
    assert "Out-of-domain retention (lm-eval: brightrun_general_mc)" in report.render_html(report.report_document(run))
