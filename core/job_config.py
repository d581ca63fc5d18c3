"""A job's hyperparameters from a preset and overrides, checked against the base model.

A pure function of gpu_worker's presets and the model's config.json, shared by the side that
creates jobs (training.services.jobs) and the side that prices them (billing.services.estimates),
so an estimate and the job it describes resolve exactly the same configuration.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.errors import DomainError
from gpu_worker.presets import PRESETS, ConfigError, resolve_hyperparameters


class JobConfigError(DomainError):
    code = "invalid_job_config"


def model_max_context(base_model: str) -> int | None:
    """The base model's context length, read from its config.json when it is a local folder
    (no torch needed). Hub ids are checked on the pod."""
    config = Path(base_model) / "config.json"
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    value = data.get("max_position_embeddings")
    return int(value) if isinstance(value, int) else None


def job_config_resolve(*, preset: str, overrides: dict[str, Any], base_model: str):
    """The preset plus overrides, validated against the model. A preset's max_seq_len longer than
    the model's context is shortened to fit; an explicit override that does not fit is an error."""
    context = model_max_context(base_model)
    overrides = dict(overrides or {})
    if preset not in PRESETS:
        raise JobConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}", detail={"field": "preset"})
    if context and "max_seq_len" not in overrides and PRESETS[preset].hyperparameters.max_seq_len > context:
        overrides["max_seq_len"] = context
    try:
        return resolve_hyperparameters(preset, overrides, model_max_context=context)
    except ConfigError as exc:
        raise JobConfigError("invalid training configuration: " + "; ".join(exc.errors),
                             detail={"errors": exc.errors}) from exc
