"""Model loading: which precision, attention kernel and optimizer for which device, then PEFT LoRA.

`plan_model_load` is pure (no torch) so the decision table is unit-tested on any machine:

| device | quantization  | weights           | attention            | grad ckpt | optimizer        |
|--------|---------------|-------------------|----------------------|-----------|------------------|
| cuda   | auto / nf4    | 4-bit NF4, dq,bf16| flash_attention_2/sdpa | yes     | paged AdamW 8-bit|
| cuda   | none          | bf16              | flash_attention_2/sdpa | yes     | paged AdamW 8-bit|
| cpu    | auto / none   | fp32              | sdpa                 | no        | AdamW            |
| cpu    | nf4           | NoCudaFor4bit                                                         |
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .failures import ModelGated, ModelNotFound, NoCudaFor4bit
from .presets import ConfigError


@dataclass(frozen=True)
class LoadPlan:
    device: str  # "cuda" or "cpu"
    quantize_4bit: bool
    dtype: str  # torch dtype name of the non-quantized weights / compute
    attn_implementation: str
    gradient_checkpointing: bool
    optimizer: str  # "paged_adamw_8bit" or "adamw"


def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def plan_model_load(
    quantization: str,
    *,
    cuda_available: bool,
    bf16_supported: bool = True,
    flash_attn: bool = False,
) -> LoadPlan:
    if quantization not in ("auto", "nf4", "none"):
        raise ConfigError(f"quantization must be one of auto, nf4, none (got {quantization!r})")
    if not cuda_available:
        if quantization == "nf4":
            raise NoCudaFor4bit("quantization 'nf4' was requested but no CUDA device is available")
        return LoadPlan("cpu", False, "float32", "sdpa", False, "adamw")
    compute = "bfloat16" if bf16_supported else "float16"
    return LoadPlan(
        device="cuda",
        quantize_4bit=quantization in ("auto", "nf4"),
        dtype=compute,
        attn_implementation="flash_attention_2" if flash_attn and bf16_supported else "sdpa",
        gradient_checkpointing=True,
        optimizer="paged_adamw_8bit",
    )


def current_plan(quantization: str) -> LoadPlan:
    import torch

    cuda = torch.cuda.is_available()
    return plan_model_load(
        quantization,
        cuda_available=cuda,
        bf16_supported=bool(cuda and torch.cuda.is_bf16_supported()),
        flash_attn=cuda and flash_attn_available(),
    )


def resolve_model_source(base_model: str) -> tuple[str, bool]:
    """(what from_pretrained gets, whether it is a local directory)."""
    if base_model.startswith("file://"):
        from .storage import local_path

        base_model = str(local_path(base_model))
    looks_local = base_model.startswith(("/", "./", "../", "~")) or os.path.isdir(base_model)
    if looks_local:
        path = Path(base_model).expanduser()
        if not (path / "config.json").is_file():
            raise ModelNotFound(f"base model directory {path} does not exist or has no config.json")
        return str(path), True
    return base_model, False


def _hub_errors(exc: Exception, name: str) -> Exception:
    text = str(exc)
    kind = type(exc).__name__
    if kind == "GatedRepoError" or "gated repo" in text.lower() or "401" in text or "403" in text:
        return ModelGated(f"{name} is gated or needs a token: {text[:500]}")
    if kind in ("RepositoryNotFoundError", "RevisionNotFoundError") or "is not a valid model identifier" in text:
        return ModelNotFound(f"{name} was not found on the hub: {text[:500]}")
    return exc


def model_max_context(source: str, token: str | None = None) -> int | None:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source, token=token)
    except Exception as exc:
        raise _hub_errors(exc, source) from exc
    return getattr(config, "max_position_embeddings", None)


def params_from_config(config: dict[str, Any]) -> float | None:
    """Approximate parameter count (billions) of a decoder-only transformer from its config.json
    values: embeddings (+ LM head unless tied) and, per layer, attention and a gated MLP."""
    try:
        h = int(config["hidden_size"])
        layers = int(config["num_hidden_layers"])
        vocab = int(config["vocab_size"])
        inter = int(config.get("intermediate_size") or 4 * h)
        heads = int(config.get("num_attention_heads") or 1)
        kv = int(config.get("num_key_value_heads") or heads)
    except (KeyError, TypeError, ValueError):
        return None
    head_dim = int(config.get("head_dim") or h // heads)
    attention = h * heads * head_dim * 2 + h * kv * head_dim * 2
    per_layer = attention + 3 * h * inter
    embeddings = vocab * h * (1 if config.get("tie_word_embeddings") else 2)
    return (embeddings + layers * per_layer) / 1e9


def model_params_b(source: str, token: str | None = None) -> float | None:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source, token=token)
    except Exception:  # noqa: BLE001 - the size only picks a default strategy
        return None
    return params_from_config(config.to_dict())


def load_tokenizer(source: str, token: str | None = None):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, token=token)
    except Exception as exc:
        raise _hub_errors(exc, source) from exc
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"the tokenizer of {source} has no chat template; choose an instruct/chat model")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(source: str, plan: LoadPlan, token: str | None = None, *, for_fsdp: bool = False):
    """`for_fsdp`: the 4-bit weights are stored in the compute dtype, so FSDP can flatten and shard
    them together with the bf16 parameters (FSDP-QLoRA); without it FSDP refuses uint8 storage."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {
        "token": token,
        "dtype": getattr(torch, plan.dtype),
        "attn_implementation": plan.attn_implementation,
    }
    if plan.device == "cuda":
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    if plan.quantize_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=getattr(torch, plan.dtype),
            **({"bnb_4bit_quant_storage": getattr(torch, plan.dtype)} if for_fsdp else {}),
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except Exception as exc:
        raise _hub_errors(exc, source) from exc
    model.config.use_cache = False
    return model


def reload_for_evaluation(source: str, plan: LoadPlan, adapter_dir, token: str | None = None):
    """A fresh base model with the saved adapter, on this process's GPU (after FSDP training)."""
    import gc

    import torch
    from peft import PeftModel

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    base = load_base_model(source, plan, token)
    return PeftModel.from_pretrained(base, str(adapter_dir))


def present_target_modules(model, wanted: tuple[str, ...]) -> list[str]:
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    return [m for m in wanted if m in names]


def add_lora(model, hp, plan: LoadPlan):
    """Wrap `model` with a fresh LoRA adapter. Consumes torch RNG (the adapter's init)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    targets = present_target_modules(model, tuple(hp.target_modules))
    if not targets:
        raise ConfigError(
            f"none of target_modules {list(hp.target_modules)} exist in the model; "
            "use the names of its linear layers (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj for Llama)"
        )
    if plan.quantize_4bit:
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=plan.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif plan.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    config = LoraConfig(
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def make_optimizer(model, hp, plan: LoadPlan):
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if plan.optimizer == "paged_adamw_8bit":
        import bitsandbytes as bnb

        return bnb.optim.PagedAdamW8bit(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)
    return torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)


def lr_lambda(scheduler: str, warmup_steps: int, total_steps: int):
    import math

    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if scheduler == "constant":
            return 1.0
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        if scheduler == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


def make_scheduler(optimizer, hp, total_steps: int):
    import math

    import torch

    warmup = math.ceil(hp.warmup_ratio * total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(hp.lr_scheduler, warmup, total_steps))
