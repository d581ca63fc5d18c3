"""Preprocessing: masking, packing without leakage, exact loss."""
import pytest
import torch

from gpu_worker.data import (
    IGNORE,
    PackedDataset,
    micro_batch,
    pack,
    tokenize_all,
    tokenize_conversation,
    training_messages,
)
from gpu_worker.trainer import loss_sum


def _render_len(tok, messages, gen=False):
    text = tok.apply_chat_template([{"role": m["role"], "content": m["content"]} for m in messages],
                                   tokenize=False, add_generation_prompt=gen)
    return len(tok(text, add_special_tokens=False)["input_ids"])


def test_loss_tokens_are_exactly_the_assistant_tokens(tiny_tokenizer, short_conversations):
    for conv in short_conversations[:10]:
        tc = tokenize_conversation(tiny_tokenizer, conv, 8192)
        msgs = training_messages(conv)
        expected = sum(
            _render_len(tiny_tokenizer, msgs[: i + 1]) - _render_len(tiny_tokenizer, msgs[:i], gen=True)
            for i, m in enumerate(msgs) if m["role"] == "assistant" and m.get("train")
        )
        assert tc.loss_tokens == expected
        # The trained tokens decode to the assistant replies, each closed by its end-of-turn token.
        trained = [t for t, keep in zip(tc.input_ids, tc.trained) if keep]
        text = tiny_tokenizer.decode(trained)
        replies = [m["content"].strip() for m in msgs if m["role"] == "assistant" and m.get("train")]
        assert text == "".join(r + "<|eot_id|>" for r in replies)


def test_trailing_user_dropped_and_context_only_assistant_masked(tiny_tokenizer, short_conversations):
    conv = dict(short_conversations[0])
    assert conv["messages"][-1]["role"] == "user"  # the real data ends with the client's words
    full = tokenize_conversation(tiny_tokenizer, conv, 8192)
    rendered = tiny_tokenizer.apply_chat_template(
        [{"role": m["role"], "content": m["content"]} for m in conv["messages"]], tokenize=False)
    assert len(full) < len(tiny_tokenizer(rendered, add_special_tokens=False)["input_ids"])
    # Mark the first assistant reply as context only: fewer loss tokens, same sequence.
    msgs = [dict(m) for m in conv["messages"]]
    first = next(i for i, m in enumerate(msgs) if m["role"] == "assistant")
    msgs[first]["train"] = False
    ctx = tokenize_conversation(tiny_tokenizer, {**conv, "messages": msgs}, 8192)
    assert ctx.input_ids == full.input_ids
    assert 0 < ctx.loss_tokens < full.loss_tokens
    # Nothing to learn: skipped.
    none = [{**m, "train": False} if m["role"] == "assistant" else m for m in msgs]
    assert tokenize_conversation(tiny_tokenizer, {**conv, "messages": none}, 8192) is None


def test_truncation_warns(tiny_tokenizer, short_conversations):
    warnings = []
    convs, report = tokenize_all(tiny_tokenizer, short_conversations[:3], 600, warn=warnings.append)
    assert len(warnings) == 3 and len(report.truncated) == 3 and all(len(c) == 600 for c in convs)
    assert "longer than max_seq_len 600; it was truncated" in warnings[0]
    warnings.clear()
    convs, report = tokenize_all(tiny_tokenizer, short_conversations[:3], 64, warn=warnings.append)
    assert convs == [] and report.skipped_no_target == 3
    assert "no assistant reply fits, so it is skipped" in warnings[0]


def test_pack_first_fit_decreasing():
    lengths = [900, 300, 700, 100, 1000, 50, 400]
    rows = pack(lengths, 1024)
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in r) <= 1024 for r in rows)
    assert len(rows) == 4 and pack(lengths, 1024) == rows


def test_labels_never_cross_conversations(tiny_tokenizer, short_conversations):
    convs, _ = tokenize_all(tiny_tokenizer, short_conversations[:3], 8192)
    mb = micro_batch(convs)
    start = 0
    for c in convs:
        end = start + len(c)
        assert mb.position_ids[start:end] == list(range(len(c)))
        assert mb.labels[end - 1] == IGNORE  # the last token of a conversation predicts nothing
        start = end
    assert mb.loss_tokens == sum(c.loss_tokens for c in convs)


@pytest.mark.slow
@pytest.mark.parametrize("attn, n", [("sdpa", 5), ("eager", 3)])
def test_packed_loss_equals_one_by_one(tiny_model_dir, tiny_tokenizer, short_conversations, attn, n):
    from transformers import AutoModelForCausalLM

    convs, report = tokenize_all(tiny_tokenizer, short_conversations[:n], 8192)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=attn, dtype=torch.float64)
    with torch.no_grad():
        packed, n_packed = loss_sum(model, micro_batch(convs))
        single = [loss_sum(model, micro_batch([c])) for c in convs]
        # Guard that the check has teeth: one long sequence (no position reset) differs.
        leaky = micro_batch(convs)
        leaky.position_ids = list(range(len(leaky.input_ids)))
        leaked, _ = loss_sum(model, leaky)
    total = sum(float(s) for s, _ in single)
    assert abs(float(packed) - total) < 1e-5
    assert n_packed == sum(n for _, n in single) == report.loss_tokens
    assert abs(float(leaked) - total) > 1e-2


def test_packed_fp32_matches_relative(tiny_model_dir, tiny_tokenizer, short_conversations):
    from transformers import AutoModelForCausalLM

    convs, _ = tokenize_all(tiny_tokenizer, short_conversations[:4], 8192)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        packed, n = loss_sum(model, micro_batch(convs))
        total = sum(float(loss_sum(model, micro_batch([c]))[0]) for c in convs)
    assert abs(float(packed) / n - total / n) < 1e-5  # per-token mean, float32


def test_epoch_order_is_a_pure_function_of_seed_and_epoch(tiny_tokenizer, short_conversations):
    convs, _ = tokenize_all(tiny_tokenizer, short_conversations[:12], 8192)
    ds = PackedDataset.build(convs, max_seq_len=4096, micro_batch_size=2, gradient_accumulation_steps=2,
                             shuffle_seed=3)
    again = PackedDataset.build(convs, max_seq_len=4096, micro_batch_size=2, gradient_accumulation_steps=2,
                                shuffle_seed=3)
    assert ds.epoch_order(1) == again.epoch_order(1) != ds.epoch_order(0)
    seen = [b.input_ids for s in range(ds.steps_per_epoch) for b in ds.step_batches(0, s)]
    assert sum(len(x) for x in seen) == ds.tokens_per_epoch
