"""Metric assembly: CIs, pass/fail against thresholds, and NotComputed that never passes."""
import json
import math

import pytest

from validation.judges.base import JudgeResult, PairwiseOutcome, ReplyScore
from validation.scoring import (BRAND_VOICE, EMOTION, PERPLEXITY, RETENTION, WIN_RATE, EvaluationInputs, Metric,
                                NotComputed, Thresholds, build_metrics, summary_verdict)

KW = {"resamples": 300}


def _judge_result(n=40, on_voice_share=0.9, wins=30, ties=5):
    replies, pairs = [], []
    for i in range(n):
        replies.append(ReplyScore(f"i{i}", "base", {"feelings_first": 0.2, "specific_numbers": 0.5}, on_voice=False))
        replies.append(ReplyScore(f"i{i}", "adapted", {"feelings_first": 0.9, "specific_numbers": 0.5},
                                  on_voice=i < on_voice_share * n))
        pairs.append(PairwiseOutcome(f"i{i}", "adapted" if i < wins else ("tie" if i < wins + ties else "base")))
    return JudgeResult("offline", "Automatic proxy", ["feelings_first", "specific_numbers"], replies, pairs)


def test_full_inputs_give_every_metric_with_ci_and_n():
    base_k = [i < 120 for i in range(160)]  # 75%
    adapted_k = [i < 114 for i in range(160)]  # 71.25%: retention exactly 95%
    inputs = EvaluationInputs(
        knowledge_base=base_k, knowledge_adapted=adapted_k,
        emotion_base=[i % 4 == 0 for i in range(60)], emotion_adapted=[i % 2 == 0 for i in range(60)],
        judge_result=_judge_result(),
        perplexity_base=[(200.0, 100)] * 10, perplexity_adapted=[(150.0, 100)] * 10)
    metrics = build_metrics(inputs, **KW)
    assert all(isinstance(m, Metric) for m in metrics.values()), metrics
    retention = metrics[RETENTION]
    assert retention.value.value == pytest.approx(0.95) and retention.n == 160
    assert retention.passed is True and retention.conclusive is False  # the CI reaches below 95%
    assert retention.value.low < 0.95 < retention.value.high
    emotion = metrics[EMOTION]
    assert emotion.base.value == 0.25 and emotion.adapted.value == 0.5
    assert emotion.relative_improvement.value == pytest.approx(1.0) and emotion.difference.low > 0
    voice = metrics[BRAND_VOICE]
    assert voice.value.value == pytest.approx(0.9) and voice.passed is True and voice.n == 40
    wtl = metrics[WIN_RATE].extra["win_tie_loss"]
    assert wtl["win"]["value"] == 0.75 and wtl["tie"]["value"] == 0.125 and wtl["loss"]["value"] == 0.125
    ff = metrics["criterion:feelings_first"]
    assert ff.difference.value == pytest.approx(0.7) and ff.relative_improvement.value == pytest.approx(3.5)
    ppl = metrics[PERPLEXITY]
    assert ppl.base.value == pytest.approx(math.exp(2.0)) and ppl.adapted.value == pytest.approx(math.exp(1.5))
    assert ppl.relative_improvement.value < 0 and ppl.higher_is_better is False
    assert summary_verdict(metrics)["verdict"] == "pass"
    json.dumps({k: m.to_dict() for k, m in metrics.items()})


def test_missing_inputs_are_not_computed_with_reasons_and_never_pass():
    metrics = build_metrics(EvaluationInputs(missing={"judge": "the judge endpoint was not configured",
                                                      RETENTION: "the worker crashed before the knowledge set"}), **KW)
    assert all(isinstance(m, NotComputed) for m in metrics.values())
    assert metrics[RETENTION].reason == "the worker crashed before the knowledge set"
    assert metrics[BRAND_VOICE].reason == "the judge endpoint was not configured"
    assert metrics[EMOTION].to_dict() == {"key": EMOTION, "title": metrics[EMOTION].title, "computed": False,
                                          "reason": metrics[EMOTION].reason}
    verdict = summary_verdict(metrics)
    assert verdict["verdict"] == "incomplete" and set(verdict["not_computed"]) == {RETENTION, BRAND_VOICE}


def test_retention_fails_below_threshold_and_zero_base_is_not_computed():
    base = [True] * 50 + [False] * 50
    adapted = [True] * 40 + [False] * 60
    metrics = build_metrics(EvaluationInputs(knowledge_base=base, knowledge_adapted=adapted), **KW)
    assert metrics[RETENTION].value.value == pytest.approx(0.8)
    assert metrics[RETENTION].passed is False and summary_verdict(metrics)["verdict"] == "fail"
    zero = build_metrics(EvaluationInputs(knowledge_base=[False] * 20, knowledge_adapted=[True] * 20), **KW)
    assert isinstance(zero[RETENTION], NotComputed) and "undefined" in zero[RETENTION].reason
    custom = build_metrics(EvaluationInputs(knowledge_base=base, knowledge_adapted=adapted),
                           thresholds=Thresholds(retention_min=0.75), **KW)
    assert custom[RETENTION].passed is True


def test_judge_failures_are_left_out_and_counted_or_not_computed():
    result = _judge_result(n=10, on_voice_share=1.0)
    for r in result.replies[:6]:
        if r.model == "adapted":
            r.criteria, r.on_voice, r.not_computed = {}, None, "malformed judge output"
    metrics = build_metrics(EvaluationInputs(judge_result=result), **KW)
    assert metrics[BRAND_VOICE].n == 7 and metrics[BRAND_VOICE].extra["not_rated"] == 3
    for r in result.replies:
        if r.model == "adapted":
            r.criteria, r.on_voice, r.not_computed = {}, None, "malformed judge output"
    result.pairwise = [PairwiseOutcome(p.item_id, None, not_computed="no usable judge answer") for p in result.pairwise]
    metrics = build_metrics(EvaluationInputs(judge_result=result), **KW)
    for key in (BRAND_VOICE, WIN_RATE, "criterion:feelings_first"):
        assert isinstance(metrics[key], NotComputed), key
    assert "malformed" in metrics[BRAND_VOICE].reason and "no usable" in metrics[WIN_RATE].reason
    assert summary_verdict(metrics)["verdict"] == "incomplete"
