"""Gates a report can be trusted on: decided by interval bounds, with minimum evidence, and checked
against controls.

A gate's verdict is one of
- "pass": the 95% interval clears the bar (lower bound above it, or upper bound below it for a
  lower-is-better figure) and there is enough evidence;
- "fail": the whole interval is on the wrong side of the bar, with enough evidence;
- "inconclusive": the interval straddles the bar, or the evidence is below the minimum (too few
  items, conversations, or rated items). A zero-width interval from too few items is never
  conclusive;
- "not_valid": the gate cannot tell a good model from a useless one on this dataset: the
  dataset's own reference replies do not pass it, or a control (a constant canned reply, replies
  shuffled across items) does. The adapted model's verdict is then not shown as pass/fail.

Controls are scored exactly like the adapted model: the judge sees the reference, canned or
shuffled reply in the "adapted" slot of the same items.

Pure Python (validation.stats); no Django, no torch.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from validation import stats
from validation.stats import Estimate

PASS, FAIL, INCONCLUSIVE, NOT_VALID = "pass", "fail", "inconclusive", "not_valid"
VERDICTS = (PASS, FAIL, INCONCLUSIVE, NOT_VALID)

ADAPTED = "adapted"
REFERENCE, CANNED, SHUFFLED, WORD_SALAD = "reference", "canned", "shuffled", "word_salad"
CONTROLS = (REFERENCE, CANNED, SHUFFLED, WORD_SALAD)

BRAND_VOICE = "brand_voice"
FORGETTING = "forgetting"

# The gaming case of the issue: one constant reply that ticks every detector.
CANNED_REPLY = ("I hear you, and that sounds really stressful. You're not alone: this is very common and "
                "completely fixable. Would it help if we picked one small step for this week, like setting "
                "aside $50 into savings?")


@dataclass(frozen=True)
class Evidence:
    """The least evidence a gate needs before it may say pass or fail."""

    min_items: int = 20
    min_conversations: int = 5
    min_rated_share: float = 0.8

    def shortfalls(self, *, items: int, rated: int, conversations: int | None) -> list[str]:
        out = []
        if rated < self.min_items:
            out.append(f"{rated} rated items, fewer than the minimum {self.min_items}")
        if conversations is not None and conversations < self.min_conversations:
            out.append(f"{conversations} conversations, fewer than the minimum {self.min_conversations}")
        if items and rated / items < self.min_rated_share:
            out.append(f"only {rated} of {items} items were rated ({rated / items:.0%}; the minimum is "
                       f"{self.min_rated_share:.0%})")
        return out


@dataclass(frozen=True)
class BrandVoicePolicyValues:
    """Brand-voice thresholds (per organization or client: validation.models.BrandVoicePolicy)."""

    on_voice_floor: float = 0.5  # the on-voice rate's lower bound must reach this
    margin: float = 0.10  # non-inferiority: at most this far below the reference's own rate
    relevance_min: float = 0.5  # share of replies that answer this client's message
    diversity_min: float = 0.8  # share of replies that are not near-duplicates of another reply
    near_duplicate: float = 0.9  # cosine similarity at which two replies count as the same reply


@dataclass
class GateResult:
    gate: str
    candidate: str  # "adapted" or a control
    verdict: str
    value: Estimate | None
    n: int
    checks: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "control": None if self.candidate == ADAPTED else self.candidate,
                "candidate": self.candidate, "verdict": self.verdict,
                "value": None if self.value is None else self.value.value,
                "ci": None if self.value is None else [self.value.low, self.value.high], "n": self.n,
                "checks": self.checks, "reasons": self.reasons, "extra": self.extra}


def bound_verdict(estimate: Estimate, threshold: float, *, higher_is_better: bool = True) -> str:
    """pass when the interval clears the threshold, fail when it is wholly on the wrong side."""
    if higher_is_better:
        return PASS if estimate.low >= threshold else (FAIL if estimate.high < threshold else INCONCLUSIVE)
    return PASS if estimate.high <= threshold else (FAIL if estimate.low > threshold else INCONCLUSIVE)


def combine(verdicts: Sequence[str]) -> str:
    """All checks must pass; any clear failure fails; otherwise inconclusive."""
    if any(v == FAIL for v in verdicts):
        return FAIL
    if verdicts and all(v == PASS for v in verdicts):
        return PASS
    return INCONCLUSIVE


def conversation_of(item_id: str) -> str:
    """Reply and emotion item ids are "<conversation id>#<message index>"."""
    return str(item_id).rsplit("#", 1)[0]


# --------------------------------------------------------------------------- controls


def control_replies(item_ids: Sequence[str], references: Sequence[str | None]) -> dict[str, list[str | None]]:
    """The four controls' replies for the same items, in item order:
    reference (the dataset's own reply), canned (one constant reply), shuffled (the reference
    reply of an item from another conversation: fluent, on-voice, but not an answer to this
    message) and word_salad (the reference's own words in a random fixed order). The shuffle is a fixed rotation by the largest conversation's size, so every item
    gets a reply from a different conversation whenever there are at least two."""
    n = len(item_ids)
    sizes: dict[str, int] = {}
    for i in item_ids:
        sizes[conversation_of(i)] = sizes.get(conversation_of(i), 0) + 1
    order = sorted(range(n), key=lambda j: (conversation_of(item_ids[j]), j))
    shift = max(sizes.values(), default=0)
    shuffled: list[str | None] = [None] * n
    for pos, j in enumerate(order):
        shuffled[j] = references[order[(pos + shift) % n]] if n else None
    return {REFERENCE: list(references), CANNED: [CANNED_REPLY] * n, SHUFFLED: shuffled,
            WORD_SALAD: [word_salad(r, item_id) for r, item_id in zip(references, item_ids)]}


def word_salad(text: str | None, item_id: str) -> str | None:
    """The reference reply's words in an order fixed by the item id: the right vocabulary, no
    sentence. A judge that calls this on-voice is not reading the replies."""
    if text is None:
        return None
    import random

    words = text.split()
    random.Random(f"word-salad:{item_id}").shuffle(words)
    return " ".join(words)


# --------------------------------------------------------------------------- relevance and diversity

Embedder = Callable[[list[str]], list[list[float]]]


def _dot(a, b) -> float:
    return math.fsum(x * y for x, y in zip(a, b))


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def relevance_flags(embedder: Embedder, replies: Sequence[str | None], client_messages: Sequence[str],
                    item_ids: Sequence[str]) -> list[bool | None]:
    """Does each reply answer its own client message? A reply is relevant when it is closer (cosine
    of sentence embeddings) to its own client message than to at least 75% of the client messages
    of the other conversations in the set: a reply written for another client's message, or a
    reply that fits every message alike, is not. None where there is no reply."""
    n = len(replies)
    present = [i for i in range(n) if replies[i]]
    if not present:
        return [None] * n
    vectors = embedder([replies[i] for i in present] + list(client_messages))
    reply_vec: list = [None] * n
    for i, v in zip(present, vectors[:len(present)]):
        reply_vec[i] = v
    return relevance_from_vectors(reply_vec, vectors[len(present):], item_ids)


def relevance_from_vectors(reply_vec: Sequence, msg_vec: Sequence, item_ids: Sequence[str]) -> list[bool | None]:
    """relevance_flags' rule on embeddings already computed (None in `reply_vec`: no reply); the
    offline judge uses it to read coherence without embedding the replies twice."""
    n = len(item_ids)
    present = [i for i in range(n) if reply_vec[i] is not None]
    out: list[bool | None] = [None] * n
    for i in present:
        own = _dot(reply_vec[i], msg_vec[i])
        conv = conversation_of(item_ids[i])
        others = [_dot(reply_vec[i], msg_vec[j]) for j in range(n) if conversation_of(item_ids[j]) != conv]
        if not others:
            out[i] = None
            continue
        out[i] = sum(1 for o in others if own > o) / len(others) >= 0.75
    return out


def diversity_share(embedder: Embedder, replies: Sequence[str | None], *, near_duplicate: float = 0.9) -> float | None:
    """Share of replies that are not a near-duplicate (same text, or cosine >= `near_duplicate`) of
    another reply in the set. A model that gives every client the same reply scores 0."""
    texts = [r for r in replies if r]
    if len(texts) < 2:
        return None
    vectors = embedder(texts)
    normed = [_norm(t) for t in texts]
    unique = 0
    for i in range(len(texts)):
        dup = any(j != i and (normed[j] == normed[i] or _dot(vectors[i], vectors[j]) >= near_duplicate)
                  for j in range(len(texts)))
        unique += not dup
    return unique / len(texts)


# --------------------------------------------------------------------------- brand voice


def brand_voice_gate(candidate: str, *, item_ids: Sequence[str], on_voice: Sequence[bool | None],
                     relevant: Sequence[bool | None] | None, reference_on_voice: Sequence[bool | None],
                     diversity: float | None, policy: BrandVoicePolicyValues = BrandVoicePolicyValues(),
                     evidence: Evidence = Evidence(), **kw) -> GateResult:
    """Brand voice of one candidate's replies on the same items as the reference:
    1. on-voice floor: lower bound of the on-voice rate >= policy.on_voice_floor;
    2. non-inferiority: lower bound of (candidate - reference) on-voice rate >= -policy.margin,
       paired by item (the reference's own rate is the ceiling this dataset allows);
    3. relevance: lower bound of the share of replies answering their own message >= relevance_min;
    4. diversity: share of replies that are not near-duplicates >= diversity_min.
    Every interval is a cluster (conversation) bootstrap."""
    keep = [i for i in range(len(item_ids)) if on_voice[i] is not None and reference_on_voice[i] is not None]
    rated = len(keep)
    conversations = len({conversation_of(item_ids[i]) for i in keep})
    checks: list[dict[str, Any]] = []
    if not keep:
        return GateResult(BRAND_VOICE, candidate, INCONCLUSIVE, None, 0,
                          reasons=["the judge rated none of these replies"])
    clusters = [conversation_of(item_ids[i]) for i in keep]
    cand = [1.0 if on_voice[i] else 0.0 for i in keep]
    ref = [1.0 if reference_on_voice[i] else 0.0 for i in keep]
    rate = stats.bootstrap_mean(cand, clusters=clusters, **kw)
    checks.append({"check": "on_voice_floor", "value": rate.value, "ci": [rate.low, rate.high],
                   "threshold": policy.on_voice_floor, "verdict": bound_verdict(rate, policy.on_voice_floor)})
    diff = stats.bootstrap_difference(ref, cand, clusters=clusters, **kw)
    checks.append({"check": "non_inferior_to_reference", "value": diff.value, "ci": [diff.low, diff.high],
                   "threshold": -policy.margin, "reference_rate": math.fsum(ref) / len(ref),
                   "verdict": bound_verdict(diff, -policy.margin)})
    rel_keep = [i for i in keep if relevant is not None and relevant[i] is not None]
    if rel_keep:
        rel = stats.bootstrap_mean([1.0 if relevant[i] else 0.0 for i in rel_keep],
                                   clusters=[conversation_of(item_ids[i]) for i in rel_keep], **kw)
        checks.append({"check": "relevance", "value": rel.value, "ci": [rel.low, rel.high], "n": len(rel_keep),
                       "threshold": policy.relevance_min, "verdict": bound_verdict(rel, policy.relevance_min)})
    else:
        checks.append({"check": "relevance", "value": None, "ci": None, "threshold": policy.relevance_min,
                       "verdict": INCONCLUSIVE, "reason": "relevance could not be measured"})
    if diversity is None:
        checks.append({"check": "diversity", "value": None, "threshold": policy.diversity_min,
                       "verdict": INCONCLUSIVE, "reason": "diversity needs at least two replies"})
    else:
        checks.append({"check": "diversity", "value": diversity, "threshold": policy.diversity_min,
                       "verdict": PASS if diversity >= policy.diversity_min else FAIL})
    verdict = combine([c["verdict"] for c in checks])
    reasons = evidence.shortfalls(items=len(item_ids), rated=rated, conversations=conversations)
    if reasons and verdict in (PASS, FAIL):
        verdict = INCONCLUSIVE
    return GateResult(BRAND_VOICE, candidate, verdict, rate, rated, checks, reasons,
                      extra={"conversations": conversations, "items": len(item_ids)})


# --------------------------------------------------------------------------- forgetting


def mcnemar_exact(lost: int, gained: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs (base right/adapted wrong = lost,
    base wrong/adapted right = gained)."""
    n = lost + gained
    if n == 0:
        return 1.0
    k = min(lost, gained)
    tail = math.fsum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def forgetting_gate(base_correct: Sequence[bool], adapted_correct: Sequence[bool], *, options: int,
                    max_forgetting: float = 0.10, evidence: Evidence = Evidence(), **kw) -> GateResult:
    """Forgetting = the share of the questions the base model answers correctly that the adapted
    model gets wrong (questions gained elsewhere do not offset questions lost), with the exact
    McNemar test on the discordant pairs. Not computed ("inconclusive" with the reason) unless the
    base accuracy's lower bound is above chance (1/options): a model guessing has nothing to
    forget. Pass when the upper bound is at most `max_forgetting`, fail when the lower bound is
    above it. Questions are independent, so items are resampled one by one."""
    n = len(base_correct)
    if n == 0 or len(adapted_correct) != n:
        return GateResult(FORGETTING, ADAPTED, INCONCLUSIVE, None, n,
                          reasons=["no paired knowledge results were reported"])
    b = [1.0 if x else 0.0 for x in base_correct]
    a = [1.0 if x else 0.0 for x in adapted_correct]
    chance = 1 / options
    base_acc = stats.bootstrap_mean(b, **kw)
    lost = sum(1 for x, y in zip(b, a) if x and not y)
    gained = sum(1 for x, y in zip(b, a) if y and not x)
    extra = {"base_accuracy": base_acc.to_dict(), "adapted_accuracy": math.fsum(a) / n, "chance": chance,
             "lost": lost, "gained": gained, "mcnemar_p": mcnemar_exact(lost, gained), "computed": False}
    if base_acc.low <= chance:
        return GateResult(FORGETTING, ADAPTED, INCONCLUSIVE, None, n, extra=extra, reasons=[
            f"not computed: the base model is not clearly above chance on the knowledge set (accuracy "
            f"{base_acc.value:.1%} [{base_acc.low:.1%}, {base_acc.high:.1%}], chance {chance:.0%}), so there "
            f"is nothing to measure forgetting against"])

    def share_lost(bb, aa):
        right = math.fsum(bb)
        return None if right == 0 else math.fsum(1 for x, y in zip(bb, aa) if x and not y) / right

    try:
        est = stats.bootstrap([b, a], share_lost, **kw)
    except ValueError as exc:
        return GateResult(FORGETTING, ADAPTED, INCONCLUSIVE, None, n, extra=extra, reasons=[str(exc)])
    extra["computed"] = True
    verdict = bound_verdict(est, max_forgetting, higher_is_better=False)
    reasons = evidence.shortfalls(items=n, rated=n, conversations=None)
    if math.fsum(b) < evidence.min_items:
        reasons.append(f"the base model answered {int(math.fsum(b))} questions correctly, fewer than the minimum "
                       f"{evidence.min_items} to measure forgetting on")
    if reasons and verdict in (PASS, FAIL):
        verdict = INCONCLUSIVE
    checks = [{"check": "forgetting", "value": est.value, "ci": [est.low, est.high], "threshold": max_forgetting,
               "verdict": bound_verdict(est, max_forgetting, higher_is_better=False)}]
    return GateResult(FORGETTING, ADAPTED, verdict, est, int(math.fsum(b)), checks, reasons, extra)


# --------------------------------------------------------------------------- validity


def apply_controls(adapted: GateResult, controls: dict[str, GateResult]) -> GateResult:
    """The adapted model's gate is only meaningful when the reference passes it and no other
    control does; otherwise it is "not_valid" with the reason (its measured value is kept)."""
    reasons = []
    ref = controls.get(REFERENCE)
    if ref is not None and ref.verdict != PASS:
        reasons.append(f"the dataset's own reference replies do not pass this gate ({ref.verdict})")
    for name, result in controls.items():
        if name != REFERENCE and result.verdict == PASS:
            reasons.append(f"the {name} control passes this gate, so passing it proves nothing")
    if not reasons:
        return adapted
    return GateResult(adapted.gate, adapted.candidate, NOT_VALID, adapted.value, adapted.n, adapted.checks,
                      adapted.reasons + reasons, {**adapted.extra, "measured_verdict": adapted.verdict})


def overall_verdict(gates: Sequence[GateResult]) -> str:
    """pass only when every gate passes; fail when any fails; not_valid when any gate is not valid
    (and none failed); otherwise inconclusive."""
    verdicts = [g.verdict for g in gates]
    if not verdicts:
        return INCONCLUSIVE
    if FAIL in verdicts:
        return FAIL
    if all(v == PASS for v in verdicts):
        return PASS
    return NOT_VALID if NOT_VALID in verdicts else INCONCLUSIVE


# --------------------------------------------------------------------------- brand voice, all candidates


def _on_voice(result, item_ids: Sequence[str]) -> list[bool | None]:
    scores = {r.item_id: r for r in result.replies if r.model == "adapted"}
    return [scores[i].on_voice if i in scores and scores[i].computed else None for i in item_ids]


def brand_voice_gates(judge, items, *, embedder: Embedder | None, adapted_result=None,
                      policy: BrandVoicePolicyValues = BrandVoicePolicyValues(), evidence: Evidence = Evidence(),
                      include_adapted: bool = True, **kw) -> dict[str, GateResult]:
    """The brand-voice gate for the adapted replies and for each control, all on the same items
    and scored by the same judge (the control's reply in the "adapted" slot). `adapted_result` is
    the judge's result on the real items, reused instead of scoring them again. Relevance and
    diversity use `embedder` (sentence embeddings); without one they are inconclusive."""
    from dataclasses import replace

    items = [it for it in items if it.reference]
    ids = [it.item_id for it in items]
    controls = control_replies(ids, [it.reference for it in items])
    candidates: dict[str, list[str | None]] = dict(controls)
    if include_adapted:
        candidates = {ADAPTED: [it.adapted_reply for it in items], **candidates}
    on_voice: dict[str, list[bool | None]] = {}
    for name, replies in candidates.items():
        if name == ADAPTED and adapted_result is not None:
            on_voice[name] = _on_voice(adapted_result, ids)
            continue
        # Only the candidate's reply is scored (no base reply, so no pairwise comparison either).
        result = judge.score([replace(it, base_reply=None, adapted_reply=r) for it, r in zip(items, replies)])
        on_voice[name] = _on_voice(result, ids)
    messages = [it.client_message for it in items]
    out: dict[str, GateResult] = {}
    for name, replies in candidates.items():
        relevant = diversity = None
        if embedder is not None:
            relevant = relevance_flags(embedder, replies, messages, ids)
            diversity = diversity_share(embedder, replies, near_duplicate=policy.near_duplicate)
        out[name] = brand_voice_gate(name, item_ids=ids, on_voice=on_voice[name], relevant=relevant,
                                     reference_on_voice=on_voice[REFERENCE], diversity=diversity, policy=policy,
                                     evidence=evidence, **kw)
    if ADAPTED in out:
        out[ADAPTED] = apply_controls(out[ADAPTED], {k: v for k, v in out.items() if k != ADAPTED})
    return out
