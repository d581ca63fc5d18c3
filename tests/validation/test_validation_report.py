"""The validation report end to end: a real job trained on the tiny model through the job stack
(Celery worker, live webhook server, local provider running the real gpu_worker), then the run
(offline judge, then the LLM judge against a local fake OpenAI-compatible server), and the report
as JSON (API), HTML (dashboard page and stored artifact) and PDF.

One training run serves every assertion (training is the expensive part)."""
from __future__ import annotations

import json
import math
import re

import pytest

from accounts.models import Role
from tests.jobs.conftest import wait_for
from tests.jobs.test_jobs_end_to_end import FAST
from tests.validation.test_validation_llm_judge import FakeJudgeServer, _is_pairwise
from validation.report import metric_row
from validation.rubric import CRITERION_IDS

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

GATED = ("knowledge_retention", "brand_voice")
POD_METRICS = ("perplexity", "emotion_recognition", "knowledge_retention")


def _check_every_metric_is_computed_or_explained(rows):
    assert rows, "the report has no metrics"
    for m in rows:
        if m["computed"]:
            assert m["value"] is not None and m["ci_low"] <= m["value"] <= m["ci_high"], m
            assert m["n"] > 0, m
            assert m["status"] in ("pass", "fail", "measured"), m
        else:
            assert m["status"] == "not computed" and m["reason"].strip(), m
            assert m["value"] is None and m.get("passed") is None, m  # never zero, never a pass


def _pdf_pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?!s)", pdf))


def _position_biased_judge(body):
    """Scores every reply 4 of 5 and on-voice; in pairwise questions always prefers reply A, a
    position bias that the both-orders rule turns into ties."""
    if _is_pairwise(body):
        return {"preferred": "A", "reason": "first is fine"}
    return {"scores": {c: 4 for c in CRITERION_IDS}, "on_voice": True, "reason": "warm and specific"}


def test_report_end_to_end_on_the_tiny_model(job_stack, organization, make_user, tiny_model_path, settings,
                                             client_as):
    from artifacts.models import ModelArtifact
    from training import states
    from training.services.datasets import dataset_import
    from training.services.jobs import job_create
    from tests.conftest import SAMPLE_FILE
    from validation import services, tasks
    from validation.models import RunStatus, ValidationRun

    engineer = make_user("eng", organization)
    dataset = dataset_import(organization=organization, source=SAMPLE_FILE.read_bytes(),
                             filename="sample.json").dataset
    # Every metric computed, at the smallest sizes that still give each one items to score.
    job_stack.env.update({"POD_EVAL_KNOWLEDGE": "1", "POD_EVAL_MAX_REPLIES": "4", "POD_EVAL_MAX_NEW_TOKENS": "24",
                          "POD_EVAL_MAX_EMOTION_ITEMS": "8"})
    job_stack.start_worker()
    job = job_create(organization=organization, dataset=dataset, created_by=engineer, preset="balanced",
                     overrides=FAST, base_model=str(tiny_model_path))

    def done():
        job.refresh_from_db()
        return job.is_terminal

    try:
        wait_for(done, 240, message="the job to finish")
    except AssertionError:
        raise AssertionError(f"job stuck in {job.status}; worker log:\n{job_stack.log()}") from None
    assert job.status == states.COMPLETED, (job.error_class, job.error_message, job_stack.log())

    # ---- the automatic run: completing the job scheduled validation.tasks.job_validate on the worker
    def validated():
        return ValidationRun.objects.filter(job=job, status__in=[RunStatus.COMPLETED, RunStatus.FAILED]).first()

    wait_for(validated, 180, message=f"the automatic validation run; worker log:\n{job_stack.log()}")
    job_stack.stop_worker()  # everything below runs in this process

    # ---- the pod's evaluation: summary in the completed event, full results in evaluation.json
    ev = job.result["eval"]
    assert ev["base_perplexity"] > 0 and ev["adapted_perplexity"] > 0
    assert ev["evaluation_uri"].endswith("/evaluation.json")
    doc, why = services.evaluation_load(job)
    assert doc is not None, why
    assert doc["knowledge"]["n"] == 161 and doc["replies"]["n"] > 0 and doc["emotion"]["n"] > 0
    convs = doc["perplexity"]["conversations"]
    pooled = sum(c["adapted_nll"] for c in convs) / sum(c["tokens"] for c in convs)
    assert abs(pooled - math.log(ev["adapted_perplexity"])) < 1e-9

    # ---- the automatic run (offline judge); running the task again changes nothing
    tasks.job_validate(str(job.pk))
    assert ValidationRun.objects.filter(job=job).count() == 1
    run = ValidationRun.objects.get(job=job)
    assert run.status == RunStatus.COMPLETED, run.errors
    assert run.judge["kind"] == "offline" and "proxy" in run.judge["label"].lower()
    assert run.thresholds == {"retention_min": 0.95, "brand_voice_min": 0.85}
    assert run.verdict in ("pass", "fail", "incomplete", "inconclusive", "not_valid")
    assert set(POD_METRICS) <= set(run.metrics)
    for key in ("perplexity", "knowledge_retention", "brand_voice", "pairwise_win_rate"):
        assert run.metrics[key]["computed"], run.metrics[key]
    assert run.inputs["examples_rule"] and run.inputs["dataset"]["split"] == "validation"
    assert run.versions["pod"]["torch"] and run.versions["code"]

    # ---- the stored report artifacts: JSON, HTML, PDF
    from artifacts.storage import get_storage

    stored = {a.name: a for a in ModelArtifact.objects.filter(job=job, kind="report")}
    assert set(stored) == {"validation.json", "validation.html", "validation.pdf"}
    storage = get_storage()
    pdf = storage.get_bytes(stored["validation.pdf"].key)
    assert pdf.startswith(b"%PDF") and _pdf_pages(pdf) >= 1
    stored_json = json.loads(storage.get_bytes(stored["validation.json"].key))
    _check_every_metric_is_computed_or_explained(stored_json["metrics"])
    html = storage.get_bytes(stored["validation.html"].key).decode()
    assert "<svg" in html and "Verdict" in html and stored_json["examples_rule"][:40] in html.replace("&#x27;", "'")

    # ---- JSON through the API: viewers read, engineers run, another organization sees nothing
    viewer = client_as("viewer", organization, Role.VIEWER)
    response = viewer.get(f"/api/v1/jobs/{job.pk}/validation/")
    assert response.status_code == 200, response.content
    report = response.json()["report"]
    _check_every_metric_is_computed_or_explained(report["metrics"])
    assert report["verdict"]["verdict"] == run.verdict
    assert report["training_curve"]["points"] == job.total_steps
    assert report["configuration"]["hyperparameters"]["lora_r"] == FAST["lora_r"]
    assert "cost" in report and report["examples_rule"]
    for ex in report["examples"]:
        assert {"client_message", "base_reply", "adapted_reply", "reference", "judged_gain"} <= set(ex)
    kinds = [e["kind"] for e in report["examples"]]
    assert set(kinds) <= {"win", "tie", "loss", "not compared", "worst loss"}
    assert len([k for k in kinds if k != "worst loss"]) <= 6 and kinds.count("worst loss") <= 1
    assert viewer.post(f"/api/v1/jobs/{job.pk}/validation/").status_code == 403
    intruder = client_as("intruder", make_org("globex"), Role.ADMIN)
    assert intruder.get(f"/api/v1/jobs/{job.pk}/validation/").status_code == 404
    assert intruder.post(f"/api/v1/jobs/{job.pk}/validation/").status_code == 404
    assert intruder.get(f"/api/v1/reports/compare/?a={job.pk}&b={job.pk}").status_code == 404

    # ---- on demand through the API, with the LLM judge against a local fake endpoint
    eng_api = client_as("eng2", organization, Role.ENGINEER)
    with FakeJudgeServer(_position_biased_judge) as server:
        settings.VALIDATION_JUDGE = "llm"
        settings.VALIDATION_LLM_BASE_URL = server.base_url
        settings.VALIDATION_LLM_MODEL = "judge-model"
        settings.VALIDATION_LLM_API_KEY = "sk-never-stored"
        response = eng_api.post(f"/api/v1/jobs/{job.pk}/validation/")
        assert response.status_code == 202, response.content
        llm_run = services.validation_run_execute(run_id=response.json()["id"])
        assert server.requests and all(r["auth"] == "Bearer sk-never-stored" for r in server.requests)
    assert llm_run.status == RunStatus.COMPLETED, llm_run.errors
    assert llm_run.judge["kind"] == "llm" and llm_run.judge["model"] == "judge-model"
    assert "sk-never-stored" not in json.dumps([llm_run.judge, llm_run.inputs, llm_run.versions, llm_run.judge_result])
    assert llm_run.metrics["brand_voice"]["computed"] and llm_run.metrics["brand_voice"]["value"]["value"] == 1.0
    # A judge that always prefers position A agrees with itself in neither order: all ties.
    wtl = llm_run.metrics["pairwise_win_rate"]["extra"]["win_tie_loss"]
    assert wtl["tie"]["value"] == 1.0
    report = eng_api.get(f"/api/v1/jobs/{job.pk}/validation/").json()["report"]
    assert report["run"]["id"] == str(llm_run.pk) and report["judge"]["kind"] == "llm"

    # ---- malformed judge output: retried, then brand voice is not computed and the verdict is incomplete
    with FakeJudgeServer(lambda body: "this is not JSON") as server:
        settings.VALIDATION_LLM_BASE_URL = server.base_url
        settings.VALIDATION_LLM_MAX_RETRIES = 1
        bad = services.validation_run_for_job(job_id=job.pk, trigger="on_demand")
        n_items = len(doc["replies"]["items"])
        # each reply scored (2 per item) and the first pairwise order (1 per item), each tried twice
        assert len(server.requests) == 2 * 3 * n_items
    assert bad.status == RunStatus.COMPLETED
    assert not bad.metrics["brand_voice"]["computed"] and "malformed" in bad.metrics["brand_voice"]["reason"]
    assert not bad.metrics["pairwise_win_rate"]["computed"]
    assert bad.verdict in ("incomplete", "fail") and "brand_voice" in bad.summary["not_computed"]
    _check_every_metric_is_computed_or_explained([metric_row(m) for m in bad.metrics.values()])

    # ---- the dashboard: report page (linked from the job page), PDF, comparison
    from django.test import Client

    browser = Client()
    browser.force_login(engineer)
    page = browser.get(f"/jobs/{job.pk}/")
    assert f"/jobs/{job.pk}/report/" in page.content.decode()
    page = browser.get(f"/jobs/{job.pk}/report/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Verdict" in text and "not computed" in text  # the latest (malformed-judge) run
    for m in bad.metrics.values():
        assert m["title"].split(" (")[0].replace("'", "&#x27;") in text
    pdf = browser.get(f"/jobs/{job.pk}/report.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF") and _pdf_pages(pdf.content) >= 1
    compare = browser.get(f"/reports/compare/?a={job.pk}&b={job.pk}")
    assert compare.status_code == 200 and "Knowledge retention" in compare.content.decode()
    api_compare = viewer.get(f"/api/v1/reports/compare/?a={job.pk}&b={job.pk}")
    assert api_compare.status_code == 200
    body = api_compare.json()
    assert len(body["reports"]) == 2 and {r["key"] for r in body["metrics"]} >= set(POD_METRICS)
    assert viewer.get("/api/v1/reports/compare/?a=nope").status_code == 400

    print("\n" + json.dumps({"verdict": run.verdict, "metrics": [
        {k: stored_json_row.get(k) for k in ("key", "value_text", "ci_text", "n", "status", "reason")}
        for stored_json_row in stored_json["metrics"]]}, indent=1))


def make_org(slug):
    from accounts.services import organization_get_or_create

    return organization_get_or_create(slug=slug, name=slug.title())
