"""Every benchmark, or the ones named: `python -m benchmarks [NAME ...] [--quick] [--gpu]`.

    make bench                                  # all CPU benchmarks (DATABASE_URL, REDIS_URL set by make)
    make bench BENCH_ARGS="ingest api"          # some of them
    make bench BENCH_ARGS="--quick"             # smoke test: small sizes, demo skipped
    make bench BENCH_ARGS="--gpu"               # also the GPU benchmark (skipped without CUDA)
    make bench BENCH_ARGS="gpu"                 # only the GPU benchmark

Each benchmark prints its figures as a table followed by the exact command that produced them;
docs/performance.md records them. Names:
  runtime    training runtime overhead: gpu_worker loop vs minimal loops (tiny model, CPU)
  tokens     tokens per epoch, pair by pair vs per conversation, padding share
  ingest     requests/s, pod events/s and points/s through the webhook, the pod's batching sender vs one
             request per event, POST-to-websocket latency, nothing lost (served processes)
  api        job list, job detail, metric series: latency and queries, small vs 1,000 jobs / 1M points
  demo       `make demo` wall time, cold and warm; start to first metric
  estimator  duration and cost estimate error over a (synthetic) history of runs
  loss       peak memory of the training loss, plain logits vs chunked, at Llama-3's vocabulary (4k tokens)
  ledger     recorded cost vs the fake RunPod server's per-second ledger, per job (evictions, cancel, capacity)
  accuracy   estimator error per kind (median, p90) as the estimate API shows it, scripted runs on the priced local provider
  import     dataset import through the API (the 4 MB, 72-conversation file; 0.6 MB sample; training.jsonl)
             and its background statistics task
  history    dashboard history & analysis page with 1,000 jobs: server time and queries (target < 1 s)
  gpu        QLoRA tokens/s, memory and MFU on CUDA (8B and a slice of 70B) -- only with --gpu or by name
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CPU_BENCHMARKS = ("runtime", "tokens", "ingest", "api", "demo", "estimator", "ledger", "accuracy", "loss", "import", "history")
ALL = (*CPU_BENCHMARKS, "gpu")


def _script(path: str, args: list[str]) -> list[str]:
    return [sys.executable, path, *args]


def commands(quick: bool) -> dict[str, list[str]]:
    return {
        "runtime": _script("benchmarks/worker_throughput.py",
                           ["--steps", "2", "--conversations", "8", "--repeats", "1"] if quick
                           else ["--conversations", "40", "--steps", "8", "--repeats", "3"]),
        "tokens": _script("benchmarks/worker_tokens_per_epoch.py", ["--max-seq-len", "4096"]),
        "ingest": _script("benchmarks/event_ingestion.py", ["--quick"] if quick else ["--repeats", "3"]),
        "api": _script("benchmarks/api_latency.py", ["--quick"] if quick else []),
        "demo": _script("benchmarks/demo_wall.py", []),
        "estimator": _script("benchmarks/billing_estimator.py", ["--jobs", "20"] if quick else ["--jobs", "60", "--seed", "3"]),
        "loss": _script("benchmarks/loss_memory.py", ["--tokens", "1024"] if quick else []),
        "ledger": _script("benchmarks/billing_ledger.py", []),
        "accuracy": _script("benchmarks/billing_accuracy.py", ["--jobs", "12"] if quick else ["--jobs", "36", "--seed", "5"]),
        "import": _script("benchmarks/dataset_import.py", ["--repeats", "2"] if quick else ["--repeats", "5"]),
        "history": _script("benchmarks/dashboard_history.py", ["--quick"] if quick else []),
        "gpu": _script("benchmarks/gpu/qlora_throughput.py", ["--steps", "3", "--warmup", "1"] if quick else []),
    }


def cuda_available() -> tuple[bool, str]:
    try:
        import torch
    except ImportError:
        return False, "torch is not installed (the `train` extra)"
    if not torch.cuda.is_available():
        return False, "no CUDA device on this machine"
    return True, torch.cuda.get_device_name(0)


def run(name: str, argv: list[str]) -> tuple[int, float]:
    shown = " ".join(shlex.quote(a) for a in [".venv/bin/python" if a == sys.executable else a for a in argv])
    print(f"\n{'=' * 100}\n# {name}\n$ {shown}", flush=True)
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT)
    took = time.perf_counter() - started
    print(f"# {name}: exit {proc.returncode} after {took:.0f} s   (command: {shown})", flush=True)
    return proc.returncode, took


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help=f"any of {', '.join(ALL)} (default: all CPU ones)")
    ap.add_argument("--quick", action="store_true", help="small sizes, a smoke test; the demo is skipped unless named")
    ap.add_argument("--gpu", action="store_true", help="also run the GPU benchmark (needs CUDA)")
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in ALL]
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(ALL)}")
    names = list(args.names) or [n for n in CPU_BENCHMARKS if not (args.quick and n == "demo")]
    if args.gpu and "gpu" not in names:
        names.append("gpu")
    cmds = commands(args.quick)
    results = []
    for name in names:
        if name == "gpu":
            ok, why = cuda_available()
            if not ok:
                print(f"\n{'=' * 100}\n# gpu: SKIPPED: {why}. Run `make bench BENCH_ARGS=--gpu` on a machine with an "
                      f"NVIDIA GPU (or `python benchmarks/gpu/qlora_throughput.py --dry-run` to check the script "
                      f"on CPU).", flush=True)
                results.append((name, "skipped", 0.0))
                continue
            print(f"# gpu: {why}")
        rc, took = run(name, cmds[name])
        results.append((name, "ok" if rc == 0 else f"exit {rc}", took))
    print(f"\n{'=' * 100}\n# summary")
    for name, state, took in results:
        print(f"  {name:10s} {state:8s} {took:6.0f} s")
    return 0 if all(state in ("ok", "skipped") for _, state, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
