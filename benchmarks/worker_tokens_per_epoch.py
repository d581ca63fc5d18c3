"""Tokens per epoch of the real file: pair by pair versus once per conversation, and packing.

    .venv/bin/python benchmarks/worker_tokens_per_epoch.py [--tokenizer DIR] [--max-seq-len 4096]

Pair by pair: each of the 212 pairs with a target is its own sequence (system, the whole earlier
conversation, the target). Per conversation: each conversation once, loss on every assistant turn
(gpu_worker's preprocessing). Same targets, same context for each. The tokenizer defaults to the
tiny one built from the file (any Hugging Face tokenizer directory works, e.g. Llama-3's).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "gpu_worker"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", help="tokenizer directory (default: the tiny model's, built now)")
    ap.add_argument("--max-seq-len", type=int, default=8192)
    ap.add_argument("--micro-batch-size", type=int, default=2)
    args = ap.parse_args()

    from transformers import AutoTokenizer

    import gw_brightrun
    from gpu_worker.data import PackedDataset, tokenize_all
    from gpu_worker.tiny_model import build_tokenizer, dataset_texts

    if args.tokenizer:
        tok = AutoTokenizer.from_pretrained(args.tokenizer)
    else:
        tok = build_tokenizer(dataset_texts(gw_brightrun.REAL_FILE))
    data = json.loads(gw_brightrun.REAL_FILE.read_text())
    conversations = gw_brightrun.normalize_brightrun(data)

    pair_tokens = 0
    pair_loss = 0
    chats = gw_brightrun.pair_texts(data)
    for chat in chats:
        rendered = tok.apply_chat_template(chat, tokenize=False)
        prefix = tok.apply_chat_template(chat[:-1], tokenize=False, add_generation_prompt=True)
        n = len(tok(rendered, add_special_tokens=False)["input_ids"])
        pair_tokens += n
        pair_loss += n - len(tok(prefix, add_special_tokens=False)["input_ids"])

    convs, report = tokenize_all(tok, conversations, args.max_seq_len)
    conv_tokens = sum(len(c) for c in convs)
    ds = PackedDataset.build(convs, max_seq_len=args.max_seq_len, micro_batch_size=args.micro_batch_size,
                             gradient_accumulation_steps=1, shuffle_seed=0)
    rows = [sum(len(convs[i]) for i in r) for r in ds.rows]
    # If rows were padded to a rectangle [micro_batch, longest row] instead of concatenated:
    padded = 0
    order = ds.epoch_order(0)
    for k in range(0, len(order), args.micro_batch_size):
        group = [rows[r] for r in order[k:k + args.micro_batch_size]]
        padded += max(group) * len(group)
    # One conversation per row (no packing), shuffled, padded to the longest in each micro-batch:
    import random

    lens = [len(c) for c in convs]
    random.Random(0).shuffle(lens)
    unpacked_padded = sum(max(lens[k:k + args.micro_batch_size]) * len(lens[k:k + args.micro_batch_size])
                          for k in range(0, len(lens), args.micro_batch_size))

    name = args.tokenizer or "tiny tokenizer (vocab %d)" % len(tok)
    print(f"{gw_brightrun.REAL_FILE.name}, tokenizer: {name}")
    print(f"  pairs with a target        {len(chats)}; conversations used {report.used} "
          f"(truncated {len(report.truncated)} at max_seq_len {args.max_seq_len})")
    print(f"  pair by pair               {pair_tokens:>9,} tokens/epoch, {pair_loss:,} loss tokens")
    print(f"  per conversation           {conv_tokens:>9,} tokens/epoch, {report.loss_tokens:,} loss tokens")
    print(f"  ratio                      {pair_tokens / conv_tokens:.2f}x fewer tokens per conversation")
    print(f"  packed rows                {len(rows)} rows of <= {args.max_seq_len}; fill {conv_tokens / (len(rows) * args.max_seq_len):.1%}")
    print("  padding share, padding-free micro-batches (gpu_worker): 0.0%")
    print(f"  padding share, packed rows padded to a rectangle:      {1 - conv_tokens / padded:.1%}")
    print(f"  padding share, one conversation per row, padded:       {1 - conv_tokens / unpacked_padded:.1%}")


if __name__ == "__main__":
    main()
