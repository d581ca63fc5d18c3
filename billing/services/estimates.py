"""The estimator: duration and cost of a training configuration, each as low / point / high, with
every assumption spelled out. docs/billing.md has the formula; billing/tables.py the numbers.

    tokens    = train-split tokens per epoch (per conversation, as the worker trains) × epochs
    tok/s     = table(model size, quantization) × GPU relative speed × sequence factor × calibration
    training  = tokens ÷ tok/s
    overhead  = (pod start + model download + load + preprocessing + finalizing + evaluation) × calibration
    duration  = training + overhead            cost = duration × $/h of the pod (per second)
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings

from billing import tables
from billing.errors import EstimateError
from billing.money import cents, to_decimal
from billing.services.calibration import Calibration, calibration_for
from billing.services.catalog import free_providers, gpu_rate, gpu_type_get
from core.job_config import job_config_resolve
from gpu_worker.contracts import Hyperparameters
from gpu_worker.distributed import plan_parallel


@dataclass(frozen=True)
class EstimateConfig:
    """Everything the estimate depends on (no database rows: build it with `config_from_job` or
    `config_from_request`)."""

    base_model: str
    hyperparameters: Hyperparameters
    train_tokens: int
    val_tokens: int
    train_conversations: int
    gpu_type: str
    cloud_type: str = "SECURE"
    spot: bool = False
    bid_per_gpu: Decimal | None = None
    provider: str = "runpod"
    quantization: str = "nf4"
    token_method: str = "estimate"
    checkpoint_every: int = 100
    gpu_count: int = 1


@dataclass(frozen=True)
class Range:
    low: Any
    point: Any
    high: Any

    def to_dict(self) -> dict[str, Any]:
        conv = (lambda v: str(v)) if isinstance(self.point, Decimal) else (lambda v: v)
        return {"low": conv(self.low), "point": conv(self.point), "high": conv(self.high)}


@dataclass(frozen=True)
class Estimate:
    duration_s: Range          # whole seconds
    cost: Range                # Decimal dollars, to the cent
    rate_per_hour: Decimal
    gpu_type: str
    cloud_type: str
    spot: bool
    tokens_per_s: float
    training_tokens: int
    breakdown: dict[str, float]
    assumptions: list[str]
    calibration: dict[str, Any]
    fits_memory: bool = True
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration_s.to_dict(),
            "cost": self.cost.to_dict(),
            "currency": "USD",
            "rate_per_hour": str(self.rate_per_hour),
            "gpu_type": self.gpu_type,
            "cloud_type": self.cloud_type,
            "spot": self.spot,
            "tokens_per_s": round(self.tokens_per_s, 1),
            "training_tokens": self.training_tokens,
            "breakdown": {k: round(v, 1) for k, v in self.breakdown.items()},
            "assumptions": list(self.assumptions),
            "calibration": dict(self.calibration),
            "fits_memory": self.fits_memory,
            "warnings": list(self.warnings),
        }


def _quantization(config: EstimateConfig) -> str:
    q = (config.quantization or "nf4").lower()
    return "none" if q in ("none", "bf16", "fp16") else "nf4"


def _fmt_s(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def estimate(config: EstimateConfig, *, calibrated: bool = True) -> Estimate:
    """Duration and cost of `config`. `calibrated=False` gives the documented table alone (what
    calibration compares measurements against). Raises EstimateError when no price is known."""
    hp = config.hyperparameters
    quant = _quantization(config)
    params_b, size_known = tables.model_params_b(config.base_model)
    size = tables.size_class(params_b)
    cloud = (config.cloud_type or "SECURE").upper()
    gpu = gpu_type_get(config.gpu_type)
    free = config.provider in free_providers()
    rate = gpu_rate(gpu=gpu, gpu_id=config.gpu_type, cloud_type=cloud, spot=config.spot,
                    bid_per_gpu=config.bid_per_gpu, provider=config.provider)
    assumptions: list[str] = []
    warnings: list[str] = []

    epochs = float(hp.num_epochs)
    training_tokens = int(round(config.train_tokens * epochs))
    assumptions.append(
        f"tokens: {config.train_tokens:,} per epoch in the train split ({config.token_method} count, each "
        f"conversation once, as the worker trains) × {epochs:g} epochs = {training_tokens:,}"
    )
    if size_known:
        assumptions.append(f"model: {params_b:g}B parameters (from the name {config.base_model!r}), {quant} base weights")
    else:
        assumptions.append(f"model: size not readable from {config.base_model!r}; assumed {params_b:g}B parameters")

    speed = float(gpu.relative_speed) if gpu is not None else 0.5
    gpu_label = gpu.display_name if gpu is not None else config.gpu_type
    seq_factor = tables.seq_len_factor(int(hp.max_seq_len))
    n_gpus = max(1, int(config.gpu_count))
    parallel = plan_parallel("auto", gpu_count=n_gpus, params_b=params_b)
    scaling = n_gpus * tables.MULTI_GPU_EFFICIENCY[parallel] if n_gpus > 1 else 1.0
    table_tps = tables.table_tokens_per_s(params_b, quant) * speed * seq_factor * scaling
    cal = calibration_for(gpu_type=config.gpu_type, size_class=size, quantization=quant) if calibrated else Calibration()
    tps = table_tps * cal.tps_factor
    assumptions.append(
        f"throughput: {tps:,.0f} tokens/s = table {tables.table_tokens_per_s(params_b, quant):,.0f} (H100, {quant}) "
        f"× {gpu_label} speed {speed:g} × sequence factor {seq_factor:.2f} (max_seq_len {hp.max_seq_len})"
        + (f" × calibration {cal.tps_factor:.2f} from {cal.samples} completed job(s)"
           f" ({'this GPU and model size' if cal.scope == 'key' else 'all GPUs'})" if cal.samples else
           " (no completed jobs to calibrate from yet)")
    )
    if n_gpus > 1:
        assumptions.append(
            f"{n_gpus} GPUs ({parallel.upper()}): throughput × {n_gpus} × efficiency "
            f"{tables.MULTI_GPU_EFFICIENCY[parallel]:g} (an assumption until measured by the GPU benchmark); "
            f"the pod costs {n_gpus} × the per-GPU rate")

    train_s = training_tokens / tps if tps > 0 else 0.0
    weights_gb = params_b * 2.0
    setup_s = (tables.POD_START_S.get(cloud, tables.POD_START_S["SECURE"]) + weights_gb / tables.DOWNLOAD_GB_PER_S
               + weights_gb / tables.LOAD_GB_PER_S + tables.PREPROCESS_S)
    eval_s = tables.EVAL_PASSES * config.val_tokens / (tps * tables.EVAL_SPEEDUP) if tps > 0 else 0.0
    overhead_table = setup_s + tables.FINALIZE_S + eval_s
    overhead_s = overhead_table * cal.overhead_factor
    assumptions.append(
        f"setup per attempt: pod start {_fmt_s(tables.POD_START_S.get(cloud, 90))} ({cloud.lower()} cloud), "
        f"download {weights_gb:.0f} GB at {tables.DOWNLOAD_GB_PER_S:g} GB/s, load at {tables.LOAD_GB_PER_S:g} GB/s, "
        f"preprocessing {_fmt_s(tables.PREPROCESS_S)}: {_fmt_s(setup_s)}; finalizing {_fmt_s(tables.FINALIZE_S)}"
    )
    assumptions.append(
        f"evaluation: base and adapted model over {config.val_tokens:,} validation tokens, forward only: {_fmt_s(eval_s)}"
        + (f"; overhead × calibration {cal.overhead_factor:.2f}" if cal.samples and abs(cal.overhead_factor - 1) > 0.005 else "")
    )

    # The range: throughput ± spread (wider with little history), setup −20%/+50%.
    k = tables.CALIBRATION_PRIOR_SAMPLES
    measured_spread = max(tables.MIN_THROUGHPUT_SPREAD, 1.645 * cal.log_sd) if cal.log_sd is not None else tables.PRIOR_THROUGHPUT_SPREAD
    spread = (cal.samples * min(measured_spread, 1.0) + k * tables.PRIOR_THROUGHPUT_SPREAD) / (cal.samples + k)
    point = train_s + overhead_s
    low = train_s / (1 + spread) + overhead_s * tables.SETUP_LOW
    high = train_s * (1 + spread) + overhead_s * tables.SETUP_HIGH
    if config.spot:
        micro, accum = int(hp.micro_batch_size), int(hp.gradient_accumulation_steps)
        steps_per_epoch = max(1, math.ceil(max(1, config.train_conversations) / max(1, micro * accum)))
        total_steps = max(1, math.ceil(steps_per_epoch * epochs))
        redo_s = train_s * min(1.0, config.checkpoint_every / total_steps)
        extra = tables.SPOT_INTERRUPTIONS_IN_HIGH * (setup_s * cal.overhead_factor + redo_s)
        high += extra
        assumptions.append(f"spot: the high end allows {tables.SPOT_INTERRUPTIONS_IN_HIGH} interruption "
                           f"(a new setup and up to {config.checkpoint_every} steps redone: {_fmt_s(extra)})")
    assumptions.append(f"range: throughput ±{spread:.0%}, overhead −{1 - tables.SETUP_LOW:.0%}/+{tables.SETUP_HIGH - 1:.0%}")
    assumptions.extend(rate.notes)
    if not free:
        assumptions.append("billed per second from pod start to pod end, every attempt included")

    fits = True
    if gpu is not None and gpu.memory_gb:
        need = tables.memory_needed_gb(params_b, quant)
        if parallel == "fsdp":  # weights and optimizer sharded; the CUDA context is per GPU
            need = (need - tables.MEMORY_FIXED_GB) / n_gpus + tables.MEMORY_FIXED_GB
        if need > gpu.memory_gb:
            fits = False
            warnings.append(f"{params_b:g}B in {quant} needs about {need:.0f} GB; {gpu_label} has {gpu.memory_gb} GB: "
                            "choose a GPU with more memory or a smaller model")

    duration = Range(int(math.floor(low)), int(round(point)), int(math.ceil(high)))
    pod_rate = rate.per_hour * n_gpus
    cost = Range(*(cents(to_decimal(s) * pod_rate / Decimal(3600)) for s in (duration.low, duration.point, duration.high)))
    return Estimate(
        duration_s=duration, cost=cost, rate_per_hour=pod_rate, gpu_type=config.gpu_type, cloud_type=cloud,
        spot=config.spot, tokens_per_s=tps, training_tokens=training_tokens,
        breakdown={"setup_s": setup_s * cal.overhead_factor, "training_s": train_s,
                   "evaluation_s": eval_s * cal.overhead_factor, "finalizing_s": tables.FINALIZE_S * cal.overhead_factor,
                   "overhead_s": overhead_s, "table_tokens_per_s": table_tps, "table_overhead_s": overhead_table},
        assumptions=assumptions,
        calibration={"scope": cal.scope, "samples": cal.samples, "tps_factor": round(cal.tps_factor, 4),
                     "overhead_factor": round(cal.overhead_factor, 4), "spread": round(spread, 4)},
        fits_memory=fits, warnings=warnings,
    )


def _dataset_tokens(dataset) -> tuple[int, int, str]:
    stats = dataset.stats or {}
    tokens = stats.get("tokens") or {}
    train = stats.get("train_tokens")
    val = stats.get("val_tokens")
    if train is None:
        per_epoch = tokens.get("per_epoch")
        if per_epoch is None:
            raise EstimateError(f"dataset {dataset.pk} has no token statistics; re-import it to estimate a run",
                                code="dataset_without_stats")
        share = dataset.train_conversations / max(1, dataset.conversation_count)
        train, val = int(per_epoch * share), int(per_epoch * (1 - share))
    return int(train), int(val or 0), tokens.get("method", "estimate")


def config_from_job(job) -> EstimateConfig:
    hp = Hyperparameters.from_dict(job.hyperparameters or {})
    train, val, method = _dataset_tokens(job.dataset)
    return EstimateConfig(
        base_model=job.base_model, hyperparameters=hp, train_tokens=train, val_tokens=val,
        train_conversations=job.dataset.train_conversations, gpu_type=job.gpu_type, cloud_type=job.cloud_type,
        spot=job.spot, bid_per_gpu=job.bid_per_gpu, provider=job.provider, token_method=method,
        checkpoint_every=getattr(settings, "CHECKPOINT_EVERY_STEPS", 100), gpu_count=job.gpu_count,
    )


def config_from_request(*, dataset, base_model: str, preset: str | None = None, overrides: dict | None = None,
                        gpu_type: str | None = None, cloud_type: str = "SECURE", spot: bool = False,
                        bid_per_gpu=None, provider: str | None = None, quantization: str = "nf4",
                        gpu_count: int = 1) -> EstimateConfig:
    """The configuration a new-job form describes. Hyperparameters are resolved and validated
    exactly as job_create resolves them (the model's context shortens a preset's max_seq_len)."""
    hp = job_config_resolve(preset=preset or "balanced", overrides=overrides or {},
                            base_model=base_model or settings.DEFAULT_BASE_MODEL)
    train, val, method = _dataset_tokens(dataset)
    return EstimateConfig(
        base_model=base_model or settings.DEFAULT_BASE_MODEL, hyperparameters=hp, train_tokens=train, val_tokens=val,
        train_conversations=dataset.train_conversations, gpu_type=gpu_type or settings.DEFAULT_GPU_TYPE,
        cloud_type=(cloud_type or "SECURE").upper(), spot=bool(spot),
        bid_per_gpu=to_decimal(bid_per_gpu) if bid_per_gpu not in (None, "") else None,
        provider=provider or settings.GPU_PROVIDER, quantization=quantization, token_method=method,
        checkpoint_every=getattr(settings, "CHECKPOINT_EVERY_STEPS", 100), gpu_count=int(gpu_count or 1),
    )


def with_changes(config: EstimateConfig, **changes) -> EstimateConfig:
    """A copy of `config`; `num_epochs=` changes the hyperparameters."""
    hp_changes = {k: changes.pop(k) for k in list(changes) if k in {f.name for f in dataclasses.fields(Hyperparameters)}}
    if hp_changes:
        changes["hyperparameters"] = dataclasses.replace(config.hyperparameters, **hp_changes)
    return dataclasses.replace(config, **changes)
