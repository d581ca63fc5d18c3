"""The estimator's starting tables (docs/billing.md explains each number). They are a prior: every
completed job records what it measured and `billing.services.calibration` corrects these values
from that history, so estimates improve with use."""
from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from pathlib import Path

# Training tokens/s of LoRA fine-tuning on one H100 SXM (relative_speed 1.0) at max_seq_len 4096,
# Hugging Face transformers + peft with gradient checkpointing, by model size in billions of
# parameters. "nf4" is QLoRA (4-bit base weights, bitsandbytes), "none" is a bf16 base model.
# Derived from ~8·N FLOPs per token (forward, backward, recomputation) at the utilisation such
# stacks reach (≈10-15% of the H100's dense bf16 peak for QLoRA, which dequantizes every layer).
THROUGHPUT_H100_TOKENS_PER_S: dict[str, list[tuple[float, float]]] = {
    "nf4": [(0.01, 40000.0), (0.5, 24000.0), (1.0, 16000.0), (3.0, 7000.0), (8.0, 2600.0), (13.0, 1600.0),
            (34.0, 650.0), (70.0, 300.0)],
    "none": [(0.01, 55000.0), (0.5, 32000.0), (1.0, 22000.0), (3.0, 9500.0), (8.0, 3500.0), (13.0, 2150.0),
             (34.0, 880.0), (70.0, 400.0)],
}
# Attention grows with the sequence: throughput relative to 4096 is (1 + 4096/L0) / (1 + L/L0).
SEQ_LEN_REFERENCE = 4096
SEQ_LEN_SCALE = 16384
# Evaluation is forward only (about 3× faster per token than a training step) over the validation
# split twice: the base model and the adapted one.
EVAL_SPEEDUP = 3.0
EVAL_PASSES = 2

# Setup, per attempt: the pod starts (image pull), the base model downloads (bf16 weights, 2 bytes a
# parameter) and loads (and is quantized).
POD_START_S = {"SECURE": 90.0, "COMMUNITY": 150.0}
DOWNLOAD_GB_PER_S = 0.5
LOAD_GB_PER_S = 1.5
PREPROCESS_S = 20.0
FINALIZE_S = 30.0
# Memory a run needs: base weights (0.55 GB per billion parameters in NF4, 2 GB in bf16), plus
# adapter, optimizer state and activations, plus CUDA context.
WEIGHT_GB_PER_B = {"nf4": 0.55, "none": 2.0}
MEMORY_OVERHEAD_FACTOR = 1.2
MEMORY_FIXED_GB = 4.0

# Several GPUs on one pod (gpu_worker.distributed): the pod's throughput is one GPU's x N x this
# efficiency. A stated assumption until the GPU benchmark (benchmarks/gpu/qlora_throughput.py
# --gpus N) has measured it on a lent device: DDP all-reduces only the LoRA gradients (small), FSDP
# also gathers every layer's weights twice per step. The catalog's prices are per GPU.
MULTI_GPU_EFFICIENCY = {"ddp": 0.90, "fsdp": 0.75}

# The range around the point value before the estimator has history: ±30% on throughput, setup
# from −20% to +50%. With history the throughput range is 1.645 standard deviations of the
# measured/predicted log ratio (a 90% interval), never narrower than ±8%.
PRIOR_THROUGHPUT_SPREAD = 0.30
MIN_THROUGHPUT_SPREAD = 0.08
SETUP_LOW = 0.8
SETUP_HIGH = 1.5
# Spot: the high end allows one interruption (a fresh setup plus the work since the last checkpoint).
SPOT_INTERRUPTIONS_IN_HIGH = 1
# Calibration shrinks toward the table: weight n / (n + CALIBRATION_PRIOR_SAMPLES).
CALIBRATION_PRIOR_SAMPLES = 2.0
CALIBRATION_WINDOW = 200

SIZE_CLASSES = [(0.1, "tiny"), (2.0, "1b"), (5.0, "3b"), (10.0, "8b"), (20.0, "13b"), (45.0, "34b")]
DEFAULT_PARAMS_B = 8.0
_PARAMS_RE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([bBmM])(?![a-zA-Z])")


def size_class(params_b: float) -> str:
    for bound, name in SIZE_CLASSES:
        if params_b < bound:
            return name
    return "70b"


def model_params_b(base_model: str) -> tuple[float, bool]:
    """Billions of parameters read from the model's name ("Meta-Llama-3-70B-Instruct" → 70).
    Returns (value, known). Names with "tiny" are the project's tiny test model."""
    name = base_model or ""
    if "tiny" in name.lower():
        return 0.01, True
    found = _PARAMS_RE.findall(name.rsplit("/", 1)[-1]) or _PARAMS_RE.findall(name)
    if found:
        value, unit = found[-1]
        number = float(value)
        return (number / 1000.0 if unit.lower() == "m" else number), True
    return DEFAULT_PARAMS_B, False


def table_tokens_per_s(params_b: float, quantization: str) -> float:
    """H100 tokens/s at the reference sequence length, interpolated log-log in the table."""
    points = THROUGHPUT_H100_TOKENS_PER_S.get(quantization) or THROUGHPUT_H100_TOKENS_PER_S["nf4"]
    if params_b <= points[0][0]:
        return points[0][1]
    if params_b >= points[-1][0]:
        return points[-1][1] * points[-1][0] / params_b
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= params_b <= x1:
            t = (math.log(params_b) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return math.exp(math.log(y0) + t * (math.log(y1) - math.log(y0)))
    return points[-1][1]  # pragma: no cover


def seq_len_factor(max_seq_len: int) -> float:
    return (1 + SEQ_LEN_REFERENCE / SEQ_LEN_SCALE) / (1 + max(32, max_seq_len) / SEQ_LEN_SCALE)


def memory_needed_gb(params_b: float, quantization: str) -> float:
    return params_b * WEIGHT_GB_PER_B.get(quantization, 2.0) * MEMORY_OVERHEAD_FACTOR + MEMORY_FIXED_GB


SEED_FILE = Path(__file__).resolve().parent / "fixtures" / "gpu_catalog_seed.json"


@lru_cache(maxsize=1)
def seed_catalog() -> dict:
    """The documented seed prices (also what the data migration loaded)."""
    return json.loads(SEED_FILE.read_text())


def seed_gpu(gpu_id: str) -> dict | None:
    return next((g for g in seed_catalog()["gpu_types"] if g["gpu_id"] == gpu_id), None)
