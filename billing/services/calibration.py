"""Learning throughput from history: each completed job leaves a sample (measured tokens/s and
overhead beside the table's prediction); the correction for its (GPU, size class, quantization)
and the global one are recomputed from the latest samples.

The correction is a geometric mean of measured/predicted, shrunk toward its prior
(the global correction for a key, the table itself for the global one) with weight n / (n + k):
one odd run moves the estimate a little, a consistent history moves it all the way.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from django.db import transaction

from billing import tables
from billing.models import ThroughputCalibration, ThroughputSample

GLOBAL = "*"


@dataclass(frozen=True)
class Calibration:
    tps_factor: float = 1.0
    overhead_factor: float = 1.0
    log_sd: float | None = None
    samples: int = 0
    scope: str = "table"  # "table" (no history), "global" (all GPUs), "key" (this GPU and size)


def calibration_for(*, gpu_type: str, size_class: str, quantization: str) -> Calibration:
    rows = {
        (r.gpu_type, r.size_class, r.quantization): r
        for r in ThroughputCalibration.objects.filter(
            gpu_type__in=[gpu_type, GLOBAL], size_class__in=[size_class, GLOBAL], quantization__in=[quantization, GLOBAL]
        )
    }
    key = rows.get((gpu_type, size_class, quantization))
    if key is not None and key.samples:
        return Calibration(key.tps_factor, key.overhead_factor, key.log_sd, key.samples, "key")
    glob = rows.get((GLOBAL, GLOBAL, GLOBAL))
    if glob is not None and glob.samples:
        return Calibration(glob.tps_factor, glob.overhead_factor, glob.log_sd, glob.samples, "global")
    return Calibration()


def _shrunk_mean(logs: list[float], prior_log: float) -> float:
    k = tables.CALIBRATION_PRIOR_SAMPLES
    return (sum(logs) + k * prior_log) / (len(logs) + k)


def _sd(logs: list[float]) -> float | None:
    return statistics.stdev(logs) if len(logs) >= 2 else None


def _logs(samples, measured: str, predicted: str) -> list[float]:
    out = []
    for s in samples:
        m, p = getattr(s, measured), getattr(s, predicted)
        if m and p and m > 0 and p > 0:
            out.append(math.log(m / p))
    return out


@transaction.atomic
def calibration_recompute(*, gpu_type: str, size_class: str, quantization: str) -> Calibration:
    """Recompute the global correction and the one for this key from the latest samples."""
    window = tables.CALIBRATION_WINDOW
    everything = list(ThroughputSample.objects.order_by("-created_at")[:window])
    g_tps = _logs(everything, "tokens_per_s", "table_tokens_per_s")
    g_over = _logs(everything, "overhead_s", "table_overhead_s")
    g_tps_log = _shrunk_mean(g_tps, 0.0) if g_tps else 0.0
    g_over_log = _shrunk_mean(g_over, 0.0) if g_over else 0.0
    ThroughputCalibration.objects.update_or_create(
        gpu_type=GLOBAL, size_class=GLOBAL, quantization=GLOBAL,
        defaults={"tps_factor": math.exp(g_tps_log), "overhead_factor": math.exp(g_over_log),
                  "log_sd": _sd(g_tps), "samples": len(g_tps)},
    )
    mine = list(ThroughputSample.objects.filter(gpu_type=gpu_type, size_class=size_class, quantization=quantization)
                .order_by("-created_at")[:window])
    tps = _logs(mine, "tokens_per_s", "table_tokens_per_s")
    over = _logs(mine, "overhead_s", "table_overhead_s")
    row, _ = ThroughputCalibration.objects.update_or_create(
        gpu_type=gpu_type, size_class=size_class, quantization=quantization,
        defaults={
            "tps_factor": math.exp(_shrunk_mean(tps, g_tps_log)) if tps else math.exp(g_tps_log),
            "overhead_factor": math.exp(_shrunk_mean(over, g_over_log)) if over else math.exp(g_over_log),
            "log_sd": _sd(tps) if len(tps) >= 3 else _sd(g_tps),
            "samples": len(tps),
        },
    )
    return Calibration(row.tps_factor, row.overhead_factor, row.log_sd, row.samples, "key")


def calibration_rebuild() -> int:
    """Recompute every key from scratch (after deleting samples, or from the command line)."""
    keys = set(ThroughputSample.objects.values_list("gpu_type", "size_class", "quantization"))
    ThroughputCalibration.objects.all().delete()
    for gpu_type, size, quant in keys:
        calibration_recompute(gpu_type=gpu_type, size_class=size, quantization=quant)
    return len(keys)
