"""Bootstrap intervals: coverage on synthetic data, pairing, determinism, edge cases."""
import random

import pytest

from validation import stats

REPS = 200


def _coverage(make_sample, statistic, truth, resamples=500):
    hits = 0
    for rep in range(REPS):
        rng = random.Random(1000 + rep)
        est = statistic(*make_sample(rng), resamples=resamples, seed=rep)
        hits += est.contains(truth)
    return hits / REPS


def test_mean_interval_covers_the_true_mean_at_about_95_percent():
    coverage = _coverage(lambda rng: ([rng.gauss(1.0, 2.0) for _ in range(40)],), stats.bootstrap_mean, 1.0)
    assert 0.90 <= coverage <= 0.99, coverage


def test_proportion_interval_covers_the_true_rate():
    coverage = _coverage(lambda rng: ([rng.random() < 0.7 for _ in range(80)],), stats.bootstrap_proportion, 0.7)
    assert 0.90 <= coverage <= 0.99, coverage


def test_paired_difference_interval_covers_the_true_difference():
    def sample(rng):
        item_effect = [rng.gauss(0, 1) for _ in range(50)]
        base = [e + rng.gauss(0, 0.5) for e in item_effect]
        adapted = [e + 0.3 + rng.gauss(0, 0.5) for e in item_effect]
        return base, adapted

    coverage = _coverage(sample, stats.bootstrap_difference, 0.3)
    assert 0.90 <= coverage <= 0.99, coverage


def test_pairing_narrows_the_interval_when_items_are_correlated():
    rng = random.Random(3)
    effect = [rng.gauss(0, 3) for _ in range(60)]
    base = [e + rng.gauss(0, 0.3) for e in effect]
    adapted = [e + 0.5 + rng.gauss(0, 0.3) for e in effect]
    paired = stats.bootstrap_difference(base, adapted)
    unpaired = stats.bootstrap_difference(base, adapted, paired=False)
    assert (paired.high - paired.low) < (unpaired.high - unpaired.low) / 3
    assert paired.low > 0  # the paired test sees the effect


def test_seeded_and_reports_its_sample_size():
    xs = [0.1, 0.5, 0.9, 0.4, 0.7]
    a = stats.bootstrap_mean(xs, seed=5)
    b = stats.bootstrap_mean(xs, seed=5)
    assert a == b and a.n == 5 and a.confidence == 0.95
    assert a.low <= a.value <= a.high
    assert stats.bootstrap_mean(xs, seed=6) != a


def test_ratio_win_tie_loss_and_edge_cases():
    base = [1, 1, 0, 1, 1, 0, 1, 1, 1, 1] * 5
    adapted = [1, 1, 0, 1, 0, 0, 1, 1, 1, 1] * 5
    ratio = stats.bootstrap_ratio(base, adapted)
    assert ratio.value == pytest.approx(7 / 8)
    assert ratio.low < ratio.value < ratio.high <= 1.0
    wtl = stats.bootstrap_win_tie_loss(["win"] * 30 + ["tie"] * 10 + ["loss"] * 10)
    assert (wtl.win.value, wtl.tie.value, wtl.loss.value) == pytest.approx((0.6, 0.2, 0.2))
    assert wtl.net.value == pytest.approx(0.4) and wtl.n == 50
    assert stats.bootstrap_proportion([True] * 12).degenerate
    with pytest.raises(ValueError):
        stats.bootstrap_mean([])
    with pytest.raises(ValueError):
        stats.bootstrap_ratio([0, 0, 0], [1, 1, 1])  # undefined on the data itself
    with pytest.raises(ValueError):
        stats.bootstrap_win_tie_loss(["win", "draw"])
