"""Hyperparameter presets and their validation.

Imported by the control plane (estimate, new-job form) as well as by the pod, so it must stay
importable without torch: it depends only on `contracts`.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from .contracts import Hyperparameters

LR_SCHEDULERS = ("cosine", "linear", "constant")
DEFAULT_PRESET = "balanced"


class ConfigError(ValueError):
    """Invalid training configuration. `errors` lists every problem found, each one actionable."""

    def __init__(self, errors: list[str] | str):
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("; ".join(self.errors))


@dataclass(frozen=True)
class Preset:
    name: str
    when_to_choose: str
    hyperparameters: Hyperparameters


PRESETS: dict[str, Preset] = {
    "conservative": Preset(
        name="conservative",
        when_to_choose=(
            "Choose it for a small or noisy dataset or a first run on a new base model: a low rank "
            "and learning rate keep the adapter close to the base model and rarely overfit."
        ),
        hyperparameters=Hyperparameters(
            lora_r=8, lora_alpha=16, lora_dropout=0.05, learning_rate=1e-4, lr_scheduler="cosine",
            warmup_ratio=0.05, num_epochs=2.0, micro_batch_size=1, gradient_accumulation_steps=8,
            max_seq_len=4096,
        ),
    ),
    "balanced": Preset(
        name="balanced",
        when_to_choose=(
            "The default: a few hundred to a few thousand conversations where you want the voice "
            "and the habits of the data learned without forgetting the base model's skills."
        ),
        hyperparameters=Hyperparameters(
            lora_r=16, lora_alpha=32, lora_dropout=0.05, learning_rate=2e-4, lr_scheduler="cosine",
            warmup_ratio=0.03, num_epochs=3.0, micro_batch_size=2, gradient_accumulation_steps=4,
            max_seq_len=4096,
        ),
    ),
    "aggressive": Preset(
        name="aggressive",
        when_to_choose=(
            "Choose it for a large, clean dataset or a strong change of style: a high rank, more "
            "epochs and a higher learning rate learn more, at the risk of overfitting and of "
            "unstable loss (watch the validation perplexity)."
        ),
        hyperparameters=Hyperparameters(
            lora_r=64, lora_alpha=128, lora_dropout=0.1, learning_rate=3e-4, lr_scheduler="linear",
            warmup_ratio=0.03, num_epochs=5.0, micro_batch_size=2, gradient_accumulation_steps=8,
            max_seq_len=4096,
        ),
    ),
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(float(value)))


# Integer upper bounds, each with the reason a larger value can only fail (or waste a rented GPU).
INT_MAXIMA = {
    "micro_batch_size": (1024, "a batch larger than this cannot fit in any GPU's memory at LoRA sequence lengths"),
    "gradient_accumulation_steps": (4096, "an optimizer step would take hours; lower it or the learning rate"),
    "max_seq_len": (131072, "no supported base model (Llama-3.x: at most 128k tokens) has a longer context"),
    "seed": (2 ** 32 - 1, "random generators (torch, numpy) take 32-bit seeds"),
}
MAX_TARGET_MODULES = 64
MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}(\.[A-Za-z_][A-Za-z0-9_]{0,99}){0,7}$")


def hyperparameter_errors(hp: Hyperparameters, model_max_context: int | None = None) -> list[str]:
    """Every problem with `hp`, as sentences a person can act on (empty when valid)."""
    errors: list[str] = []

    def need_int(name: str, minimum: int) -> None:
        value = getattr(hp, name)
        if not _is_int(value):
            errors.append(f"{name} must be an integer (got {value!r})")
        elif value < minimum:
            errors.append(f"{name} must be >= {minimum} (got {value})")
        elif name in INT_MAXIMA and value > INT_MAXIMA[name][0]:
            maximum, why = INT_MAXIMA[name]
            errors.append(f"{name} must be <= {maximum} (got {value}): {why}")

    def need_number(name: str) -> bool:
        value = getattr(hp, name)
        if not _is_number(value):
            errors.append(f"{name} must be a finite number (got {value!r})")
            return False
        return True

    need_int("lora_r", 1)
    if _is_int(hp.lora_r) and hp.lora_r > 1024:
        errors.append(f"lora_r must be <= 1024 (got {hp.lora_r})")
    if need_number("lora_alpha") and not 0 < hp.lora_alpha <= 4096:
        errors.append(f"lora_alpha must be in (0, 4096] (got {hp.lora_alpha}); the usual value is 1-2x lora_r")
    if need_number("lora_dropout") and not 0 <= hp.lora_dropout < 1:
        errors.append(f"lora_dropout must be in [0, 1) (got {hp.lora_dropout})")
    if (not isinstance(hp.target_modules, (tuple, list)) or not hp.target_modules
            or not all(isinstance(m, str) and m for m in hp.target_modules)):
        errors.append(f"target_modules must be a non-empty list of module names (got {hp.target_modules!r})")
    elif len(hp.target_modules) > MAX_TARGET_MODULES:
        errors.append(f"target_modules must name at most {MAX_TARGET_MODULES} modules (got {len(hp.target_modules)})")
    else:
        bad = [m for m in hp.target_modules if not MODULE_NAME.match(m)]
        if bad:
            errors.append(f"target_modules must be module names (identifiers such as q_proj, optionally dotted "
                          f"like self_attn.q_proj); not {', '.join(repr(m[:60]) for m in bad[:3])}")
    if need_number("learning_rate"):
        if hp.learning_rate <= 0:
            errors.append(f"learning_rate must be > 0 (got {hp.learning_rate})")
        elif hp.learning_rate > 0.1:
            errors.append(f"learning_rate must be <= 0.1 (got {hp.learning_rate}); LoRA uses 1e-5 to 1e-3")
    if hp.lr_scheduler not in LR_SCHEDULERS:
        errors.append(f"lr_scheduler must be one of {', '.join(LR_SCHEDULERS)} (got {hp.lr_scheduler!r})")
    if need_number("warmup_ratio") and not 0 <= hp.warmup_ratio < 1:
        errors.append(f"warmup_ratio must be in [0, 1) (got {hp.warmup_ratio})")
    if need_number("weight_decay") and not 0 <= hp.weight_decay <= 1:
        errors.append(f"weight_decay must be in [0, 1] (got {hp.weight_decay}); AdamW's decay is a fraction")
    if need_number("max_grad_norm") and not 0 < hp.max_grad_norm <= 1000:
        errors.append(f"max_grad_norm must be in (0, 1000] (got {hp.max_grad_norm}); 1.0 is the usual clip")
    if need_number("num_epochs"):
        if hp.num_epochs <= 0:
            errors.append(f"num_epochs must be > 0 (got {hp.num_epochs})")
        elif hp.num_epochs > 100:
            errors.append(f"num_epochs must be <= 100 (got {hp.num_epochs})")
    need_int("micro_batch_size", 1)
    need_int("gradient_accumulation_steps", 1)
    need_int("max_seq_len", 32)
    if (_is_int(hp.max_seq_len) and model_max_context is not None
            and hp.max_seq_len > model_max_context):
        errors.append(
            f"max_seq_len {hp.max_seq_len} exceeds the model's context of {model_max_context}"
        )
    need_int("seed", 0)
    need_int("eval_every_steps", 0)
    need_int("early_stopping_patience", 0)
    if need_number("early_stopping_min_delta") and hp.early_stopping_min_delta < 0:
        errors.append(f"early_stopping_min_delta must be >= 0 (got {hp.early_stopping_min_delta})")
    return errors


def validate_hyperparameters(hp: Hyperparameters, model_max_context: int | None = None) -> Hyperparameters:
    errors = hyperparameter_errors(hp, model_max_context)
    if errors:
        raise ConfigError(errors)
    return hp


def resolve_hyperparameters(
    preset: str | None = DEFAULT_PRESET,
    overrides: dict[str, Any] | None = None,
    model_max_context: int | None = None,
) -> Hyperparameters:
    """A preset plus overrides, validated. Raises ConfigError listing every problem."""
    name = preset or DEFAULT_PRESET
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    overrides = dict(overrides or {})
    known = {f.name for f in dataclasses.fields(Hyperparameters)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"unknown hyperparameter(s) {', '.join(unknown)}; known ones are: {', '.join(sorted(known))}"
        )
    if "target_modules" in overrides and isinstance(overrides["target_modules"], (list, tuple)):
        overrides["target_modules"] = tuple(overrides["target_modules"])
    # An integer given for a float field (learning_rate=1) is fine; store it as a float.
    for f in dataclasses.fields(Hyperparameters):
        if f.name in overrides and f.type in ("float", float) and _is_int(overrides[f.name]):
            overrides[f.name] = float(overrides[f.name])
    hp = dataclasses.replace(PRESETS[name].hyperparameters, **overrides)
    return validate_hyperparameters(hp, model_max_context)


def presets_table() -> list[dict[str, Any]]:
    """Rows for documentation and forms: name, when to choose it, and its values."""
    return [
        {"name": p.name, "when_to_choose": p.when_to_choose, **p.hyperparameters.to_dict()}
        for p in PRESETS.values()
    ]
