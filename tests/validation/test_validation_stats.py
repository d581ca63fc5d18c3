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


@pytest.mark.slow
def test_proportion_interval_covers_the_true_rate():
    coverage = _coverage(lambda rng: ([rng.random() < 0.7 for _ in range(80)],), stats.bootstrap_proportion, 0.7)
    assert 0.90 <= coverage <= 0.99, coverage


@pytest.mark.slow
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


def _clustered_sample(rng, *, clusters: int, per_cluster: int, icc: float):
    """Normal items with within-cluster correlation `icc` (true mean 0)."""
    values, labels = [], []
    for c in range(clusters):
        shared = rng.gauss(0, icc ** 0.5)
        for _ in range(per_cluster):
            values.append(shared + rng.gauss(0, (1 - icc) ** 0.5))
            labels.append(c)
    return values, labels


@pytest.mark.slow
def test_cluster_bootstrap_covers_at_within_conversation_correlation_0_4():
    import random

    from validation import stats

    rng = random.Random(20261203)
    reps, covered_cluster, covered_item = 300, 0, 0
    for rep in range(reps):
        values, labels = _clustered_sample(rng, clusters=40, per_cluster=4, icc=0.4)
        cluster = stats.bootstrap_mean(values, clusters=labels, resamples=400, seed=rep)
        item = stats.bootstrap_mean(values, resamples=400, seed=rep)
        covered_cluster += cluster.contains(0.0)
        covered_item += item.contains(0.0)
        assert cluster.clusters == 40 and cluster.n == 160
    # The item bootstrap ignores the correlation and undercovers; the cluster bootstrap does not.
    assert covered_cluster / reps >= 0.93, covered_cluster / reps
    assert covered_item / reps < 0.88, covered_item / reps


def test_cluster_bootstrap_keeps_pairs_and_refuses_bad_labels():
    from validation import stats

    base = [0, 1, 0, 1, 1, 0]
    adapted = [1, 1, 1, 1, 0, 1]
    est = stats.bootstrap_difference(base, adapted, clusters=["a", "a", "b", "b", "c", "c"], resamples=200)
    assert est.method == "cluster percentile bootstrap" and est.clusters == 3
    assert est.value == pytest.approx(5 / 6 - 3 / 6)
    with pytest.raises(ValueError, match="clusters must label every item"):
        stats.bootstrap_mean([1, 2, 3], clusters=["a"])
