"""How the new-job form presents each hyperparameter: label, unit, range, one-line explanation,
and whether it is folded under "Advanced". Only presentation lives here: the form's messages come
from the API's own validation (gpu_worker.presets.hyperparameter_errors, through the estimate
call), and tests/dashboard check the ranges written here against those rules."""
from __future__ import annotations

import dataclasses

from gpu_worker.contracts import Hyperparameters
from gpu_worker.presets import LR_SCHEDULERS

# (name, label, unit, (low, high) or None, input step, explanation, advanced)
_FIELDS = [
    ("num_epochs", "Epochs", "passes over the data", (0.1, 100), "0.1",
     "How many times training reads every conversation; more learns more and risks overfitting.", False),
    ("learning_rate", "Learning rate", "per step", (1e-6, 0.1), "any",
     "Step size of each update; LoRA works between 1e-5 and 1e-3.", False),
    ("lora_r", "LoRA rank", "", (1, 1024), "1",
     "Size of the adapter: a higher rank learns more style and costs a little more memory.", False),
    ("lora_alpha", "LoRA alpha", "", (1, 4096), "1",
     "Scale of the adapter's update; usually 1-2x the rank.", False),
    ("max_seq_len", "Max sequence length", "tokens", (32, 131072), "1",
     "Longer conversations are cut to this many tokens; must fit the base model's context.", False),
    ("micro_batch_size", "Micro-batch size", "conversations per GPU pass", (1, 1024), "1",
     "Lower it first when a job runs out of GPU memory.", True),
    ("gradient_accumulation_steps", "Gradient accumulation", "micro-batches per step", (1, 4096), "1",
     "Micro-batches summed into one update; the effective batch is micro-batch x this.", True),
    ("lora_dropout", "LoRA dropout", "fraction", (0, 0.99), "0.01",
     "Share of adapter activations dropped while training, against overfitting.", True),
    ("lr_scheduler", "LR schedule", "", None, None,
     "How the learning rate falls after warmup.", True),
    ("warmup_ratio", "Warmup", "fraction of steps", (0, 0.99), "0.01",
     "Share of the steps over which the learning rate ramps up from zero.", True),
    ("weight_decay", "Weight decay", "fraction", (0, 1), "0.01",
     "AdamW's pull of the adapter weights towards zero.", True),
    ("max_grad_norm", "Gradient clip", "norm", (0.001, 1000), "any",
     "Gradients longer than this are scaled down; 1.0 is usual.", True),
    ("seed", "Seed", "", (0, 2 ** 32 - 1), "1",
     "Same seed and data give the same shuffling and initialisation.", True),
    ("eval_every_steps", "Validation every", "steps (0 = at checkpoints)", (0, None), "1",
     "How often the validation loss is measured during training.", True),
    ("early_stopping_patience", "Early-stopping patience", "evaluations (0 = off)", (0, None), "1",
     "Stop after this many validations without improvement, keeping the best adapter.", True),
    ("early_stopping_min_delta", "Early-stopping min. improvement", "loss", (0, None), "any",
     "A validation loss must improve by at least this to count.", True),
    ("target_modules", "Target modules", "comma-separated", None, None,
     "The model's layers that get an adapter (q_proj, v_proj, ...).", True),
]


def _range_text(bounds) -> str:
    if bounds is None:
        return ""
    low, high = bounds
    return f"≥ {low:g}" if high is None else f"{low:g} – {high:g}"


def hyperparameter_fields() -> list[dict]:
    """One entry per Hyperparameters field, in form order."""
    kinds = {f.name: f.type for f in dataclasses.fields(Hyperparameters)}
    out = []
    for name, label, unit, bounds, step, help_text, advanced in _FIELDS:
        kind = "choice" if name == "lr_scheduler" else "list" if name == "target_modules" else \
            "int" if kinds[name] in ("int", int) else "float"
        out.append({"name": name, "label": label, "unit": unit, "min": bounds[0] if bounds else None,
                    "max": bounds[1] if bounds else None, "range": _range_text(bounds), "step": step,
                    "help": help_text, "advanced": advanced, "kind": kind,
                    "choices": list(LR_SCHEDULERS) if name == "lr_scheduler" else []})
    return out
