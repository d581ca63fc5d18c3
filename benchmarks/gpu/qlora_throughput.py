"""QLoRA throughput of gpu_worker's training step on a random-weight Llama-3 architecture.

    python benchmarks/gpu/qlora_throughput.py                 # 8B, then 4 layers of 70B (GPU)
    python benchmarks/gpu/qlora_throughput.py --arch 8b --steps 10 --seq-len 4096
    python benchmarks/gpu/qlora_throughput.py --dry-run       # prints the plan, then a toy size on CPU
    python benchmarks/gpu/qlora_throughput.py --loss all      # plain vs chunked vs Liger's fused loss
    python benchmarks/gpu/qlora_throughput.py --gpus 2 --parallel ddp    # torchrun, one rank per GPU
    python benchmarks/gpu/qlora_throughput.py --gpus 4 --parallel fsdp --arch 70b

Nothing is downloaded: the model is built from a LlamaConfig with random weights directly on the
GPU in bf16, then every decoder linear layer is replaced by a bitsandbytes 4-bit NF4 layer
(double quantization, bf16 compute), exactly the layout `from_pretrained(quantization_config=...)`
produces. LoRA (r=16, all attention and MLP projections), gradient checkpointing, paged 8-bit
AdamW, and gpu_worker's own `Trainer.optimizer_step` on packed 4k sequences of random tokens.

Prints tokens/s, peak memory and MFU. MFU counts 6 x (all parameters) + attention FLOPs per
token against the card's dense bf16 peak (QLoRA computes no weight gradients for the frozen
base, but re-runs the forward pass for checkpointing: 2 + 2 + 2 = 6 N per token).
For 70B, a few layers are measured and the full model is extrapolated per layer.

`--loss` picks gpu_worker.loss's implementation (plain logits, chunked, Liger's fused linear
cross-entropy); `--gpus N` re-runs this script under torchrun (`torch.distributed.run
--standalone`) with one rank per GPU and gpu_worker's DDP or FSDP wrapping, as a multi-GPU pod
does: tokens/s is then the whole pod's, memory the largest rank's, MFU against N cards' peak.
With --dry-run and --gpus N the ranks run on the CPU over gloo.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

ARCHS = {
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256),
    "70b": dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                num_key_value_heads=8, vocab_size=128256),
    "toy": dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=512),
}
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A6000": 155.0, "4090": 165.0}


def peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value
    return None


def quantize_linears_4bit(model, compute_dtype, quant_storage=None):
    """Replace decoder nn.Linear layers by bnb Linear4bit (NF4, double quant), as from_pretrained does.
    `quant_storage`: the dtype the packed 4-bit weights are stored in (FSDP needs the compute dtype)."""
    import bitsandbytes as bnb
    import torch

    storage = {"quant_storage": quant_storage} if quant_storage is not None else {}
    for name, module in list(model.model.layers.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=compute_dtype, compress_statistics=True, quant_type="nf4",
                                      device="cpu", **storage)
                q.weight = bnb.nn.Params4bit(child.weight.data.to("cpu"), requires_grad=False,
                                             compress_statistics=True, quant_type="nf4", **storage)
                q = q.to(child.weight.device)  # quantizes on the move to CUDA
                setattr(module, child_name, q)
                del child
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    model.is_loaded_in_4bit = True
    return model


def build(arch: str, layers: int | None, device: str, quantize: bool, for_fsdp: bool = False):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = dict(ARCHS[arch])
    if layers:
        cfg["num_hidden_layers"] = layers
    from gpu_worker.modeling import flash_attn_available

    attn = "flash_attention_2" if device == "cuda" and flash_attn_available() else "sdpa"
    config = LlamaConfig(**cfg, max_position_embeddings=8192, rope_theta=500000.0, tie_word_embeddings=False,
                         attn_implementation=attn)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.config.use_cache = False
    if quantize:
        model = quantize_linears_4bit(model, dtype, quant_storage=dtype if for_fsdp else None)
    n_params = sum(p.numel() for p in model.parameters()) if not quantize else None
    return model, config, attn, n_params


def count_params_of(arch: str) -> int:
    return count_params(type("C", (), ARCHS[arch]))


def count_params(config) -> int:
    h, i, L, v = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * i + 2 * h
    return L * per_layer + 2 * v * h + h


def synthetic_dataset(vocab: int, seq_len: int, rows: int, micro_batch: int, accumulation: int):
    from gpu_worker.data import PackedDataset, TokenizedConversation

    rng = random.Random(0)
    convs = []
    for n in range(rows * 3):
        length = rng.randint(seq_len // 6, seq_len // 2)
        ids = [rng.randrange(10, vocab) for _ in range(length)]
        trained = [False] * (length // 3) + [True] * (length - length // 3)  # prompt, then the reply
        convs.append(TokenizedConversation(f"c{n}", ids, trained))
    return PackedDataset.build(convs, max_seq_len=seq_len, micro_batch_size=micro_batch,
                               gradient_accumulation_steps=accumulation, shuffle_seed=0)


def run_one(arch: str, layers: int | None, args) -> dict:
    import torch

    from gpu_worker import distributed, modeling
    from gpu_worker import loss as losses
    from gpu_worker.contracts import Hyperparameters
    from gpu_worker.trainer import StopFlag, Trainer

    dist = distributed.from_env()
    device = "cpu" if args.dry_run else "cuda"
    distributed.init_process_group(dist, device)
    parallel = distributed.plan_parallel(args.parallel, gpu_count=dist.world_size,
                                         params_b=count_params_of(arch) / 1e9)
    quantize = not args.dry_run or args.quantize_cpu
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    model, config, attn, _ = build(arch, layers, device, quantize, for_fsdp=parallel == "fsdp")
    build_s = time.perf_counter() - t0
    plan = modeling.LoadPlan(device=device, quantize_4bit=quantize, dtype="bfloat16" if device == "cuda" else "float32",
                             attn_implementation=attn, gradient_checkpointing=device == "cuda",
                             optimizer="paged_adamw_8bit" if device == "cuda" else "adamw")
    hp = Hyperparameters(lora_r=16, lora_alpha=32, lora_dropout=0.05, micro_batch_size=args.micro_batch,
                         gradient_accumulation_steps=args.accumulation, max_seq_len=args.seq_len,
                         warmup_ratio=0.0, num_epochs=1.0)
    model = modeling.add_lora(model, hp, plan)
    torch_device = torch.device("cuda", torch.cuda.current_device()) if device == "cuda" else torch.device("cpu")
    loss_impl = losses.resolve_impl(args.loss, cuda=device == "cuda")
    loss_fn = distributed.wrap(losses.loss_module(model, impl=loss_impl, chunk_tokens=args.loss_chunk_tokens),
                               parallel, dist, torch_device)
    optimizer = modeling.make_optimizer(model, hp, plan)
    steps = args.warmup + args.steps
    data = synthetic_dataset(config.vocab_size, args.seq_len, steps * args.micro_batch * args.accumulation,
                             args.micro_batch, args.accumulation)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model=model, optimizer=optimizer, scheduler=modeling.make_scheduler(optimizer, hp, 10**6),
                          data=data, hp=hp, device=torch_device, emit=lambda *a, **k: None,
                          stop=StopFlag(), work_dir=Path(tmp), output_uri=Path(tmp).as_uri(),
                          loss_fn=loss_fn, dist=dist)
        tokens = 0
        seconds = 0.0
        for s in range(steps):
            batches = data.step_batches(0, s)
            if device == "cuda":
                torch.cuda.synchronize()
            r = trainer.optimizer_step(batches)
            if device == "cuda":
                torch.cuda.synchronize()
            if s >= args.warmup:
                tokens += r.tokens
                seconds += r.seconds
    tps = tokens / seconds
    n = count_params(config)
    L, h, s = config.num_hidden_layers, config.hidden_size, args.seq_len
    # Attention: QK^T and AV, forward 4*s*h per token per layer (causal halves it), x3 fwd+bwd+recompute.
    attn_flops = 3 * 2 * L * s * h
    flops_per_token = 6 * n + attn_flops
    result = {
        "arch": arch, "layers": L, "params": n, "seq_len": s, "micro_batch": args.micro_batch,
        "accumulation": args.accumulation, "steps": args.steps, "attn": attn, "quantized_4bit": quantize,
        "tokens_per_s": round(tps, 1), "build_s": round(build_s, 1),
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "loss": loss_impl, "gpus": dist.world_size, "parallel": parallel,
    }
    if device == "cuda":
        peak_bytes = torch.tensor(float(torch.cuda.max_memory_allocated()))
        if dist.enabled:  # the largest rank's peak
            import torch.distributed as td

            peak_bytes = peak_bytes.to(torch_device)
            td.all_reduce(peak_bytes, op=td.ReduceOp.MAX)
        result["peak_memory_gib"] = round(float(peak_bytes) / 2**30, 2)
        peak = peak_tflops(result["device"], args.peak_tflops)
        if peak:
            result["mfu"] = round(tps * flops_per_token / (peak * 1e12 * dist.world_size), 4)
            result["peak_tflops_assumed"] = peak
    result["model_tflops_per_s"] = round(tps * flops_per_token / 1e12, 3)
    del trainer, model, optimizer, loss_fn
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=["8b", "70b", "both"], default="both")
    ap.add_argument("--layers-70b", type=int, default=4, help="decoder layers of the 70B architecture to build")
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--micro-batch", type=int, default=1)
    ap.add_argument("--accumulation", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--peak-tflops", type=float, help="dense bf16 peak of the card (default: by name)")
    ap.add_argument("--dry-run", action="store_true", help="toy size on CPU, no 4-bit: checks the script runs")
    ap.add_argument("--quantize-cpu", action="store_true", help="with --dry-run: try bitsandbytes 4-bit on CPU")
    ap.add_argument("--loss", choices=["auto", "plain", "chunked", "liger", "all"], default="auto",
                    help="gpu_worker.loss implementation; 'all' measures each one available")
    ap.add_argument("--loss-chunk-tokens", type=int, default=512)
    ap.add_argument("--gpus", type=int, default=1, help="ranks (one per GPU) under torchrun")
    ap.add_argument("--parallel", choices=["auto", "ddp", "fsdp"], default="auto")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    import os
    import subprocess

    import torch

    from gpu_worker import distributed
    from gpu_worker.loss import liger_available

    main_rank = distributed.from_env().is_main
    if args.gpus > 1 and "WORLD_SIZE" not in os.environ:
        if not args.dry_run and torch.cuda.device_count() < args.gpus:
            raise SystemExit(f"--gpus {args.gpus} but this machine has {torch.cuda.device_count()} CUDA device(s)")
        argv = [a for a in sys.argv[1:]]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.gpus}",
               __file__, *argv]
        print("$ " + " ".join(cmd), flush=True)
        raise SystemExit(subprocess.call(cmd, cwd=ROOT))
    losses = [args.loss]
    if args.loss == "all":
        losses = ["plain", "chunked"] + (["liger"] if liger_available() and not args.dry_run else [])

    if args.dry_run:
        args.seq_len = min(args.seq_len, 256)
        args.steps = min(args.steps, 2)
        args.warmup = min(args.warmup, 1)
        runs = [("toy", None)]
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --dry-run to check the script on CPU")
        runs = []
        if args.arch in ("8b", "both"):
            runs.append(("8b", None))
        if args.arch in ("70b", "both"):
            runs.append(("70b", args.layers_70b))
    if args.dry_run and main_rank:
        print("dry run: on a GPU machine this would measure, each for "
              f"{args.warmup} warm-up + {args.steps} steps at {args.seq_len if args.seq_len > 256 else 4096} tokens:")
        for arch in (["8b", "70b"] if args.arch == "both" else [args.arch]):
            for loss in losses:
                print(f"  arch={arch}{f' ({args.layers_70b} of 80 layers)' if arch == '70b' else ''} loss={loss} "
                      f"gpus={args.gpus} parallel={distributed.plan_parallel(args.parallel, gpu_count=args.gpus, params_b=count_params_of(arch) / 1e9)}")
        print("now the toy architecture on the CPU, to check the script runs:", flush=True)
    results = []
    for (arch, layers), loss in [(run, loss) for run in runs for loss in losses]:
        args.loss = loss
        r = run_one(arch, layers, args)
        if arch == "70b" and layers:
            # Per-layer cost dominates; extrapolate time per token to 80 layers (embeddings/head
            # are counted once in both), memory likewise.
            full = 80
            r["extrapolated_80_layers"] = {
                "tokens_per_s": round(r["tokens_per_s"] * layers / full, 1),
                "note": "linear in layers; ignores the fixed cost of embeddings and LM head",
            }
            if "peak_memory_gib" in r:
                per_layer_4bit_gib = (count_params(type("C", (), {**ARCHS["70b"], "num_hidden_layers": 1})) -
                                      2 * 128256 * 8192) * 0.5 / 2**30
                r["extrapolated_80_layers"]["weights_4bit_gib"] = round(per_layer_4bit_gib * full, 1)
        results.append(r)
        if main_rank:
            print(json.dumps(r, indent=1), flush=True)
    distributed.destroy_process_group()
    if args.json and main_rank:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
