"""Dataset statistics: counts, distributions and token counts.

Token counts are exact when a tokenizer is available: with `transformers` installed (the `train`
extra) the chat template is applied exactly as the worker does; with only `tokenizers`, message
contents are counted exactly and the template's framing is estimated. Without either, counts are
estimated from characters and say so.
"""
from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path
from typing import Any

# Llama-3 chat framing per message: <|start_header_id|>role<|end_header_id|>\n\n ... <|eot_id|>
FRAMING_TOKENS_PER_MESSAGE = 5
CHARS_PER_TOKEN = 4.0


class TokenCounter:
    """Counts tokens of a canonical conversation prefix, the way the worker will see it."""

    def __init__(self, tokenizer_path: str | None = None):
        self.method = "estimate"
        self.description = f"estimate: {CHARS_PER_TOKEN:g} characters per token plus {FRAMING_TOKENS_PER_MESSAGE} framing tokens per message (no tokenizer configured)"
        self._hf = None
        self._tok = None
        if tokenizer_path:
            self._load(tokenizer_path)

    def _load(self, path: str) -> None:
        p = Path(path)
        try:
            from transformers import AutoTokenizer  # optional: the `train` extra

            tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
            if getattr(tok, "chat_template", None):
                self._hf = tok
                self.method = "exact"
                self.description = f"exact: chat template of the tokenizer at {p}"
                return
        except Exception:  # noqa: BLE001 - fall through to the lighter tokenizer or the estimate
            pass
        try:
            from tokenizers import Tokenizer

            file = p / "tokenizer.json" if p.is_dir() else p
            self._tok = Tokenizer.from_file(str(file))
            self.method = "exact_content"
            self.description = (f"exact message contents with {file}; chat framing estimated at "
                                f"{FRAMING_TOKENS_PER_MESSAGE} tokens per message")
        except Exception:  # noqa: BLE001
            pass

    def count(self, messages: list[dict[str, Any]]) -> int:
        if self._hf is not None:
            ids = self._hf.apply_chat_template([{"role": m["role"], "content": m["content"]} for m in messages], tokenize=True)
            if not isinstance(ids, list):  # transformers 5 returns a BatchEncoding (a mapping, not a dict)
                ids = ids["input_ids"]
            return len(ids)
        total = 1  # begin-of-text
        for m in messages:
            total += FRAMING_TOKENS_PER_MESSAGE + self.content_tokens(m["content"])
        return total

    def content_tokens(self, text: str) -> int:
        if self._hf is not None:
            return len(self._hf.encode(text, add_special_tokens=False))
        if self._tok is not None:
            return len(self._tok.encode(text, add_special_tokens=False).ids)
        return max(1, round(len(text) / CHARS_PER_TOKEN)) if text else 0


def _trim_trailing_untrained(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    end = len(messages)
    while end and not (messages[end - 1]["role"] == "assistant" and messages[end - 1].get("train")):
        end -= 1
    return messages[:end]


def token_stats(conversations: list[dict[str, Any]], counter: TokenCounter) -> dict[str, Any]:
    """Tokens per epoch as the worker trains (each conversation once, up to its last target) and,
    for comparison, as pair-by-pair training would process them (each target with its full prefix)."""
    per_conversation = 0
    pair_by_pair = 0
    trainable = 0
    for conv in conversations:
        msgs = _trim_trailing_untrained(conv["messages"])
        if not msgs:
            continue
        per_conversation += counter.count(msgs)
        for i, m in enumerate(msgs):
            if m["role"] == "assistant" and m.get("train"):
                pair_by_pair += counter.count(msgs[: i + 1])
                trainable += counter.content_tokens(m["content"]) + 1  # + end-of-turn token
    return {
        "method": counter.method,
        "description": counter.description,
        "per_epoch": per_conversation,
        "trainable": trainable,
        "pair_by_pair_per_epoch": pair_by_pair,
        "pair_by_pair_ratio": round(pair_by_pair / per_conversation, 3) if per_conversation else None,
    }


def emotion_label_key(label: Any) -> str | None:
    """One spelling per label: "Cautious hope", "cautious_hope" and "cautious-hope" are one."""
    if not isinstance(label, str) or not label.strip():
        return None
    return "_".join(label.strip().lower().replace("-", " ").replace("_", " ").split())


def emotion_labels(conversations: list[dict[str, Any]]) -> dict[str, Any]:
    """The dataset's own set of client-emotion labels (primary emotion of each client turn), as
    stats["emotion_labels"]: `labels` (sorted, one spelling each), `counts`, and `aliases` (each
    spelling in the file that differs from its label)."""
    counts: Counter[str] = Counter()
    aliases: dict[str, str] = {}
    turns = 0
    for conv in conversations:
        for m in conv["messages"]:
            if m["role"] != "user":
                continue
            turns += 1
            raw = m.get("emotion", {}).get("primary") if isinstance(m.get("emotion"), dict) else None
            key = emotion_label_key(raw)
            if key is None:
                continue
            counts[key] += 1
            if raw != key:
                aliases[raw] = key
    return {"labels": sorted(counts), "counts": dict(counts.most_common()), "aliases": dict(sorted(aliases.items())),
            "labelled_client_turns": sum(counts.values()), "client_turns": turns}


def token_fields(conversations: list[dict[str, Any]], train_ids: list[str], val_ids: list[str],
                 counter: TokenCounter) -> dict[str, Any]:
    """The token part of the stats: `tokens`, `train_tokens`, `val_tokens`."""
    by_id = {c["conversation_id"]: c for c in conversations}
    return {
        "tokens": token_stats(conversations, counter),
        "train_tokens": token_stats([by_id[i] for i in train_ids], counter)["per_epoch"],
        "val_tokens": token_stats([by_id[i] for i in val_ids], counter)["per_epoch"],
    }


def dataset_stats(normalized, train_ids: list[str], val_ids: list[str], counter: TokenCounter) -> dict[str, Any]:
    convs = normalized.conversations
    turns = [sum(1 for m in c["messages"] if m["role"] != "system") for c in convs]

    def dist(key: str) -> dict[str, int]:
        counts = Counter(c.get("metadata", {}).get(key) for c in convs)
        counts.pop(None, None)
        return dict(sorted(counts.items()))

    emotions = Counter(m["emotion"]["primary"] for c in convs for m in c["messages"]
                       if m["role"] == "user" and isinstance(m.get("emotion"), dict) and m["emotion"].get("primary"))
    return {
        "format": normalized.format,
        "conversations": len(convs),
        "pairs": normalized.pairs,
        "trainable_turns": normalized.trainable_turns,
        "skipped": dict(normalized.skipped),
        "skipped_total": sum(normalized.skipped.values()),
        "train_conversations": len(train_ids),
        "val_conversations": len(val_ids),
        "turns_per_conversation": {
            "min": min(turns), "max": max(turns), "mean": round(statistics.fmean(turns), 2),
        },
        **token_fields(convs, train_ids, val_ids, counter),
        "distributions": {
            "persona": dist("persona"),
            "emotional_arc": dist("emotional_arc"),
            "topic": dist("topic"),
            "client_emotion": dict(emotions.most_common()),
        },
        "emotion_labels": emotion_labels(convs),
        "imperfect": dict(getattr(normalized, "fixes", {}) or {}),
        "skipped_conversations": list(getattr(normalized, "skipped_conversations", []) or []),
        "duplicates_removed": getattr(normalized, "duplicates_removed", 0),
        "warnings": list(normalized.warnings),
    }
