"""Preprocessing: normalized conversations -> token ids with loss masks -> packed micro-batches.

Each conversation is rendered once with the tokenizer's chat template; only the tokens of
assistant messages marked `train` (and the end-of-turn token the template adds after them)
carry loss. Whole conversations are packed into rows of at most `max_seq_len` tokens, with
position ids restarting at 0 for each conversation. With `attention_mask=None` and no cache,
transformers reads those position ids as packed sequences (block-diagonal causal attention on
eager/sdpa, varlen kernels on flash-attention), so no token attends across conversations; the
tests check that the loss of a packed row equals the loss of its conversations run one by one.
Targets are shifted inside each conversation, so no conversation predicts its neighbour's first token.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

IGNORE = -100


@dataclass
class TokenizedConversation:
    conversation_id: str
    input_ids: list[int]
    trained: list[bool]  # token i is a training target (assistant content or its end-of-turn)
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def loss_tokens(self) -> int:
        # Token 0 is never predicted (nothing precedes it).
        return sum(self.trained[1:])

    def shifted_labels(self) -> list[int]:
        """labels[t] = the token predicted at position t, or IGNORE; the last position predicts nothing."""
        ids, tr = self.input_ids, self.trained
        return [ids[t + 1] if tr[t + 1] else IGNORE for t in range(len(ids) - 1)] + [IGNORE]


@dataclass
class PreprocessReport:
    conversations: int = 0
    used: int = 0
    skipped_no_target: int = 0
    truncated: list[str] = field(default_factory=list)
    tokens: int = 0
    loss_tokens: int = 0


class TemplateError(ValueError):
    pass


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{Path(path).name} line {n} is not valid JSON: {exc}") from exc
    return rows


def training_messages(conversation: dict[str, Any]) -> list[dict[str, Any]]:
    """Messages up to the last trained assistant message (trailing turns carry no loss)."""
    messages = conversation["messages"]
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant" and m.get("train")), default=-1)
    return messages[: last + 1]


def _render(tokenizer, messages, *, generation_prompt: bool = False) -> str:
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    return tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=generation_prompt)


def tokenize_conversation(tokenizer, conversation: dict[str, Any], max_seq_len: int) -> TokenizedConversation | None:
    """Render, tokenize and mask one conversation; None when it has no training target."""
    messages = training_messages(conversation)
    if not messages:
        return None
    text = _render(tokenizer, messages)
    spans: list[tuple[int, int]] = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or not m.get("train"):
            continue
        before = _render(tokenizer, messages[:i], generation_prompt=True) if i else ""
        through = _render(tokenizer, messages[: i + 1])
        if not (text.startswith(before) and text.startswith(through)):
            raise TemplateError(
                "the tokenizer's chat template does not render conversations prefix by prefix; "
                "assistant tokens cannot be located for loss masking"
            )
        spans.append((len(before), len(through)))
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    trained = []
    for start, end in enc["offset_mapping"]:
        trained.append(any(end > s and start < e for s, e in spans))
    truncated = len(ids) > max_seq_len
    if truncated:
        ids, trained = ids[:max_seq_len], trained[:max_seq_len]
    tc = TokenizedConversation(str(conversation.get("conversation_id", "")), ids, trained, truncated)
    # A truncated conversation is returned even without loss tokens, so the caller can say so.
    return tc if tc.loss_tokens or truncated else None


def tokenize_all(
    tokenizer,
    conversations: list[dict[str, Any]],
    max_seq_len: int,
    *,
    warn: Callable[[str], None] | None = None,
) -> tuple[list[TokenizedConversation], PreprocessReport]:
    report = PreprocessReport(conversations=len(conversations))
    out = []
    for conv in conversations:
        tc = tokenize_conversation(tokenizer, conv, max_seq_len)
        if tc is None:
            report.skipped_no_target += 1
            continue
        if tc.truncated:
            report.truncated.append(tc.conversation_id)
            if warn:
                what = ("it was truncated (its later turns are not trained)" if tc.loss_tokens else
                        "no assistant reply fits, so it is skipped")
                warn(f"conversation {tc.conversation_id} is longer than max_seq_len {max_seq_len}; {what}")
            if not tc.loss_tokens:
                report.skipped_no_target += 1
                continue
        out.append(tc)
        report.tokens += len(tc)
        report.loss_tokens += tc.loss_tokens
    report.used = len(out)
    return out, report


def pack(lengths: list[int], max_seq_len: int) -> list[list[int]]:
    """First-fit decreasing: indices grouped into rows of at most max_seq_len tokens. Deterministic."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(max_seq_len - lengths[i])
    return rows


@dataclass
class MicroBatch:
    """One padding-free row: several conversations back to back. Plain lists until `tensors()`."""

    input_ids: list[int]
    position_ids: list[int]
    labels: list[int]

    @property
    def tokens(self) -> int:
        return len(self.input_ids)

    @property
    def loss_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)

    def tensors(self, device=None):
        import torch

        return {
            "input_ids": torch.tensor([self.input_ids], dtype=torch.long, device=device),
            "position_ids": torch.tensor([self.position_ids], dtype=torch.long, device=device),
            "labels": torch.tensor([self.labels], dtype=torch.long, device=device),
        }


def micro_batch(conversations: list[TokenizedConversation]) -> MicroBatch:
    ids: list[int] = []
    pos: list[int] = []
    labels: list[int] = []
    for c in conversations:
        ids.extend(c.input_ids)
        pos.extend(range(len(c.input_ids)))
        labels.extend(c.shifted_labels())
    return MicroBatch(ids, pos, labels)


@dataclass
class PackedDataset:
    """Rows of packed conversations and the deterministic epoch order over them.

    One micro-batch is `micro_batch_size` rows concatenated (padding-free), one optimizer step is
    `gradient_accumulation_steps` micro-batches. The order of an epoch depends only on
    (shuffle_seed, epoch), so a resumed run can jump to any position without replaying data.
    """

    conversations: list[TokenizedConversation]
    rows: list[list[int]]
    micro_batch_size: int
    gradient_accumulation_steps: int
    shuffle_seed: int

    @classmethod
    def build(cls, conversations, *, max_seq_len, micro_batch_size, gradient_accumulation_steps, shuffle_seed):
        rows = pack([len(c) for c in conversations], max_seq_len)
        return cls(conversations, rows, micro_batch_size, gradient_accumulation_steps, shuffle_seed)

    @property
    def micro_batches_per_epoch(self) -> int:
        return -(-len(self.rows) // self.micro_batch_size)

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.micro_batches_per_epoch // self.gradient_accumulation_steps)

    @property
    def tokens_per_epoch(self) -> int:
        return sum(len(c) for c in self.conversations)

    def epoch_order(self, epoch: int) -> list[int]:
        order = list(range(len(self.rows)))
        random.Random(self.shuffle_seed * 1_000_003 + epoch).shuffle(order)
        return order

    def step_batches(self, epoch: int, step_in_epoch: int) -> list[MicroBatch]:
        """The micro-batches of optimizer step `step_in_epoch` (0-based) of `epoch`."""
        order = self.epoch_order(epoch)
        per_step = self.micro_batch_size * self.gradient_accumulation_steps
        chunk = order[step_in_epoch * per_step:(step_in_epoch + 1) * per_step]
        out = []
        for k in range(0, len(chunk), self.micro_batch_size):
            convs = [self.conversations[i] for r in chunk[k:k + self.micro_batch_size] for i in self.rows[r]]
            out.append(micro_batch(convs))
        return out

    def all_micro_batches(self) -> list[MicroBatch]:
        """Every row once, in packing order (evaluation)."""
        out = []
        for k in range(0, len(self.rows), self.micro_batch_size):
            convs = [self.conversations[i] for row in self.rows[k:k + self.micro_batch_size] for i in row]
            out.append(micro_batch(convs))
        return out
