"""Gates decided by interval bounds with minimum evidence, checked against controls
(validation.gates): the gaming cases of issue 15 as tests."""
import random

import pytest

from validation import gates
from validation.stats import Estimate


def _ids(conversations: int, per: int):
    return [f"c{c}#{2 * i + 1}" for c in range(conversations) for i in range(per)]


def test_bound_verdict_uses_the_interval_not_the_point():
    assert gates.bound_verdict(Estimate(0.9, 0.86, 0.95, 40), 0.85) == gates.PASS
    assert gates.bound_verdict(Estimate(0.9, 0.80, 0.95, 40), 0.85) == gates.INCONCLUSIVE
    assert gates.bound_verdict(Estimate(0.7, 0.60, 0.84, 40), 0.85) == gates.FAIL
    assert gates.bound_verdict(Estimate(0.05, 0.01, 0.09, 40), 0.10, higher_is_better=False) == gates.PASS


def test_zero_width_interval_below_minimum_n_is_never_conclusive():
    ids = _ids(1, 1)  # brand voice 100% on n = 1: the "conclusive PASS"
    result = gates.brand_voice_gate("adapted", item_ids=ids + _ids(20, 1)[1:], on_voice=[True] + [None] * 19,
                                    relevant=[True] + [None] * 19, reference_on_voice=[True] * 20, diversity=1.0)
    assert result.value.low == result.value.high == 1.0
    assert result.verdict == gates.INCONCLUSIVE
    assert any("fewer than the minimum 20" in r for r in result.reasons)
    assert any("were rated" in r for r in result.reasons)


def test_canned_reply_never_passes_and_makes_the_gate_not_valid():
    ids = _ids(8, 3)
    refs = [f"reference reply number {i} about topic {i}" for i in range(len(ids))]
    controls = gates.control_replies(ids, refs)
    assert len(set(controls[gates.CANNED])) == 1
    assert all(gates.conversation_of(ids[i]) != gates.conversation_of(ids[refs.index(r)])
               for i, r in enumerate(controls[gates.SHUFFLED]))
    everything_on_voice = [True] * len(ids)
    canned = gates.brand_voice_gate("canned", item_ids=ids, on_voice=everything_on_voice, relevant=[False] * len(ids),
                                    reference_on_voice=everything_on_voice, diversity=0.0, resamples=300)
    assert canned.verdict == gates.FAIL
    reference = gates.brand_voice_gate("reference", item_ids=ids, on_voice=everything_on_voice,
                                       relevant=[True] * len(ids), reference_on_voice=everything_on_voice,
                                       diversity=1.0, resamples=300)
    assert reference.verdict == gates.PASS
    adapted = gates.apply_controls(reference, {"reference": reference, "canned": reference})
    assert adapted.verdict == gates.NOT_VALID and "canned control passes" in adapted.reasons[-1]
    adapted = gates.apply_controls(reference, {"reference": canned})
    assert adapted.verdict == gates.NOT_VALID and "reference replies do not pass" in adapted.reasons[-1]
    assert gates.apply_controls(reference, {"reference": reference, "canned": canned}).verdict == gates.PASS


def test_non_inferiority_is_against_the_reference_rate():
    ids = _ids(10, 3)
    ref = [i % 5 != 0 for i in range(30)]  # the reference itself is 80% on-voice
    adapted = gates.brand_voice_gate("adapted", item_ids=ids, on_voice=ref, relevant=[True] * 30,
                                     reference_on_voice=ref, diversity=1.0, resamples=300)
    assert adapted.verdict == gates.PASS  # an 85% absolute bar would fail the dataset's own replies
    worse = gates.brand_voice_gate("adapted", item_ids=ids, on_voice=[i % 2 == 0 for i in range(30)],
                                   relevant=[True] * 30, reference_on_voice=ref, diversity=1.0, resamples=300)
    assert worse.verdict != gates.PASS
    check = {c["check"]: c for c in worse.checks}["non_inferior_to_reference"]
    assert check["reference_rate"] == pytest.approx(0.8) and check["value"] < -0.1


def test_below_chance_base_never_yields_a_forgetting_verdict():
    rng = random.Random(3)
    base = [rng.random() < 0.16 for _ in range(161)]  # the tiny model: 16% on 4 options
    adapted = [rng.random() < 0.16 for _ in range(161)]
    result = gates.forgetting_gate(base, adapted, options=4, resamples=300)
    assert result.verdict == gates.INCONCLUSIVE and result.value is None
    assert "not clearly above chance" in result.reasons[0] and result.extra["computed"] is False


def test_forgetting_counts_lost_questions_even_when_others_are_gained():
    base = [True] * 100 + [False] * 60
    adapted = [False] * 10 + [True] * 90 + [True] * 10 + [False] * 50  # 10 lost, 10 gained: ratio 100%
    result = gates.forgetting_gate(base, adapted, options=4, max_forgetting=0.03, resamples=500)
    assert result.value.value == pytest.approx(0.10)
    assert result.extra["lost"] == 10 and result.extra["gained"] == 10
    assert result.extra["mcnemar_p"] == pytest.approx(1.0)
    assert result.verdict == gates.FAIL
    kept = gates.forgetting_gate(base, base, options=4, resamples=300)
    assert kept.value.value == 0 and kept.verdict == gates.PASS


def test_mcnemar_exact_matches_the_binomial():
    assert gates.mcnemar_exact(0, 0) == 1.0
    assert gates.mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert gates.mcnemar_exact(10, 2) == pytest.approx(2 * sum(__import__("math").comb(12, i) for i in range(3)) / 4096)


def test_overall_verdict():
    def g(v):
        return gates.GateResult("x", "adapted", v, None, 0)
    assert gates.overall_verdict([g("pass"), g("pass")]) == "pass"
    assert gates.overall_verdict([g("pass"), g("fail"), g("not_valid")]) == "fail"
    assert gates.overall_verdict([g("pass"), g("not_valid")]) == "not_valid"
    assert gates.overall_verdict([g("pass"), g("inconclusive")]) == "inconclusive"
