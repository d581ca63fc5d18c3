"""Evaluation: token-weighted perplexity over the assistant tokens of the validation split."""
from __future__ import annotations

import contextlib
import math
from typing import Any

from .data import MicroBatch
from .trainer import loss_sum


def perplexity(model, batches: list[MicroBatch], device=None) -> tuple[float, int]:
    """exp(summed NLL / number of loss tokens) over all batches; (perplexity, tokens)."""
    import torch

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for b in batches:
                s, n = loss_sum(model, b, device)
                total += float(s)
                count += n
    finally:
        model.train(was_training)
    if not count:
        return float("nan"), 0
    return math.exp(total / count), count


def base_and_adapted(model, batches: list[MicroBatch], device=None) -> dict[str, Any]:
    """Perplexity with the adapter disabled (the base model) and enabled."""
    disable = getattr(model, "disable_adapter", None)
    with (disable() if disable else contextlib.nullcontext()):
        base, tokens = perplexity(model, batches, device)
    adapted, _ = perplexity(model, batches, device)
    return {
        "base_perplexity": base,
        "adapted_perplexity": adapted,
        "relative_change": (adapted - base) / base if base and math.isfinite(base) else None,
        "tokens": tokens,
    }
