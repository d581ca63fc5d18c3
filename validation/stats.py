"""Bootstrap confidence intervals for the validation report.

Pure Python (no numpy): the control plane computes these and must install without the train
extra; the same seed gives the same interval on every machine.

Method: the percentile bootstrap. Resample the n observations with replacement `resamples` times,
compute the statistic on each resample and take the (1-c)/2 and (1+c)/2 quantiles. For paired data
(base and adapted scored on the same items) whole items are resampled, so the pairing is kept and
the interval of a difference reflects the per-item correlation.

Known limits, stated so nobody over-reads a figure:
- with n below about 20 the percentile interval is too narrow (it undercovers);
- when every observation is identical (a 0% or 100% accuracy), every resample is identical and the
  interval collapses to a point; that is not certainty, it is too little data to show spread.
  `Estimate.degenerate` flags it.
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_SEED = 0

OUTCOMES = ("win", "tie", "loss")


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap confidence interval and the sample size behind it."""

    value: float
    low: float
    high: float
    n: int
    confidence: float = DEFAULT_CONFIDENCE
    resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED
    method: str = "percentile bootstrap"
    clusters: int | None = None  # resampled units when they are conversations, not items

    @property
    def degenerate(self) -> bool:
        """True when the interval has no width (all observations alike, or n == 1)."""
        return self.low == self.high

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high

    def to_dict(self) -> dict:
        out = asdict(self)
        out["degenerate"] = self.degenerate
        return out


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of already sorted values (numpy's default method)."""
    if not sorted_values:
        raise ValueError("quantile of no values")
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if lo == hi:
        return float(sorted_values[lo])
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def bootstrap(
    columns: Sequence[Sequence[float]],
    statistic: Callable[..., float | None],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
    clusters: Sequence[object] | None = None,
) -> Estimate:
    """Paired bootstrap of `statistic(*columns)`.

    With `clusters` (one label per item, e.g. the conversation an item comes from) whole clusters
    are resampled: items of one conversation are correlated, and resampling them one by one makes
    the interval too narrow (simulated coverage of a nominal 95% item bootstrap: 80% at
    within-conversation correlation 0.4; tests/validation/test_validation_stats.py). `n` stays the
    number of items; `Estimate.clusters` says how many clusters there were.

    `columns` are equally long sequences describing the same n items (one column for a mean, two
    for base/adapted pairs). Each resample draws n item indices with replacement and passes the
    resampled columns to `statistic`. A statistic may return None where it is undefined on a
    resample (a ratio whose denominator came out 0); such resamples are dropped, and if more than
    1% are dropped the interval is refused because it would be biased.

    Raises ValueError when there is no data or the statistic is undefined on the data itself.
    """
    if not columns:
        raise ValueError("bootstrap needs at least one column")
    n = len(columns[0])
    if any(len(c) != n for c in columns):
        raise ValueError("paired columns must have the same length: " + ", ".join(str(len(c)) for c in columns))
    if n == 0:
        raise ValueError("no observations")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    cols = [list(map(float, c)) for c in columns]
    point = statistic(*cols)
    if point is None:
        raise ValueError("the statistic is undefined on the observed data")
    groups: list[list[int]] | None = None
    if clusters is not None:
        if len(clusters) != n:
            raise ValueError(f"clusters must label every item: {len(clusters)} labels for {n} items")
        by_label: dict[object, list[int]] = {}
        for i, label in enumerate(clusters):
            by_label.setdefault(label, []).append(i)
        groups = list(by_label.values())
    rng = random.Random(seed)
    stats: list[float] = []
    dropped = 0
    idx_range = range(n)
    for _ in range(resamples):
        if groups is None:
            idx = rng.choices(idx_range, k=n)
        else:
            idx = [i for g in rng.choices(groups, k=len(groups)) for i in g]
        value = statistic(*[[c[i] for i in idx] for c in cols])
        if value is None:
            dropped += 1
            continue
        stats.append(value)
    if not stats or dropped > 0.01 * resamples:
        raise ValueError(f"the statistic was undefined on {dropped} of {resamples} resamples; "
                         "the interval would be biased (too little data)")
    stats.sort()
    alpha = (1 - confidence) / 2
    if groups is None:
        return Estimate(value=float(point), low=quantile(stats, alpha), high=quantile(stats, 1 - alpha), n=n,
                        confidence=confidence, resamples=resamples, seed=seed)
    return Estimate(value=float(point), low=quantile(stats, alpha), high=quantile(stats, 1 - alpha), n=n,
                    confidence=confidence, resamples=resamples, seed=seed, method="cluster percentile bootstrap",
                    clusters=len(groups))


def _mean(xs: Sequence[float]) -> float:
    return math.fsum(xs) / len(xs)


def bootstrap_mean(values: Sequence[float], **kw) -> Estimate:
    """Mean of `values` with its bootstrap CI."""
    return bootstrap([values], _mean, **kw)


def bootstrap_proportion(flags: Sequence[bool], **kw) -> Estimate:
    """Share of True in `flags` (e.g. accuracy, on-voice rate) with its bootstrap CI."""
    return bootstrap([[1.0 if f else 0.0 for f in flags]], _mean, **kw)


def bootstrap_difference(base: Sequence[float], adapted: Sequence[float], *, paired: bool = True, **kw) -> Estimate:
    """mean(adapted) - mean(base). Paired (same items, resampled together) by default;
    unpaired resamples each group on its own (different item sets)."""
    if paired:
        return bootstrap([base, adapted], lambda b, a: _mean(a) - _mean(b), **kw)
    return _unpaired(base, adapted, lambda b, a: _mean(a) - _mean(b), **kw)


def _ratio(b: Sequence[float], a: Sequence[float]) -> float | None:
    denominator = _mean(b)
    return None if denominator == 0 else _mean(a) / denominator


def _relative(b: Sequence[float], a: Sequence[float]) -> float | None:
    denominator = _mean(b)
    return None if denominator == 0 else (_mean(a) - denominator) / abs(denominator)


def bootstrap_ratio(base: Sequence[float], adapted: Sequence[float], **kw) -> Estimate:
    """mean(adapted) / mean(base) on paired items (knowledge retention)."""
    return bootstrap([base, adapted], _ratio, **kw)


def bootstrap_relative_change(base: Sequence[float], adapted: Sequence[float], **kw) -> Estimate:
    """(mean(adapted) - mean(base)) / |mean(base)| on paired items (relative improvement)."""
    return bootstrap([base, adapted], _relative, **kw)


def _unpaired(base, adapted, statistic, *, resamples=DEFAULT_RESAMPLES, confidence=DEFAULT_CONFIDENCE,
              seed=DEFAULT_SEED) -> Estimate:
    if not base or not adapted:
        raise ValueError("no observations")
    b = list(map(float, base))
    a = list(map(float, adapted))
    rng = random.Random(seed)
    stats = sorted(statistic(rng.choices(b, k=len(b)), rng.choices(a, k=len(a))) for _ in range(resamples))
    alpha = (1 - confidence) / 2
    return Estimate(value=float(statistic(b, a)), low=quantile(stats, alpha), high=quantile(stats, 1 - alpha),
                    n=min(len(b), len(a)), confidence=confidence, resamples=resamples, seed=seed,
                    method="percentile bootstrap (unpaired)")


@dataclass(frozen=True)
class WinTieLoss:
    """Rates of adapted-vs-base outcomes, each with its CI, from one joint bootstrap."""

    win: Estimate
    tie: Estimate
    loss: Estimate
    net: Estimate  # win rate - loss rate, in [-1, 1]

    @property
    def n(self) -> int:
        return self.win.n

    def to_dict(self) -> dict:
        return {k: getattr(self, k).to_dict() for k in ("win", "tie", "loss", "net")} | {"n": self.n}


def bootstrap_win_tie_loss(outcomes: Sequence[str], **kw) -> WinTieLoss:
    """Win/tie/loss rates of the adapted model against the base (`outcomes` holds "win", "tie" or
    "loss" per item, from the adapted model's side). The three rates share the resamples."""
    bad = sorted({o for o in outcomes} - set(OUTCOMES))
    if bad:
        raise ValueError(f"unknown outcomes {bad}; expected one of {OUTCOMES}")
    cols = {o: [1.0 if x == o else 0.0 for x in outcomes] for o in OUTCOMES}
    win = bootstrap([cols["win"]], _mean, **kw)
    tie = bootstrap([cols["tie"]], _mean, **kw)
    loss = bootstrap([cols["loss"]], _mean, **kw)
    # Same seed, same n: the index draws match, so these are the same resamples as above.
    net = bootstrap([cols["win"], cols["loss"]], lambda w, l: _mean(w) - _mean(l), **kw)
    return WinTieLoss(win=win, tie=tie, loss=loss, net=net)
