"""The side-by-side examples are drawn by a stated rule, not picked (validation.services.examples_select)."""
from __future__ import annotations

from collections import Counter

from validation.judges.base import ADAPTED, BASE, TIE, PairwiseOutcome
from validation.services import EXAMPLES_RULE, examples_select


class _Score:
    def __init__(self, overall):
        self.overall, self.on_voice = overall, None


class _Result:
    """The two things examples_select reads from a JudgeResult: scores per side and the pairwise outcomes."""

    def __init__(self, gains, winners):
        self._scores = {BASE: {}, ADAPTED: {}}
        self.pairwise = []
        for i, (gain, winner) in enumerate(zip(gains, winners)):
            item = f"item-{i:03d}"
            self._scores[BASE][item] = _Score(0.5)
            self._scores[ADAPTED][item] = _Score(0.5 + gain)
            self.pairwise.append(PairwiseOutcome(item_id=item, winner=winner))

    def scores_for(self, side):
        return self._scores[side]


def _replies(n):
    return {"items": [{"item_id": f"item-{i:03d}", "client_message": f"message {i}", "reference": f"ref {i}",
                       "base": {"text": f"base {i}"}, "adapted": {"text": f"adapted {i}"}} for i in range(n)]}


def _case():
    # 30 items: 18 won by the adapted model, 6 ties, 6 lost; item 29 is the largest drop.
    winners = [ADAPTED] * 18 + [TIE] * 6 + [BASE] * 6
    gains = [0.05 + 0.01 * i for i in range(18)] + [0.0] * 6 + [-0.02 * (i + 1) for i in range(6)]
    return _Result(gains, winners), _replies(30)


def test_a_draw_stratified_by_outcome_with_the_worst_loss_added():
    result, replies = _case()
    examples = examples_select(replies, result, per_side=3)
    kinds = Counter(e["kind"] for e in examples)
    # 6 places shared 18:6:6 -> 4 won, 1 tie, 1 lost (every group at least one), then the worst loss.
    assert kinds == {"win": 4, "tie": 1, "loss": 1, "worst loss": 1}
    assert examples[-1]["item_id"] == "item-029" and examples[-1]["judged_gain"] < -0.11
    assert examples[-1]["label"].startswith("Worst loss")
    # A draw, not the tails: the 4 wins are not simply the 4 largest gains every time the data changes.
    assert len({e["item_id"] for e in examples}) == len(examples)


def test_the_same_items_give_the_same_examples_and_other_items_a_fresh_draw():
    result, replies = _case()
    first = [e["item_id"] for e in examples_select(replies, result, per_side=3)]
    again = [e["item_id"] for e in examples_select(replies, result, per_side=3)]
    assert first == again
    draws = set()
    for drop in range(8):  # leave one won item out: the seed changes with the item ids
        kept = {"items": [r for r in replies["items"] if r["item_id"] != f"item-{drop:03d}"]}
        draws.add(tuple(e["item_id"] for e in examples_select(kept, result, per_side=3) if e["kind"] == "win"))
    assert len(draws) > 1


def test_no_loss_means_no_worst_loss_and_too_few_items_are_all_shown():
    result = _Result([0.1, 0.2, 0.0], [ADAPTED, ADAPTED, TIE])
    examples = examples_select(_replies(3), result, per_side=3)
    assert sorted(e["kind"] for e in examples) == ["tie", "win", "win"]
    assert examples_select(_replies(3), None, per_side=3) == []
    assert "drawn, not picked" in EXAMPLES_RULE.format(k=6) and "worst loss" in EXAMPLES_RULE
