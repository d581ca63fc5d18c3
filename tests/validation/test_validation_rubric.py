"""Rubric criteria from a consultant profile, and the rule-based detectors on crafted replies."""
import json

import pytest

from tests.conftest import SAMPLE_FILE
from validation.rubric import CRITERION_IDS, build_rubric, detect

CLIENT = "I'm so embarrassed. I have $8,400 on two credit cards and I don't even know where it all went."
WARM = ("I can hear how heavy this feels, and thank you for telling me. You're not alone: credit card debt is one of "
        "the most common things people bring to me, and it's completely fixable. Would it help if I walked you "
        "through how the interest works? At 22% on $8,400 you're paying about $150 a month just in interest. "
        "For now, one small step: this week, write down the balance and rate of each card.")
CURT = "Pay off the cards."
JUDGMENTAL = ("You should have tracked your spending. That was irresponsible, and obviously you need to rebalance "
              "your asset allocation and check your APR. Don't worry, it'll be fine.")


@pytest.fixture
def profile():
    return json.loads(SAMPLE_FILE.read_text())["consultant_profile"]


def test_rubric_is_built_from_the_profile(profile):
    rubric = build_rubric(profile)
    assert rubric.criterion_ids == CRITERION_IDS
    assert rubric.consultant == profile["name"]
    assert {r.text for r in rubric.avoid_rules} >= set(profile["communication_style"]["avoid"])
    assert all(r.detector for r in rubric.avoid_rules)  # every avoid item of this profile has a detector
    feelings = next(c for c in rubric.criteria if c.id == "feelings_first")
    assert any("feel" in line.lower() for line in feelings.profile_basis)
    unknown = build_rubric({"communication_style": {"avoid": ["talking about cryptocurrency"]}})
    assert unknown.unmatched_avoid == ("talking about cryptocurrency",)
    assert build_rubric(None).avoid_rules  # default avoid list


def test_warm_specific_permission_asking_reply_beats_curt_and_judgmental(profile):
    rubric = build_rubric(profile)
    warm = rubric.detect(WARM, client_message=CLIENT)
    curt = rubric.detect(CURT, client_message=CLIENT)
    harsh = rubric.detect(JUDGMENTAL, client_message=CLIENT)
    assert all(0.0 <= v <= 1.0 for s in (warm, curt, harsh) for v in s.scores.values())
    assert warm.scores == {c: 1.0 for c in CRITERION_IDS}, warm.evidence
    assert warm.mean > curt.mean > harsh.mean
    for cid in ("feelings_first", "specific_numbers", "asks_permission", "single_clear_step"):
        assert warm.scores[cid] > curt.scores[cid], cid
    assert harsh.scores["judgment_free"] == 0.0
    assert warm.avoid_violations == [] and len(harsh.avoid_violations) >= 3
    assert harsh.scores["avoids_avoid_list"] < warm.scores["avoids_avoid_list"]


@pytest.mark.parametrize("reply,criterion,expected", [
    ("This isn't stupid at all; it's a very common question.", "judgment_free", 1.0),  # negated: not judgment
    ("Why did you wait so long?", "judgment_free", 0.0),
    ("You have $3,000 in savings and a 401(k).", "specific_numbers", 0.5),  # 401(k) is a name, not a figure
    ("1. Open the app\n2. Note the balance", "specific_numbers", 0.0),  # list markers are not figures
    ("Shall I explain how a Roth conversion works?", "asks_permission", 1.0),
    ("Here are your options:\n- a\n- b\n- c\n- d\n- e", "single_clear_step", 0.2),
    ("That sounds stressful. Your balance is $500.", "feelings_first", 1.0),
    ("Your balance is $500. Your rate is 20%. I know that feels stressful.", "feelings_first", 0.5),
])
def test_detector_patterns(reply, criterion, expected):
    assert detect(reply).scores[criterion] == expected


def test_jargon_is_fine_when_explained_or_used_by_the_client():
    assert detect("Your RMD is due.").avoid_violations
    assert not detect("Your RMD, which means required minimum distribution, is due. The RMD is small.").avoid_violations
    assert not detect("Your RSUs vest in May.", client_message="What about my RSUs?").avoid_violations


def test_literal_backslash_n_in_exported_text_is_read_as_a_line_break():
    assert detect("Okay.\\n\\nWould it help if I explain?").scores["asks_permission"] == 1.0
