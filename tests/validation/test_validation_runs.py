"""Validation runs on jobs driven through the real webhook (no model): what the report says when
the pod's evaluation file is missing, and on a crafted evaluation file."""
from __future__ import annotations

import json

import pytest

from accounts.models import Role
from tests.api.conftest import drive
from tests.jobs.factories import make_running_job
from validation.report import metric_row

pytestmark = pytest.mark.django_db

WARM = ("I hear how stressful this is, and it makes complete sense. You're not alone: this is very common and "
        "fixable. Would it help if I walk you through one small step? This week, list your $8,400 balance and "
        "the 24% rate.")
CURT = "You should have paid it off. Why did you let it get this big? That was a big mistake."


def _completed_job(organization, owner):
    return drive(make_running_job(organization, status="provisioning", name="crafted", created_by=owner))


def _crafted_evaluation(n_replies=6, n_knowledge=30):
    def choice(i, base_ok, adapted_ok):
        answer = i % 4
        wrong = (answer + 1) % 4

        def scores(ok):
            lp = [-5.0] * 4
            lp[answer if ok else wrong] = -1.0
            return {"logprobs": lp, "n_tokens": [2, 2, 2, 2]}
        return {"item_id": f"q{i}", "answer": answer, "options": ["a", "b", "c", "d"], "meta": {},
                "base": scores(base_ok), "adapted": scores(adapted_ok), "base_correct": base_ok,
                "adapted_correct": adapted_ok}

    replies = []
    for i in range(n_replies):
        adapted_better = i % 3 != 0
        replies.append({"item_id": f"c#{i}", "client_message": "I have $8,400 on a card and I feel ashamed.",
                        "reference": WARM, "context": [{"role": "user", "content": "hi"}],
                        "base": {"text": CURT if adapted_better else WARM, "n_new_tokens": 20, "finished": True},
                        "adapted": {"text": WARM if adapted_better else CURT, "n_new_tokens": 40, "finished": True}})
    return {
        "version": 1, "settings": {"seed": 0, "choice_score": "sum", "max_replies": 48, "max_new_tokens": 256},
        "versions": {"torch": "x"}, "held_out_conversations": 4,
        "perplexity": {"conversations": [{"conversation_id": f"c{i}", "tokens": 100 + i, "base_nll": 300.0 + i,
                                          "adapted_nll": 250.0 + i} for i in range(8)]},
        "emotion": {"score": "sum", "n": 10, "items": [choice(i, i % 2 == 0, i % 3 != 0) for i in range(10)]},
        "knowledge": {"score": "sum", "n": n_knowledge, "items": [choice(i, True, i != 0) for i in range(n_knowledge)]},
        "replies": {"n": n_replies, "items": replies},
        "errors": {},
    }


def test_missing_evaluation_file_is_not_computed_with_a_reason_never_a_pass(organization, make_user):
    from validation import services

    job = _completed_job(organization, make_user("owner", organization))
    run = services.validation_run_for_job(job_id=job.pk)
    assert run.status == "completed", run.errors
    assert run.verdict == "incomplete"
    for key in ("perplexity", "emotion_recognition", "knowledge_retention", "brand_voice", "pairwise_win_rate"):
        m = run.metrics[key]
        assert m["computed"] is False and "evaluation.json" in m["reason"], m
    rows = [metric_row(m) for m in run.metrics.values()]
    assert all(r["status"] == "not computed" and r["value"] is None for r in rows)


def _bag_of_words(texts):
    """A deterministic stand-in for the sentence embedder (the real one runs in the end-to-end
    test): unit vectors of hashed word counts."""
    import hashlib
    import math
    import re

    out = []
    for text in texts:
        v = [0.0] * 64
        for word in re.findall(r"[a-z']+", text.lower()):
            v[int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        out.append([x / norm for x in v])
    return out


@pytest.mark.slow
def test_crafted_evaluation_gives_metrics_examples_and_a_pdf(organization, make_user, client_as, settings,
                                                              monkeypatch):
    from artifacts.services import job_output_key
    from artifacts.storage import get_storage
    from validation import report, services
    from validation.judges import offline

    settings.VALIDATION_JUDGE = "offline"
    monkeypatch.setattr(offline, "minilm_embedder", _bag_of_words)
    job = _completed_job(organization, make_user("owner", organization))
    get_storage().put_bytes(f"{job_output_key(job)}/evaluation.json", json.dumps(_crafted_evaluation()).encode())
    run = services.validation_run_for_job(job_id=job.pk)
    assert run.status == "completed", run.errors
    m = run.metrics
    assert m["perplexity"]["computed"] and m["perplexity"]["value"]["value"] < m["perplexity"]["base"]["value"]
    assert m["knowledge_retention"]["computed"] and abs(m["knowledge_retention"]["value"]["value"] - 29 / 30) < 1e-9
    assert m["knowledge_retention"]["passed"] is True
    assert m["emotion_recognition"]["computed"] and m["emotion_recognition"]["n"] == 10
    assert any("mean per-token" in n for n in m["emotion_recognition"]["notes"])
    assert m["pairwise_win_rate"]["computed"]
    # The rule: a draw stratified by the primary endpoint's outcome, plus the worst loss.
    kinds = [e["kind"] for e in run.examples]
    assert "win" in kinds and kinds[-1] == "worst loss"
    assert all(e["adapted_reply"] == WARM for e in run.examples if e["kind"] == "win")
    assert run.examples[-1]["adapted_reply"] == CURT and run.examples[-1]["judged_gain"] < 0
    document = report.report_document(run)
    pdf = report.render_pdf(document)
    assert pdf.startswith(b"%PDF")
    html = report.render_html(document)
    assert "Knowledge retention" in html and "<svg" in html

    viewer = client_as("viewer", organization, Role.VIEWER)
    body = viewer.get(f"/api/v1/jobs/{job.pk}/validation/").json()
    assert body["report"]["run"]["id"] == str(run.pk)
    assert viewer.post(f"/api/v1/jobs/{job.pk}/validation/").status_code == 403


def test_a_job_that_is_not_completed_cannot_be_validated(organization, client_as):
    job = make_running_job(organization, status="training")
    engineer = client_as("eng", organization, Role.ENGINEER)
    response = engineer.post(f"/api/v1/jobs/{job.pk}/validation/")
    assert response.status_code == 409 and "completed" in response.json()["error"]["message"]
    assert engineer.get(f"/api/v1/jobs/{job.pk}/validation/").status_code == 404
