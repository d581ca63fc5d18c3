"""Pod-side evaluation: the parts of the validation report that need the model itself.

Written against the transformers API; torch is imported inside the functions that use it, so this
module (its item builders in particular) imports on the control plane too. The GPU worker calls
these with the base model (adapter disabled) and the adapted model, with the same items, seeds and
decoding; the control plane scores the results (validation.scoring, validation.judges).

Items are plain dataclasses with `to_dict`, so they can travel in a job spec or a result file.

Multiple-choice scoring (emotion recognition, knowledge retention): for each option the chat
template is applied to the prompt plus the option as the assistant's answer, and the option is
scored by the sum of the log-probabilities of its tokens (including the template's end-of-turn
token, so "hope" is not rewarded for being the start of "hopeful ..."), given the prompt. The
length-normalized variant divides by the number of scored tokens. No free text is parsed.
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from gpu_worker.evaluation.datasets import EmotionLabels, load_emotion_labels, load_knowledge

KNOWLEDGE_PROMPT = ("Answer this personal-finance question.\n\nQuestion: {question}\nOptions:\n{options}\n\n"
                    "Reply with the text of the correct option only.")
LETTERS = "ABCD"


@dataclass(frozen=True)
class ChoiceItem:
    """A multiple-choice question: `prompt_messages` (chat messages), `options`, the index of the
    correct option."""

    item_id: str
    kind: str  # "emotion" or "knowledge"
    prompt_messages: tuple[dict[str, str], ...]
    options: tuple[str, ...]
    answer: int
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ChoiceItem":
        return cls(d["item_id"], d["kind"], tuple(d["prompt_messages"]), tuple(d["options"]), int(d["answer"]),
                   dict(d.get("meta") or {}))


@dataclass(frozen=True)
class ReplyItem:
    """A held-out assistant turn: the conversation before it, the client's message and the dataset's reply."""

    item_id: str
    prompt_messages: tuple[dict[str, str], ...]
    client_message: str
    reference: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ReplyItem":
        return cls(d["item_id"], tuple(d["prompt_messages"]), d["client_message"], d["reference"],
                   dict(d.get("meta") or {}))


@dataclass(frozen=True)
class OptionScore:
    logprob: float  # sum over the option's tokens
    n_tokens: int

    @property
    def mean_logprob(self) -> float:
        return self.logprob / self.n_tokens


@dataclass(frozen=True)
class ChoiceResult:
    item_id: str
    scores: tuple[OptionScore, ...]
    answer: int

    def predicted(self, normalized: bool = False) -> int:
        values = [s.mean_logprob if normalized else s.logprob for s in self.scores]
        return max(range(len(values)), key=values.__getitem__)

    def correct(self, normalized: bool = False) -> bool:
        return self.predicted(normalized) == self.answer

    def to_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "answer": self.answer,
                "logprobs": [s.logprob for s in self.scores], "n_tokens": [s.n_tokens for s in self.scores],
                "predicted": self.predicted(), "predicted_normalized": self.predicted(True)}


@dataclass(frozen=True)
class GeneratedReply:
    item_id: str
    text: str
    n_new_tokens: int
    finished: bool  # stopped on an end token before max_new_tokens


# --------------------------------------------------------------------------- items


def _messages(conversation: dict[str, Any]) -> list[dict[str, Any]]:
    return list(conversation.get("messages") or [])


def transcript(messages: Iterable[dict[str, Any]], roles: dict[str, str]) -> str:
    return "\n\n".join(f"{roles[m['role']]}: {m['content'].strip()}" for m in messages if m.get("role") in roles)


def shuffled_options(options: Sequence[str], item_id: str, seed: int | None) -> tuple[str, ...]:
    """`options` in an order fixed by (seed, item_id): the same on every run and machine, different
    per item, so no option gains from always being listed first. `seed=None` keeps the order."""
    if seed is None:
        return tuple(options)
    order = list(options)
    random.Random(f"{seed}:{item_id}").shuffle(order)
    return tuple(order)


def emotion_recognition_items(conversations: Sequence[dict[str, Any]],
                              labels: EmotionLabels | None = None, *, seed: int | None = 0) -> list[ChoiceItem]:
    """One item per client turn with a labelled primary emotion that maps onto the option list.

    `conversations` are normalized conversations (docs/dataset-format.md) of the held-out split.
    The conversation up to and including that turn is written out as a transcript inside one user
    message followed by the question: that works with every chat template (no two user messages in a
    row) and keeps the system prompt, which would tell the model how to reply, out of a reading task.
    The options are shuffled per item with `seed` (`shuffled_options`), in the question text too.
    Labels that map to no option are skipped; `unmapped_emotion_labels` lists them (the report shows them).
    `meta` keeps the canonical label and the client-turn position, for the report's baselines.
    """
    labels = labels or load_emotion_labels()
    items = []
    for conv in conversations:
        msgs = _messages(conv)
        client_turn = -1
        for i, m in enumerate(msgs):
            if m.get("role") == "user":
                client_turn += 1
            if m.get("role") != "user" or not isinstance(m.get("emotion"), dict):
                continue
            label = labels.canonical(m["emotion"].get("primary"))
            if label is None:
                continue
            item_id = f"{conv.get('conversation_id')}#{i}"
            options = shuffled_options(labels.options, item_id, seed)
            question = labels.question.format(transcript=transcript(msgs[:i + 1], labels.transcript_roles),
                                              options=", ".join(options))
            items.append(ChoiceItem(
                item_id=item_id, kind="emotion",
                prompt_messages=({"role": "user", "content": question},), options=options,
                answer=options.index(label),
                meta={"conversation_id": conv.get("conversation_id"), "message_index": i, "client_turn": client_turn,
                      "label": m["emotion"].get("primary"), "canonical_label": label,
                      "labels_version": labels.version, "option_seed": seed}))
    return items


def unmapped_emotion_labels(conversations: Sequence[dict[str, Any]], labels: EmotionLabels | None = None) -> dict[str, int]:
    """Primary-emotion labels in `conversations` that map to no option, with their counts."""
    labels = labels or load_emotion_labels()
    out: dict[str, int] = {}
    for conv in conversations:
        for m in _messages(conv):
            if m.get("role") == "user" and isinstance(m.get("emotion"), dict):
                raw = m["emotion"].get("primary")
                if labels.canonical(raw) is None:
                    out[str(raw)] = out.get(str(raw), 0) + 1
    return out


def knowledge_items() -> list[ChoiceItem]:
    """The shipped financial-knowledge questions as multiple-choice items (no system prompt, so the
    base model's general knowledge is what is measured)."""
    items = []
    for q in load_knowledge():
        listed = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(q.options))
        prompt = KNOWLEDGE_PROMPT.format(question=q.question, options=listed)
        items.append(ChoiceItem(item_id=q.id, kind="knowledge", prompt_messages=({"role": "user", "content": prompt},),
                                options=q.options, answer=q.answer, meta={"category": q.category}))
    return items


def reply_items(conversations: Sequence[dict[str, Any]]) -> list[ReplyItem]:
    """One item per assistant target (`train: true`) of the held-out conversations: the messages
    before it (system prompt included, as in training) and the dataset's reply as the reference."""
    items = []
    for conv in conversations:
        msgs = _messages(conv)
        for i, m in enumerate(msgs):
            if m.get("role") != "assistant" or not m.get("train") or i == 0 or msgs[i - 1].get("role") != "user":
                continue
            prompt = tuple({"role": p["role"], "content": p["content"]} for p in msgs[:i])
            items.append(ReplyItem(item_id=f"{conv.get('conversation_id')}#{i}", prompt_messages=prompt,
                                   client_message=msgs[i - 1]["content"], reference=m["content"],
                                   meta={"conversation_id": conv.get("conversation_id"), "message_index": i,
                                         "pair_id": m.get("pair_id")}))
    return items


# --------------------------------------------------------------------------- model side


def _render(tokenizer, messages, *, add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)


def _encode(tokenizer, text: str) -> list[int]:
    # The rendered template already holds its special tokens (BOS included): add none.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _continuation_ids(tokenizer, prompt_messages, prompt_text: str, prompt_ids: list[int], option: str) -> list[int]:
    """Token ids of `option` as the assistant's answer, with the template's end-of-turn marker."""
    full_text = _render(tokenizer, list(prompt_messages) + [{"role": "assistant", "content": option}],
                        add_generation_prompt=False)
    if full_text.startswith(prompt_text):
        full_ids = _encode(tokenizer, full_text)
        if full_ids[:len(prompt_ids)] == prompt_ids and len(full_ids) > len(prompt_ids):
            return full_ids[len(prompt_ids):]
    # Templates that do not extend the generation prompt (rare): score the bare option text.
    return _encode(tokenizer, option)


def _model_device(model):
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        import torch
        return torch.device("cpu")


def _option_sequences(tokenizer, prompt_messages, options) -> list[tuple[list[int], int]]:
    """(prompt + option token ids, number of option tokens) for each option."""
    prompt_text = _render(tokenizer, prompt_messages, add_generation_prompt=True)
    prompt_ids = _encode(tokenizer, prompt_text)
    sequences = []
    for option in options:
        cont = _continuation_ids(tokenizer, prompt_messages, prompt_text, prompt_ids, option)
        if not cont:
            raise ValueError(f"option {option!r} encodes to no tokens")
        sequences.append((prompt_ids + cont, len(cont)))
    return sequences


def _score_sequences(model, tokenizer, sequences: list[tuple[list[int], int]], *, batch_size: int) -> list[OptionScore]:
    """Summed log-probability of the last n tokens of each sequence, in input order.

    Sequences are batched `batch_size` at a time in order of length (less padding), left-padded so
    they all end at the same position; only the logits of the last (longest continuation + 1)
    positions are computed (`logits_to_keep`), which keeps memory small with a large vocabulary
    and a long prompt.
    """
    import torch

    if not sequences:
        return []
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    device = _model_device(model)
    out: list[OptionScore | None] = [None] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: (len(sequences[i][0]), i))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                index = order[start:start + batch_size]
                chunk = [sequences[i] for i in index]
                width = max(len(ids) for ids, _ in chunk)
                keep = max(n for _, n in chunk) + 1
                input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
                attention = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, (ids, _) in enumerate(chunk):
                    input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
                    attention[row, width - len(ids):] = 1
                position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
                kwargs = dict(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                              position_ids=position_ids.to(device), use_cache=False)
                try:
                    logits = model(**kwargs, logits_to_keep=keep).logits
                except TypeError:  # a model without logits_to_keep: compute all, keep the tail
                    logits = model(**kwargs).logits
                logits = logits[:, -keep:, :].float()
                logprobs = torch.log_softmax(logits, dim=-1)
                for row, ((ids, n), i) in enumerate(zip(chunk, index)):
                    targets = torch.tensor(ids[-n:], dtype=torch.long, device=logprobs.device)
                    # The logit at position t predicts token t+1: the last n targets are predicted by
                    # positions -n-1 .. -2 of the kept window.
                    predicted = logprobs[row, keep - n - 1:keep - 1, :]
                    total = predicted.gather(-1, targets.unsqueeze(-1)).sum().item()
                    out[i] = OptionScore(logprob=float(total), n_tokens=n)
    finally:
        if was_training:
            model.train()
    return out  # type: ignore[return-value]


def option_scores(model, tokenizer, prompt_messages: Sequence[dict[str, str]], options: Sequence[str], *,
                  batch_size: int = 8) -> list[OptionScore]:
    """Log-likelihood of each option given the prompt, with its token count."""
    if not options:
        return []
    return _score_sequences(model, tokenizer, _option_sequences(tokenizer, prompt_messages, options),
                            batch_size=batch_size)


def option_loglikelihoods(model, tokenizer, prompt_messages: Sequence[dict[str, str]], options: Sequence[str], *,
                          length_normalized: bool = False, batch_size: int = 8) -> list[float]:
    """Sum log-probability of each option's tokens given the prompt (or, with
    `length_normalized=True`, the mean per token)."""
    scores = option_scores(model, tokenizer, prompt_messages, options, batch_size=batch_size)
    return [s.mean_logprob if length_normalized else s.logprob for s in scores]


def score_choice_items(model, tokenizer, items: Sequence[ChoiceItem], *, batch_size: int = 8) -> list[ChoiceResult]:
    """Option scores of every item; the report reads accuracy from `ChoiceResult.correct()`.
    Options of different items share batches (`batch_size` sequences each), so many short
    questions cost few forward passes; the scores do not depend on the batching."""
    sequences: list[tuple[list[int], int]] = []
    spans = []
    shared: dict[int, list[OptionScore]] = {}
    for k, item in enumerate(items):
        seqs = _option_sequences(tokenizer, item.prompt_messages, item.options)
        if len(seqs) > SHARED_PREFIX_MIN_OPTIONS:
            # Many options after one long prompt (emotion recognition: 17 after a transcript): the
            # prompt is run once and each option continues from a copy of its cache.
            scored = _score_shared_prefix(model, seqs)
            if scored is not None:
                shared[k] = scored
                spans.append((0, 0))
                continue
        spans.append((len(sequences), len(seqs)))
        sequences.extend(seqs)
    scores = _score_sequences(model, tokenizer, sequences, batch_size=batch_size)
    return [ChoiceResult(item.item_id, tuple(shared[k] if k in shared else scores[a:a + n]), item.answer)
            for k, (item, (a, n)) in enumerate(zip(items, spans))]


SHARED_PREFIX_MIN_OPTIONS = 4


def _score_shared_prefix(model, sequences: list[tuple[list[int], int]]) -> list[OptionScore] | None:
    """Options that share one prompt, scored from one pass over the prompt (KV cache copied per
    option). None when the sequences do not share the prompt or the model keeps no cache; the
    caller then scores them the batched way. Same numbers as the batched way up to float error."""
    import copy

    import torch

    prefix_len = len(sequences[0][0]) - sequences[0][1]
    prefix = sequences[0][0][:prefix_len]
    if prefix_len < 2 or any(ids[:len(ids) - n] != prefix for ids, n in sequences):
        return None
    device = _model_device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([prefix[:-1]], device=device), use_cache=True)
            cache = getattr(out, "past_key_values", None)
            if cache is None:
                return None
            scores = []
            for ids, n in sequences:
                tail = torch.tensor([[prefix[-1]] + ids[-n:]], device=device)
                logits = model(input_ids=tail, past_key_values=copy.deepcopy(cache), use_cache=True).logits[0]
                logprobs = torch.log_softmax(logits[:-1].float(), dim=-1)
                targets = torch.tensor(ids[-n:], dtype=torch.long, device=logprobs.device)
                scores.append(OptionScore(float(logprobs.gather(-1, targets.unsqueeze(-1)).sum().item()), n))
            return scores
    finally:
        if was_training:
            model.train()


def _end_token_ids(tokenizer, model) -> list[int]:
    """EOS plus the chat template's end-of-turn token (Llama-3's <|eot_id|>), when it is one token."""
    ids = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (tokenizer.eos_token_id, gen_eos):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    probe = [{"role": "user", "content": "x"}]
    prompt = _render(tokenizer, probe, add_generation_prompt=True)
    full = _render(tokenizer, probe + [{"role": "assistant", "content": "y"}], add_generation_prompt=False)
    if full.startswith(prompt + "y"):
        tail = _encode(tokenizer, full[len(prompt) + 1:])
        if tail:
            ids.add(tail[0])
    return sorted(ids)


def generate_replies(model, tokenizer, items: Sequence[ReplyItem], max_new_tokens: int = 512, seed: int = 0, *,
                     batch_size: int = 4) -> list[GeneratedReply]:
    """Greedy (deterministic) replies to each item's conversation. The seed is set before every
    batch so anything random (dropout left on by mistake, sampling defaults of a generation config)
    is repeatable too; greedy decoding itself draws no random numbers."""
    import torch

    device = _model_device(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    end_ids = _end_token_ids(tokenizer, model)
    out: list[GeneratedReply] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            prompts = [_encode(tokenizer, _render(tokenizer, it.prompt_messages, add_generation_prompt=True))
                       for it in chunk]
            width = max(len(p) for p in prompts)
            input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, ids in enumerate(prompts):
                input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
                attention[row, width - len(ids):] = 1
            torch.manual_seed(seed)
            with torch.no_grad():
                generated = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                                           do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                                           pad_token_id=pad_id, eos_token_id=end_ids or None,
                                           temperature=None, top_p=None, top_k=None)
            for row, item in enumerate(chunk):
                new = generated[row, width:].tolist()
                finished = False
                for j, tok in enumerate(new):
                    if tok in end_ids:
                        new, finished = new[:j], True
                        break
                text = tokenizer.decode(new, skip_special_tokens=True).strip()
                out.append(GeneratedReply(item.item_id, text, len(new), finished))
    finally:
        if was_training:
            model.train()
    return out


def accuracy(results: Sequence[ChoiceResult], *, normalized: bool = False) -> float:
    if not results:
        return math.nan
    return sum(r.correct(normalized) for r in results) / len(results)
