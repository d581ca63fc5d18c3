"""Fluency of a reply as a test of its word order: is this order of its words more plausible than
random orders of the same words?

Why this design: the rubric's detectors and sentence embeddings read a reply as a bag of phrases
and meanings, so the reference's own words in a random order ("word salad") kept most of the
reference's scores and was rated 60-80% on-voice. What the bag does not have is the order. So
the judge asks, for each reply, a permutation test:

1. A word-order model is learned from the dataset's own replies (the references of the items
   being judged, plus the rubric's exemplars): an interpolated bigram model over lower-cased
   words and punctuation marks, with sentence start/end marks, Dirichlet-smoothed towards the
   unigram distribution (`WordOrderModel`). Bigrams are what fluent English has and a shuffle
   destroys ("I hear", "you are", ". would", "$ 50"); a reply from the same conversation as the
   one scored is left out of the model (`exclude`), so a reference is never judged fluent because
   the model memorised it.
2. The reply's whitespace-separated words (punctuation attached, exactly what a shuffle moves)
   are put in `shuffles` random orders, fixed by the text, and each order's log-likelihood under
   the model is computed. The bag of words is the same in every order, so the unigram part is the
   same too: only the order differs.
3. `fluency` = the share of those random orders that the reply's own order beats (a tie counts
   half). A fluent reply beats nearly all of them (about 1.0); word salad is itself a random order
   and beats about half (uniform on [0, 1]). A reply is *fluent* when it beats at least
   `FLUENT_SHARE` (95%) of them: a one-sided permutation test at the 5% level, so a word salad is
   called fluent about 1 time in 20 whatever its vocabulary.

A reply of fewer than `MIN_WORDS` words has too few orders to test: fluency is not measured
(None) and it does not count against the reply. Pure Python; no torch, no Django.
"""
from __future__ import annotations

import hashlib
import math
import random
import re
from collections import Counter
from typing import Iterable, Sequence

FLUENT_SHARE = 0.95
MIN_WORDS = 8
SHUFFLES = 60
MIN_MODEL_TOKENS = 200  # below this the model has seen too little text to judge order
_TOKEN = re.compile(r"\$|\d+(?:[.,]\d+)*%?|[a-z]+(?:['\u2019][a-z]+)*|[.!?;:,()\-\u2014]", re.IGNORECASE)
_START, _END = "<s>", "</s>"
_SENTENCE_END = {".", "!", "?"}


def tokens(text: str) -> list[str]:
    """Lower-cased words, figures folded to one token, punctuation marks; sentence marks added."""
    out = [_START]
    for tok in _TOKEN.findall(text or ""):
        tok = tok.lower()
        out.append("<num>" if tok[0].isdigit() else tok)
        if tok in _SENTENCE_END:
            out += [_END, _START]
    if out[-1] == _START:
        out.pop()
    if out[-1] != _END:
        out.append(_END)
    return out


def _bigrams(toks: Sequence[str]) -> Iterable[tuple[str, str]]:
    return zip(toks, toks[1:])


class WordOrderModel:
    """Bigram counts per document group (a conversation); scoring can leave one group out."""

    def __init__(self, documents: Iterable[tuple[str, str]], *, prior: float = 2.0):
        """`documents`: (group, text). `prior`: weight of the unigram distribution in each bigram."""
        self.prior = prior
        self._uni: Counter = Counter()
        self._bi: Counter = Counter()
        self._ctx: Counter = Counter()
        self._by_group: dict[str, tuple[Counter, Counter, Counter]] = {}
        for group, text in documents:
            toks = tokens(text)
            uni, bi = Counter(toks), Counter(_bigrams(toks))
            ctx = Counter(a for a, _ in _bigrams(toks))
            u, b, c = self._by_group.setdefault(group, (Counter(), Counter(), Counter()))
            for total, part in ((self._uni, uni), (self._bi, bi), (self._ctx, ctx), (u, uni), (b, bi), (c, ctx)):
                total.update(part)
        self.size = sum(self._uni.values())

    def tokens_without(self, group: str | None) -> int:
        held = self._by_group.get(group) if group is not None else None
        return self.size - (sum(held[0].values()) if held else 0)

    def scorer(self, exclude: str | None = None):
        """log P(order) for token lists, from every group but `exclude`."""
        held = self._by_group.get(exclude) if exclude is not None else None
        uni_h, bi_h, ctx_h = held if held else (Counter(), Counter(), Counter())
        total = self.size - sum(uni_h.values())
        vocab = len(self._uni) + 1
        prior = self.prior

        def p_uni(w):  # add-one, so an unseen word still has a probability
            return (self._uni[w] - uni_h[w] + 1) / (total + vocab)

        def logp(toks: Sequence[str]) -> float:
            s = 0.0
            for a, b in _bigrams(toks):
                c_ab = self._bi[(a, b)] - bi_h[(a, b)]
                c_a = self._ctx[a] - ctx_h[a]
                s += math.log((c_ab + prior * p_uni(b)) / (c_a + prior))
            return s

        return logp


def fluency(text: str, model: WordOrderModel, *, exclude: str | None = None, shuffles: int = SHUFFLES) -> dict:
    """{"fluency": share of random orders beaten or None, "fluent": bool or None, "words": n}."""
    words = (text or "").split()
    if len(words) < MIN_WORDS:
        return {"fluency": None, "fluent": None, "words": len(words),
                "reason": f"fewer than {MIN_WORDS} words: too few orders to test"}
    if model.tokens_without(exclude) < MIN_MODEL_TOKENS:
        return {"fluency": None, "fluent": None, "words": len(words),
                "reason": f"the word-order model has seen fewer than {MIN_MODEL_TOKENS} tokens"}
    logp = model.scorer(exclude)
    own = logp(tokens(" ".join(words)))
    rng = random.Random(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))
    beaten = 0.0
    for _ in range(shuffles):
        order = words[:]
        rng.shuffle(order)
        other = logp(tokens(" ".join(order)))
        beaten += 1.0 if own > other else (0.5 if own == other else 0.0)
    share = beaten / shuffles
    return {"fluency": share, "fluent": share >= FLUENT_SHARE, "words": len(words)}
