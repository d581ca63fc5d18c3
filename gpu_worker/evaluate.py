"""Evaluation on the pod, base model (adapter disabled) vs adapted, same prompts, seeds and decoding.

- Perplexity: token-weighted over the assistant tokens of the validation split, reported overall
  and per held-out conversation (sum of token NLL, token count), so the control plane can put a
  bootstrap interval on it by resampling conversations.
- Emotion recognition and knowledge retention: multiple-choice items scored by option
  log-likelihood (gpu_worker.evaluation.pod_eval). Accuracy is decided by `spec.eval_choice_score`:
  "sum" (default: the log-probability of the whole option, end-of-turn included, i.e. the
  model's probability of answering exactly that option) or "mean" (per token). Both per-option
  scores are stored, so the other reading can be computed later.
- Replies: greedy decoding with a fixed seed for a bounded, evenly spread subset of the held-out
  assistant turns (`eval_max_replies`, `eval_max_new_tokens`).

The scoring code and the shipped evaluation sets live under gpu_worker/evaluation, so the pod
image copies only `gpu_worker/` (the control plane's `validation` app is never imported here; an
import-linter contract holds that). Each part that fails is recorded
as not computed with the reason; the job itself does not fail because a report metric could not
be measured.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import time
from typing import Any, Callable

from .data import IGNORE, MicroBatch, TokenizedConversation, micro_batch, pack
from .trainer import loss_sum

EVALUATION_VERSION = 1
# Sequences per forward pass when scoring options (sorted by length, so short questions batch
# together and long transcripts together).
CHOICE_BATCH = 16
# Replies generated together (greedy decoding is per row, so the batch size does not change them).
REPLY_BATCH = 8


def perplexity(model, batches: list[MicroBatch], device=None) -> tuple[float, int]:
    """exp(summed NLL / number of loss tokens) over all batches; (perplexity, tokens)."""
    import torch

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for b in batches:
                s, n = loss_sum(model, b, device)
                total += float(s)
                count += n
    finally:
        model.train(was_training)
    if not count:
        return float("nan"), 0
    return math.exp(total / count), count


def adapter_disabled(model):
    disable = getattr(model, "disable_adapter", None)
    return disable() if disable else contextlib.nullcontext()


# --------------------------------------------------------------------------- per conversation


def conversation_nll(model, conversations: list[TokenizedConversation], *, max_seq_len: int, device=None
                     ) -> list[tuple[float, int]]:
    """Per conversation: (summed NLL of its loss tokens, number of loss tokens), in input order.

    Conversations are packed as in training (position ids restart per conversation, so none
    attends to another) and the per-token losses are summed back per conversation.
    """
    import torch
    import torch.nn.functional as F

    out: list[tuple[float, int]] = [(0.0, 0)] * len(conversations)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for row in pack([len(c) for c in conversations], max_seq_len):
                batch = micro_batch([conversations[i] for i in row])
                owner: list[int] = []
                for i in row:
                    owner.extend([i] * len(conversations[i]))
                t = batch.tensors(device)
                labels = t["labels"][0]
                keep = (labels != IGNORE).nonzero().view(-1)
                if not keep.numel():
                    continue
                logits = model(input_ids=t["input_ids"], position_ids=t["position_ids"], attention_mask=None,
                               use_cache=False, logits_to_keep=keep).logits[0].float()
                losses = F.cross_entropy(logits, labels[keep], reduction="none").tolist()
                sums: dict[int, list[float]] = {}
                for pos, loss in zip(keep.tolist(), losses):
                    sums.setdefault(owner[pos], []).append(loss)
                for i, values in sums.items():
                    out[i] = (math.fsum(values), len(values))
    finally:
        model.train(was_training)
    return out


def perplexity_by_conversation(model, conversations: list[TokenizedConversation], *, max_seq_len: int,
                               device=None) -> dict[str, Any]:
    """Base and adapted (NLL sum, tokens) per held-out conversation, and the token-weighted totals."""
    with adapter_disabled(model):
        base = conversation_nll(model, conversations, max_seq_len=max_seq_len, device=device)
    adapted = conversation_nll(model, conversations, max_seq_len=max_seq_len, device=device)
    rows = [{"conversation_id": c.conversation_id, "tokens": b[1], "base_nll": b[0], "adapted_nll": a[0]}
            for c, b, a in zip(conversations, base, adapted) if b[1]]
    tokens = sum(r["tokens"] for r in rows)

    def ppl(key):
        return math.exp(math.fsum(r[key] for r in rows) / tokens) if tokens else None

    base_ppl, adapted_ppl = ppl("base_nll"), ppl("adapted_nll")
    return {
        "base_perplexity": base_ppl,
        "adapted_perplexity": adapted_ppl,
        "relative_change": (adapted_ppl - base_ppl) / base_ppl if base_ppl else None,
        "tokens": tokens,
        "conversations": rows,
    }


# --------------------------------------------------------------------------- the report's items


def spread(items: list, limit: int) -> list:
    """At most `limit` items, evenly spread over the list (deterministic), in their order."""
    if limit <= 0:
        return []
    if len(items) <= limit:
        return list(items)
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "transformers", "peft"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _choice_part(model, tokenizer, items, *, score: str, check: Callable[[], None]) -> dict[str, Any]:
    from gpu_worker.evaluation import pod_eval

    normalized = score == "mean"
    started = time.time()
    with adapter_disabled(model):
        base = pod_eval.score_choice_items(model, tokenizer, items, batch_size=CHOICE_BATCH)
    check()
    adapted = pod_eval.score_choice_items(model, tokenizer, items, batch_size=CHOICE_BATCH)
    rows = []
    for item, b, a in zip(items, base, adapted):
        rows.append({
            "item_id": item.item_id, "answer": item.answer, "options": list(item.options), "meta": item.meta,
            "base": b.to_dict(), "adapted": a.to_dict(),
            "base_correct": b.correct(normalized), "adapted_correct": a.correct(normalized),
        })
    n = len(rows)
    return {
        "score": score,
        "n": n,
        "base_accuracy": sum(r["base_correct"] for r in rows) / n if n else None,
        "adapted_accuracy": sum(r["adapted_correct"] for r in rows) / n if n else None,
        "seconds": round(time.time() - started, 2),
        "items": rows,
    }


def _replies_part(model, tokenizer, items, *, max_new_tokens: int, seed: int, check: Callable[[], None]):
    from gpu_worker.evaluation import pod_eval

    started = time.time()
    with adapter_disabled(model):
        base = pod_eval.generate_replies(model, tokenizer, items, max_new_tokens=max_new_tokens, seed=seed,
                                         batch_size=REPLY_BATCH)
    check()
    adapted = pod_eval.generate_replies(model, tokenizer, items, max_new_tokens=max_new_tokens, seed=seed,
                                        batch_size=REPLY_BATCH)
    rows = []
    for item, b, a in zip(items, base, adapted):
        rows.append({
            "item_id": item.item_id, "client_message": item.client_message, "reference": item.reference,
            "context": [m for m in item.prompt_messages if m.get("role") != "system"], "meta": item.meta,
            "base": {"text": b.text, "n_new_tokens": b.n_new_tokens, "finished": b.finished},
            "adapted": {"text": a.text, "n_new_tokens": a.n_new_tokens, "finished": a.finished},
        })
    return {"n": len(rows), "max_new_tokens": max_new_tokens, "seed": seed,
            "seconds": round(time.time() - started, 2), "items": rows}


def _free_device_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort
        pass


def _guarded(name: str, fn: Callable[[], dict[str, Any]], errors: dict[str, str], warn) -> dict[str, Any]:
    """Run one part; an error becomes "not computed" with the reason (a stop request still
    propagates: the runner handles it). The adapter is already uploaded by now, so a report
    metric that cannot be measured (out of memory included) does not fail the job."""
    from .runner import Interrupted

    try:
        return fn()
    except Interrupted:
        raise
    except Exception as exc:  # noqa: BLE001 - reported in the file and as a warning, never swallowed silently
        if "out of memory" in str(exc).lower():
            _free_device_memory()
            exc = RuntimeError(f"out of memory ({exc}); lower eval_max_new_tokens or eval_max_replies")
        reason = f"{type(exc).__name__}: {exc}"[:500]
        errors[name] = reason
        if warn:
            warn(f"evaluation: {name} could not be computed ({reason})")
        return {"not_computed": reason}


def full_evaluation(model, tokenizer, spec, *, val_rows: list[dict[str, Any]],
                    val_conversations: list[TokenizedConversation], device=None,
                    check: Callable[[], None] = lambda: None, warn=None) -> dict[str, Any]:
    """Everything the validation report needs from the model, as one JSON-able dict
    (written to `<output_uri>/evaluation.json`)."""
    from gpu_worker.evaluation import pod_eval
    from gpu_worker.evaluation.datasets import KNOWLEDGE_FILE, load_emotion_labels

    import torch

    hp = spec.hyperparameters
    seed = spec.eval_seed
    errors: dict[str, str] = {}
    started = time.time()
    torch.manual_seed(seed)
    doc: dict[str, Any] = {
        "version": EVALUATION_VERSION,
        "job_id": spec.job_id,
        "attempt": spec.attempt,
        "base_model": spec.base_model,
        "settings": {"seed": seed, "choice_score": spec.eval_choice_score, "max_replies": spec.eval_max_replies,
                     "max_new_tokens": spec.eval_max_new_tokens, "max_emotion_items": spec.eval_max_emotion_items,
                     "knowledge": spec.eval_knowledge, "decoding": "greedy", "max_seq_len": hp.max_seq_len},
        "versions": {**_versions(), "emotion_labels": load_emotion_labels().version,
                     "knowledge_set_sha256": hashlib.sha256(KNOWLEDGE_FILE.read_bytes()).hexdigest()[:16]},
        "held_out_conversations": len(val_rows),
    }

    if val_conversations:
        doc["perplexity"] = _guarded("perplexity", lambda: perplexity_by_conversation(
            model, val_conversations, max_seq_len=hp.max_seq_len, device=device), errors, warn)
    else:
        doc["perplexity"] = {"not_computed": "no held-out conversation with an assistant reply to score"}
    check()

    if val_rows:
        emotion_items = pod_eval.emotion_recognition_items(val_rows, seed=seed)
        unmapped = pod_eval.unmapped_emotion_labels(val_rows)
        if emotion_items:
            chosen = spread(emotion_items, spec.eval_max_emotion_items)
            doc["emotion"] = _guarded("emotion", lambda: _choice_part(
                model, tokenizer, chosen, score=spec.eval_choice_score, check=check), errors, warn)
            doc["emotion"].update({"available": len(emotion_items), "unmapped_labels": unmapped})
        else:
            doc["emotion"] = {"not_computed": "no held-out client turn has a primary-emotion label that maps to an "
                                              "option", "unmapped_labels": unmapped}
    else:
        doc["emotion"] = {"not_computed": "the dataset has no validation split"}
    check()

    if spec.eval_knowledge:
        doc["knowledge"] = _guarded("knowledge", lambda: _choice_part(
            model, tokenizer, pod_eval.knowledge_items(), score=spec.eval_choice_score, check=check), errors, warn)
    else:
        doc["knowledge"] = {"not_computed": "knowledge retention was switched off for this job (eval_knowledge)"}
    check()

    if spec.eval_lm_tasks:
        from gpu_worker.evaluation import lm_harness

        doc["lm_eval"] = _guarded("lm_eval", lambda: lm_harness.base_and_adapted(
            model, tokenizer, spec.eval_lm_tasks, limit=spec.eval_lm_limit, seed=seed,
            disabled=lambda: adapter_disabled(model)), errors, warn)
    else:
        doc["lm_eval"] = {"not_computed": "no lm-evaluation-harness task was requested for this job (eval_lm_tasks)"}
    check()

    if val_rows:
        reply_items = pod_eval.reply_items(val_rows)
        chosen = spread(reply_items, spec.eval_max_replies)
        if chosen:
            doc["replies"] = _guarded("replies", lambda: _replies_part(
                model, tokenizer, chosen, max_new_tokens=spec.eval_max_new_tokens, seed=seed, check=check),
                errors, warn)
            doc["replies"]["available"] = len(reply_items)
        else:
            doc["replies"] = {"not_computed": "no held-out assistant turn to reply to"
                              if not reply_items else "eval_max_replies is 0"}
    else:
        doc["replies"] = {"not_computed": "the dataset has no validation split"}

    doc["errors"] = errors
    doc["seconds"] = round(time.time() - started, 2)
    return doc


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The compact part of evaluation.json that travels in the `completed` event."""
    ppl = doc.get("perplexity") or {}
    out: dict[str, Any] = {
        "base_perplexity": ppl.get("base_perplexity"),
        "adapted_perplexity": ppl.get("adapted_perplexity"),
        "relative_change": ppl.get("relative_change"),
        "tokens": ppl.get("tokens", 0),
        "conversations": len(ppl.get("conversations") or []),
    }
    for part in ("emotion", "knowledge"):
        d = doc.get(part) or {}
        out[part] = ({"n": d.get("n"), "base_accuracy": d.get("base_accuracy"),
                      "adapted_accuracy": d.get("adapted_accuracy"), "score": d.get("score")}
                     if "not_computed" not in d else {"not_computed": d["not_computed"]})
    replies = doc.get("replies") or {}
    out["replies"] = ({"n": replies.get("n"), "max_new_tokens": replies.get("max_new_tokens")}
                      if "not_computed" not in replies else {"not_computed": replies["not_computed"]})
    bench = doc.get("benchmark")
    if isinstance(bench, dict):
        # The control plane checks this before measuring a job on the benchmark.
        out["benchmark"] = {k: bench.get(k) for k in ("dataset_id", "val_fingerprint")}
        if bench.get("not_computed"):
            out["benchmark"]["not_computed"] = bench["not_computed"]
    if doc.get("errors"):
        out["errors"] = doc["errors"]
    return out
