"""Peak memory of the training loss: plain logits vs the chunked path, at Llama-3's vocabulary.

    python benchmarks/loss_memory.py                      # 4,096 labelled tokens, vocab 128,256
    python benchmarks/loss_memory.py --tokens 8192 --chunks 256 1024

A one-layer Llama with Llama-3's vocabulary (128,256) and a small hidden size, so the LM head and
the loss dominate, as they do for long sequences of the real model. Each mode runs in its own
process: forward + backward of gpu_worker.loss.loss_sum over one packed sequence whose every
position carries a label; the figure is the process's peak RSS above its RSS right before the
step (the logits, their gradient, the activations of the step). The float32 logits alone are
tokens x vocab x 4 bytes: 2.1 GB at 4,096 tokens.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def measure(impl: str, tokens: int, vocab: int, hidden: int, chunk: int) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from gpu_worker import loss as losses

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=tokens,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    ids = torch.randint(0, vocab, (1, tokens))
    tensors = {"input_ids": ids, "position_ids": torch.arange(tokens).view(1, -1), "labels": ids.clone()}
    keep = torch.arange(tokens)
    # One warm-up step on a few tokens so allocator and kernels are set up before the baseline.
    small = {k: v[:, :16] for k, v in tensors.items()}
    losses.loss_sum(model, small, torch.arange(16), impl=impl, chunk_tokens=chunk).backward()
    model.zero_grad(set_to_none=True)
    before = _rss_mb()
    started = time.perf_counter()
    s = losses.loss_sum(model, tensors, keep, impl=impl, chunk_tokens=chunk)
    s.backward()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return {"impl": impl, "chunk_tokens": chunk if impl == "chunked" else None, "tokens": tokens, "vocab": vocab,
            "peak_above_baseline_mb": round(peak - before, 1), "seconds": round(seconds, 2),
            "loss_per_token": round(float(s.detach()) / tokens, 5)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--chunks", type=int, nargs="+", default=[1024, 512])
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one mode, print JSON
    args = ap.parse_args()
    if args.one:
        impl, chunk = args.one.split(":")
        print(json.dumps(measure(impl, args.tokens, args.vocab, args.hidden, int(chunk))))
        return 0
    modes = [("plain", 0)] + [("chunked", c) for c in args.chunks]
    rows = []
    for impl, chunk in modes:
        out = subprocess.run([sys.executable, __file__, "--one", f"{impl}:{chunk}", "--tokens", str(args.tokens),
                              "--vocab", str(args.vocab), "--hidden", str(args.hidden)],
                             capture_output=True, text=True, cwd=ROOT, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    plain = rows[0]["peak_above_baseline_mb"]
    logits_mb = args.tokens * args.vocab * 4 / 2**20
    print(f"loss memory, {args.tokens} labelled tokens, vocab {args.vocab}, hidden {args.hidden} "
          f"(float32 logits alone: {logits_mb:.0f} MB)")
    print(f"{'mode':<16}{'peak above baseline MB':>24}{'reduction':>12}{'seconds':>10}{'loss/token':>12}")
    for r in rows:
        name = r["impl"] + (f" {r['chunk_tokens']}" if r["chunk_tokens"] else "")
        print(f"{name:<16}{r['peak_above_baseline_mb']:>24.1f}{plain / max(r['peak_above_baseline_mb'], 1e-9):>11.1f}x"
              f"{r['seconds']:>10.2f}{r['loss_per_token']:>12.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
