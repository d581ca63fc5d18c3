"""Metric assembly: per-item base/adapted results in, report metrics out.

Every metric is a `Metric` (point estimate, bootstrap 95% CI, n, relative improvement, pass/fail
where it has a threshold) or a `NotComputed(reason)`. A metric that could not be computed is never
shown as zero and never passes; the summary verdict is "incomplete" when a gated metric is missing.

Pass rule: a gated metric passes when its point estimate reaches the threshold. `conclusive` says
whether the whole CI lies on one side of the threshold, so the report can say "passes, but the
interval reaches below the bar" instead of rounding a borderline result up into a claim.

Pure Python (validation.stats); no Django, no torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from validation import stats
from validation.judges.base import ADAPTED, BASE, JudgeResult
from validation.stats import Estimate

RETENTION = "knowledge_retention"
BRAND_VOICE = "brand_voice"
EMOTION = "emotion_recognition"
PERPLEXITY = "perplexity"
WIN_RATE = "pairwise_win_rate"
GATED = (RETENTION, BRAND_VOICE)


@dataclass(frozen=True)
class Thresholds:
    retention_min: float = 0.95  # adapted accuracy / base accuracy
    brand_voice_min: float = 0.85  # share of adapted replies rated on-voice


@dataclass(frozen=True)
class NotComputed:
    key: str
    title: str
    reason: str
    computed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "computed": False, "reason": self.reason}


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    value: Estimate  # the headline figure
    base: Estimate | None = None
    adapted: Estimate | None = None
    difference: Estimate | None = None  # adapted - base, paired
    relative_improvement: Estimate | NotComputed | None = None  # (adapted - base) / |base|
    threshold: float | None = None
    higher_is_better: bool = True
    notes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    computed: bool = True

    @property
    def n(self) -> int:
        return self.value.n

    @property
    def passed(self) -> bool | None:
        if self.threshold is None:
            return None
        return self.value.value >= self.threshold if self.higher_is_better else self.value.value <= self.threshold

    @property
    def conclusive(self) -> bool | None:
        """True when the whole CI is on the same side of the threshold as the point estimate."""
        if self.threshold is None:
            return None
        above = self.value.low >= self.threshold
        below = self.value.high < self.threshold
        return above or below

    def to_dict(self) -> dict[str, Any]:
        def d(x):
            return x.to_dict() if x is not None else None
        return {"key": self.key, "title": self.title, "computed": True, "value": d(self.value), "n": self.n,
                "base": d(self.base), "adapted": d(self.adapted), "difference": d(self.difference),
                "relative_improvement": d(self.relative_improvement), "threshold": self.threshold,
                "passed": self.passed, "conclusive": self.conclusive, "higher_is_better": self.higher_is_better,
                "notes": list(self.notes), "extra": self.extra}


MetricResult = Metric | NotComputed


def _relative(base: Sequence[float], adapted: Sequence[float], key: str, title: str, **kw) -> Estimate | NotComputed:
    try:
        return stats.bootstrap_relative_change(base, adapted, **kw)
    except ValueError as exc:
        return NotComputed(key, title + " (relative improvement)", f"undefined: {exc} (base value is 0)")


def _paired_flags(base: Sequence[bool | None] | None, adapted: Sequence[bool | None] | None):
    """Keep items both models have a result for; None marks an item that was not computed."""
    if base is None or adapted is None:
        return None
    if len(base) != len(adapted):
        raise ValueError(f"base and adapted results differ in length ({len(base)} vs {len(adapted)}); "
                         "they must be the same items in the same order")
    pairs = [(b, a) for b, a in zip(base, adapted) if b is not None and a is not None]
    return [float(b) for b, _ in pairs], [float(a) for _, a in pairs]


def accuracy_metric(key: str, title: str, base_correct: Sequence[bool | None] | None,
                    adapted_correct: Sequence[bool | None] | None, *, missing_reason: str = "", **kw) -> MetricResult:
    """Base and adapted accuracy on the same multiple-choice items; headline = adapted accuracy."""
    paired = _paired_flags(base_correct, adapted_correct)
    if paired is None:
        return NotComputed(key, title, missing_reason or "no multiple-choice results were reported")
    base, adapted = paired
    if not base:
        return NotComputed(key, title, missing_reason or "no item was scored for both models")
    return Metric(key=key, title=title, value=stats.bootstrap_mean(adapted, **kw),
                  base=stats.bootstrap_mean(base, **kw), adapted=stats.bootstrap_mean(adapted, **kw),
                  difference=stats.bootstrap_difference(base, adapted, **kw),
                  relative_improvement=_relative(base, adapted, key, title, **kw))


def retention_metric(base_correct: Sequence[bool | None] | None, adapted_correct: Sequence[bool | None] | None, *,
                     thresholds: Thresholds = Thresholds(), missing_reason: str = "", **kw) -> MetricResult:
    """Knowledge retention = adapted accuracy / base accuracy on the shipped question set."""
    title = "Knowledge retention (adapted accuracy ÷ base accuracy)"
    paired = _paired_flags(base_correct, adapted_correct)
    if paired is None or not paired[0]:
        return NotComputed(RETENTION, title, missing_reason or "no knowledge-set results were reported")
    base, adapted = paired
    if sum(base) == 0:
        return NotComputed(RETENTION, title, "the base model answered no knowledge question correctly, so the "
                                             "ratio is undefined")
    try:
        ratio = stats.bootstrap_ratio(base, adapted, **kw)
    except ValueError as exc:
        return NotComputed(RETENTION, title, f"no reliable interval: {exc}")
    return Metric(key=RETENTION, title=title, value=ratio, base=stats.bootstrap_mean(base, **kw),
                  adapted=stats.bootstrap_mean(adapted, **kw), difference=stats.bootstrap_difference(base, adapted, **kw),
                  relative_improvement=_relative(base, adapted, RETENTION, title, **kw),
                  threshold=thresholds.retention_min)


def brand_voice_metric(judge_result: JudgeResult | None, *, thresholds: Thresholds = Thresholds(),
                       missing_reason: str = "", **kw) -> MetricResult:
    """Share of adapted replies the judge rates on-voice (replies it could not rate are left out and
    counted in `extra`)."""
    title = "Brand-voice alignment (share of adapted replies on-voice)"
    if judge_result is None:
        return NotComputed(BRAND_VOICE, title, missing_reason or "no judge ran")
    adapted = [r for r in judge_result.replies if r.model == ADAPTED]
    rated = [r.on_voice for r in adapted if r.computed and r.on_voice is not None]
    skipped = [r.not_computed for r in adapted if not r.computed]
    if not rated:
        reason = skipped[0] if skipped else "the judge rated no adapted reply"
        return NotComputed(BRAND_VOICE, title, f"no adapted reply was rated: {reason}")
    base_flags = [r.on_voice for r in judge_result.replies if r.model == BASE and r.computed and r.on_voice is not None]
    notes = [f"judge: {judge_result.label}"]
    if skipped:
        notes.append(f"{len(skipped)} adapted replies could not be rated and are left out")
    ref_rate = judge_result.settings.get("reference_on_voice_rate")
    if ref_rate is not None:
        notes.append(f"the dataset's own reference replies rate on-voice {ref_rate:.0%} of the time with this judge")
    return Metric(key=BRAND_VOICE, title=title, value=stats.bootstrap_proportion(rated, **kw),
                  base=stats.bootstrap_proportion(base_flags, **kw) if base_flags else None,
                  adapted=stats.bootstrap_proportion(rated, **kw), threshold=thresholds.brand_voice_min,
                  notes=tuple(notes), extra={"not_rated": len(skipped), "judge": judge_result.judge})


def criterion_metrics(judge_result: JudgeResult | None, *, missing_reason: str = "", **kw) -> dict[str, MetricResult]:
    """Per rubric criterion: base and adapted mean score in [0, 1] on the items both were scored on,
    paired difference and relative improvement."""
    if judge_result is None:
        return {"criteria": NotComputed("criteria", "Response-quality criteria", missing_reason or "no judge ran")}
    base = judge_result.scores_for(BASE)
    adapted = judge_result.scores_for(ADAPTED)
    out: dict[str, MetricResult] = {}
    for criterion in judge_result.criteria:
        key = f"criterion:{criterion}"
        title = f"{criterion} ({judge_result.judge} judge)"
        pairs = [(base[i].criteria[criterion], adapted[i].criteria[criterion]) for i in base
                 if i in adapted and criterion in base[i].criteria and criterion in adapted[i].criteria]
        if not pairs:
            reasons = {r.not_computed for r in judge_result.replies if r.not_computed}
            out[key] = NotComputed(key, title, "no item was scored for both models"
                                   + (f": {sorted(reasons)[0]}" if reasons else ""))
            continue
        b = [p[0] for p in pairs]
        a = [p[1] for p in pairs]
        out[key] = Metric(key=key, title=title, value=stats.bootstrap_mean(a, **kw), base=stats.bootstrap_mean(b, **kw),
                          adapted=stats.bootstrap_mean(a, **kw), difference=stats.bootstrap_difference(b, a, **kw),
                          relative_improvement=_relative(b, a, key, title, **kw))
    return out


Z_ALPHA = 1.959964  # two-sided 5%
Z_POWER = 0.841621  # 80% power


def minimal_detectable_effect(net: stats.Estimate, confidence: float = 0.95) -> float | None:
    """Smallest true net difference (win rate - loss rate) this n detects with 80% power at the
    two-sided 5% level: (z_0.975 + z_0.80) x SE, the SE read off the cluster-bootstrap interval
    (width / (2 x 1.96)). None when the interval is degenerate (no spread to read)."""
    if net.high <= net.low:
        return None
    se = (net.high - net.low) / (2 * Z_ALPHA)
    return (Z_ALPHA + Z_POWER) * se


def win_rate_metric(judge_result: JudgeResult | None, *, missing_reason: str = "", **kw) -> MetricResult:
    """The primary endpoint: adapted vs base replies compared pairwise on empathy by the judge, in
    both orders (an order-dependent verdict counts as a tie). Headline = win rate; the absolute
    difference is win rate - loss rate; both with a conversation-level (cluster) bootstrap
    interval; `extra` holds win/tie/loss, the minimal detectable effect at this n, and, when the
    judge compared them, the dataset's own replies against the base (the ceiling)."""
    from validation.gates import conversation_of

    title = "Primary endpoint: adapted reply preferred over base on empathy (pairwise, order-swapped)"
    if judge_result is None:
        return NotComputed(WIN_RATE, title, missing_reason or "no judge ran")
    done = [p for p in judge_result.pairwise if p.outcome]
    failed = [p.not_computed for p in judge_result.pairwise if not p.outcome]
    if not done:
        return NotComputed(WIN_RATE, title, "no comparison succeeded" + (f": {failed[0]}" if failed else ""))
    clusters = [conversation_of(p.item_id) for p in done]
    wtl = stats.bootstrap_win_tie_loss([p.outcome for p in done], clusters=clusters, **kw)
    mde = minimal_detectable_effect(wtl.net)
    inconsistent = sum(1 for p in done if p.details.get("consistent") is False)
    notes = [f"judge: {judge_result.label}",
             "each pair is judged twice with the order swapped; a verdict that changes with the order is a tie",
             f"{len(set(clusters))} conversations resampled as units (cluster bootstrap)"]
    if inconsistent:
        notes.append(f"{inconsistent} of {len(done)} verdicts changed with the order (counted as ties)")
    if failed:
        notes.append(f"{len(failed)} comparisons could not be made and are left out")
    extra: dict[str, Any] = {"win_tie_loss": wtl.to_dict(), "not_compared": len(failed),
                             "conversations": len(set(clusters)), "order_inconsistent": inconsistent,
                             "minimal_detectable_effect": mde, "criterion": "empathy"}
    ref = [o for o in (judge_result.settings.get("reference_pairwise") or []) if o.get("outcome")]
    if ref:
        ref_wtl = stats.bootstrap_win_tie_loss([o["outcome"] for o in ref],
                                               clusters=[conversation_of(o["item_id"]) for o in ref], **kw)
        extra["reference_win_tie_loss"] = ref_wtl.to_dict()
    return Metric(key=WIN_RATE, title=title, value=wtl.win, difference=wtl.net, notes=tuple(notes), extra=extra)


def perplexity_metric(base: Sequence[tuple[float, int]] | None, adapted: Sequence[tuple[float, int]] | None, *,
                      missing_reason: str = "", **kw) -> MetricResult:
    """Token-weighted perplexity on held-out assistant turns. `base`/`adapted` hold, per held-out
    conversation, (sum of token negative log-likelihoods, number of tokens); the CI resamples
    conversations. Lower is better; the headline is the adapted perplexity."""
    title = "Perplexity on held-out assistant turns"
    if not base or not adapted:
        return NotComputed(PERPLEXITY, title, missing_reason or "the worker reported no per-conversation losses")
    if len(base) != len(adapted):
        return NotComputed(PERPLEXITY, title, "base and adapted losses cover different conversations")
    if any(n <= 0 for _, n in list(base) + list(adapted)):
        return NotComputed(PERPLEXITY, title, "a conversation has no scored tokens")
    cols = [[x[0] for x in base], [x[1] for x in base], [x[0] for x in adapted], [x[1] for x in adapted]]

    def ppl(nll, tok):
        return math.exp(math.fsum(nll) / math.fsum(tok))

    b = stats.bootstrap(cols[:2], ppl, **kw)
    a = stats.bootstrap(cols[2:], ppl, **kw)
    rel = stats.bootstrap(cols, lambda bn, bt, an, at: ppl(an, at) / ppl(bn, bt) - 1, **kw)
    return Metric(key=PERPLEXITY, title=title, value=a, base=b, adapted=a, relative_improvement=rel,
                  higher_is_better=False, notes=("relative_improvement is the relative change in perplexity; "
                                                 "negative is better",))


def _most_common(labels: Sequence[str]) -> str | None:
    if not labels:
        return None
    counts: dict[str, int] = {}
    for x in labels:
        counts[x] = counts.get(x, 0) + 1
    return min(counts, key=lambda k: (-counts[k], k))  # ties: alphabetical, so deterministic


def emotion_baselines(labels: Sequence[str], positions: Sequence[int], conversations: Sequence[str],
                      **kw) -> dict[str, Any]:
    """Accuracy of two guessers that never read the conversation, beside which the models'
    emotion accuracy must be read:
    - majority: always the most common label of these items (in-sample, so a generous baseline);
    - position: for each item, the most common label at the same client-turn position in the
      *other* conversations (leave one conversation out; the dataset's arcs are scripted, so the
      position alone can predict much); the overall majority of the others when that position is
      absent elsewhere.
    Both with a conversation-level bootstrap interval."""
    n = len(labels)
    majority = _most_common(labels)
    maj_flags = [lab == majority for lab in labels]
    pos_flags = []
    for i in range(n):
        others = [j for j in range(n) if conversations[j] != conversations[i]]
        same = [labels[j] for j in others if positions[j] == positions[i]]
        guess = _most_common(same) or _most_common([labels[j] for j in others])
        pos_flags.append(guess == labels[i])
    out = {"majority_label": majority,
           "majority": stats.bootstrap_proportion(maj_flags, clusters=list(conversations), **kw).to_dict()}
    out["position"] = stats.bootstrap_proportion(pos_flags, clusters=list(conversations), **kw).to_dict()
    return out


def emotion_extras(ctx: dict[str, Any], **kw) -> tuple[dict[str, Any], list[str]]:
    """Baselines, acc and acc_norm, and the dropped labels for the emotion metric: (extra, notes)."""
    extra: dict[str, Any] = {}
    notes: list[str] = []
    labels, positions, convs = ctx.get("labels"), ctx.get("positions"), ctx.get("conversations")
    if labels and positions and convs and len(labels) == len(positions) == len(convs):
        b = emotion_baselines(labels, positions, convs, **kw)
        extra["baselines"] = b
        notes.append(f"baselines that never read the conversation: always '{b['majority_label']}' "
                     f"{b['majority']['value']:.0%} [{b['majority']['low']:.0%}, {b['majority']['high']:.0%}]; "
                     f"client-turn position alone {b['position']['value']:.0%} "
                     f"[{b['position']['low']:.0%}, {b['position']['high']:.0%}]; a model is only reading "
                     "emotions if it beats both")
    if ctx.get("acc") and ctx.get("acc_norm"):
        extra["acc"], extra["acc_norm"] = ctx["acc"], ctx["acc_norm"]
        notes.append("acc (summed log-likelihood): base {:.0%}, adapted {:.0%}; acc_norm (per token): base {:.0%}, "
                     "adapted {:.0%}".format(ctx["acc"]["base"], ctx["acc"]["adapted"], ctx["acc_norm"]["base"],
                                             ctx["acc_norm"]["adapted"]))
    if ctx.get("option_seed") is not None:
        notes.append(f"options shuffled per item with seed {ctx['option_seed']}")
    dropped = ctx.get("unmapped_labels")
    if dropped is not None:
        extra["unmapped_labels"] = dict(dropped)
        total = sum(dropped.values())
        notes.append("labels dropped (they map to no option): "
                     + (", ".join(f"'{k}' x{v}" for k, v in sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0])))
                        + f" ({total} turns)" if dropped else "none"))
    return extra, notes


@dataclass
class EvaluationInputs:
    """Everything the report's metrics are computed from. None means "not available"; say why in
    `missing` (metric key -> reason) so the report can show it."""

    knowledge_base: Sequence[bool | None] | None = None
    knowledge_adapted: Sequence[bool | None] | None = None
    emotion_base: Sequence[bool | None] | None = None
    emotion_adapted: Sequence[bool | None] | None = None
    judge_result: JudgeResult | None = None
    perplexity_base: Sequence[tuple[float, int]] | None = None
    perplexity_adapted: Sequence[tuple[float, int]] | None = None
    # Emotion items' context for the report: canonical labels, client-turn positions, conversations,
    # the other scoring's flags (acc_norm when acc decided), and the labels dropped as unmapped.
    emotion_context: dict[str, Any] | None = None
    missing: dict[str, str] = field(default_factory=dict)


def build_metrics(inputs: EvaluationInputs, *, thresholds: Thresholds = Thresholds(), resamples: int = 2000,
                  seed: int = 0) -> dict[str, MetricResult]:
    """All report metrics, keyed by metric key, in report order."""
    kw = {"resamples": resamples, "seed": seed}
    why = inputs.missing.get
    out: dict[str, MetricResult] = {
        PERPLEXITY: perplexity_metric(inputs.perplexity_base, inputs.perplexity_adapted,
                                      missing_reason=why(PERPLEXITY, ""), **kw),
        EMOTION: accuracy_metric(EMOTION, "Emotion recognition accuracy (multiple choice, log-likelihood)",
                                 inputs.emotion_base, inputs.emotion_adapted, missing_reason=why(EMOTION, ""), **kw),
        RETENTION: retention_metric(inputs.knowledge_base, inputs.knowledge_adapted, thresholds=thresholds,
                                    missing_reason=why(RETENTION, ""), **kw),
        BRAND_VOICE: brand_voice_metric(inputs.judge_result, thresholds=thresholds,
                                        missing_reason=why(BRAND_VOICE, "") or why("judge", ""), **kw),
        WIN_RATE: win_rate_metric(inputs.judge_result, missing_reason=why("judge", ""), **kw),
    }
    if isinstance(out[EMOTION], Metric) and inputs.emotion_context:
        extra, notes = emotion_extras(inputs.emotion_context, **kw)
        out[EMOTION] = replace(out[EMOTION], extra={**out[EMOTION].extra, **extra},
                               notes=out[EMOTION].notes + tuple(notes))
    out.update(criterion_metrics(inputs.judge_result, missing_reason=why("judge", ""), **kw))
    return out


def summary_verdict(metrics: dict[str, MetricResult]) -> dict[str, Any]:
    """"pass" only when every gated metric was computed and passed; "fail" when any computed gated
    metric failed; otherwise "incomplete" (a gated metric could not be computed)."""
    failed = [k for k in GATED if isinstance(metrics.get(k), Metric) and metrics[k].passed is False]
    missing = [k for k in GATED if not isinstance(metrics.get(k), Metric)]
    verdict = "fail" if failed else ("incomplete" if missing else "pass")
    return {"verdict": verdict, "failed": failed, "not_computed": missing,
            "inconclusive": [k for k in GATED if isinstance(metrics.get(k), Metric) and not metrics[k].conclusive]}
