"""Tokens/s of gpu_worker's training loop against minimal hand-written loops (CPU, tiny model).

    .venv/bin/python benchmarks/worker_throughput.py [--steps 6] [--conversations 16] [--repeats 3]

Three loops train the same LoRA model (same init, same packed micro-batches, same optimizer):
  worker   gpu_worker.trainer.Trainer.train(): metrics events, clipping, scheduler, NaN checks
  minimal  a bare loop with the same loss (gpu_worker.trainer.loss_sum): forward, backward, step
  naive    a bare loop that computes full logits and lets the model compute the loss
The ratio worker/minimal is the worker's overhead (target >= 0.95).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "gpu_worker"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--conversations", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-seq-len", type=int, default=4096)
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import gw_brightrun
    from gpu_worker import modeling
    from gpu_worker.contracts import Hyperparameters, JobSpec
    from gpu_worker.data import PackedDataset, tokenize_all
    from gpu_worker.events import EventSender
    from gpu_worker.tiny_model import make_tiny_model
    from gpu_worker.trainer import StopFlag, Trainer, loss_sum

    tmp = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    model_dir = make_tiny_model(gw_brightrun.REAL_FILE, tmp / "model")
    tok = AutoTokenizer.from_pretrained(model_dir)
    convs, _ = tokenize_all(tok, gw_brightrun.load_real_conversations()[: args.conversations], args.max_seq_len)
    hp = Hyperparameters(micro_batch_size=1, gradient_accumulation_steps=2, max_seq_len=args.max_seq_len,
                         warmup_ratio=0.0, lora_dropout=0.0, num_epochs=1.0)
    data = PackedDataset.build(convs, max_seq_len=hp.max_seq_len, micro_batch_size=hp.micro_batch_size,
                               gradient_accumulation_steps=hp.gradient_accumulation_steps, shuffle_seed=hp.seed)
    steps = min(args.steps, data.steps_per_epoch - 1)
    plan = modeling.plan_model_load("none", cuda_available=False)

    def fresh():
        torch.manual_seed(0)
        model = modeling.add_lora(AutoModelForCausalLM.from_pretrained(model_dir), hp, plan)
        opt = modeling.make_optimizer(model, hp, plan)
        return model, opt

    def worker_loop() -> tuple[int, float]:
        model, opt = fresh()
        spec = JobSpec(job_id="bench", attempt=1, base_model=str(model_dir), train_uri="", val_uri=None,
                       output_uri=(tmp / "out").as_uri())
        sender = EventSender(spec, tmp / "work")
        # Fraction of an epoch: no epoch-end checkpoint inside the timed loop.
        bench_hp = Hyperparameters(**{**hp.to_dict(), "target_modules": hp.target_modules,
                                      "num_epochs": steps / data.steps_per_epoch})
        trainer = Trainer(model=model, optimizer=opt, scheduler=modeling.make_scheduler(opt, bench_hp, steps),
                          data=data, hp=bench_hp, device=torch.device("cpu"),
                          emit=lambda t, d, step: sender.emit(t, d, step=step), stop=StopFlag(),
                          work_dir=tmp / "work", output_uri=(tmp / "out").as_uri(), checkpoint_every=10**9)
        assert trainer.total_steps == steps
        t0 = time.perf_counter()
        trainer.train()
        elapsed = time.perf_counter() - t0
        sender.close(0.1)
        return trainer.train_tokens, elapsed

    def minimal_loop(naive: bool) -> tuple[int, float]:
        import torch.nn.functional as F

        model, opt = fresh()
        model.train()
        tokens = 0
        t0 = time.perf_counter()
        for s in range(steps):
            batches = data.step_batches(0, s)
            n = sum(b.loss_tokens for b in batches)
            for b in batches:
                if naive:
                    t = b.tensors()
                    logits = model(input_ids=t["input_ids"], position_ids=t["position_ids"], use_cache=False).logits
                    loss = F.cross_entropy(logits[0].float(), t["labels"][0], ignore_index=-100, reduction="sum")
                else:
                    loss, _ = loss_sum(model, b)
                (loss / n).backward()
                tokens += b.tokens
            opt.step()
            opt.zero_grad(set_to_none=True)
        return tokens, time.perf_counter() - t0

    results: dict[str, list[float]] = {"worker": [], "minimal": [], "naive": []}
    for _ in range(args.repeats):  # interleaved, best of N: the machine is shared
        for name, fn in (("worker", worker_loop), ("minimal", lambda: minimal_loop(False)),
                         ("naive", lambda: minimal_loop(True))):
            tokens, seconds = fn()
            results[name].append(tokens / seconds)
    best = {k: max(v) for k, v in results.items()}
    print(f"tiny model, {len(convs)} conversations, {steps} optimizer steps "
          f"(micro-batch {hp.micro_batch_size} x accumulation {hp.gradient_accumulation_steps}), "
          f"torch threads {torch.get_num_threads()}, best of {args.repeats}")
    for k in ("worker", "minimal", "naive"):
        print(f"  {k:8s} {best[k]:10.1f} tokens/s   (runs: {', '.join(f'{x:.0f}' for x in results[k])})")
    print(f"  ratio worker/minimal = {best['worker'] / best['minimal']:.3f}  (target >= 0.95)")
    print(f"  ratio worker/naive   = {best['worker'] / best['naive']:.3f}")


if __name__ == "__main__":
    main()
