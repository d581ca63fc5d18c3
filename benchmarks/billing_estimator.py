"""Estimator error over a recorded history of runs, and how learning reduces it.

    python benchmarks/billing_estimator.py [--jobs 60] [--seed 3]

The history is SYNTHETIC (no GPU runs are recorded yet): each run's "true" throughput is the
documented table's value times a hidden per-GPU factor (how much slower or faster the real stack is
than the table) times log-normal run-to-run noise (σ 8%), and its true overhead is the table's times
1.3 with the same noise. Each run goes through the real code: created and admitted (estimate
stored), moved through its states, settled (actual cost and duration metered, measured throughput
recorded, calibration recomputed). The report prints the estimate's error (estimate − actual) /
actual over the first runs (the table alone) and the last ones (after learning).

Runs on a throw-away embedded SQLite database in a temporary folder; nothing else is touched.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The hidden truth: real throughput / table throughput per GPU (unknown to the estimator).
HIDDEN_FACTOR = {"NVIDIA H100 80GB HBM3": 0.72, "NVIDIA A100-SXM4-80GB": 0.85, "NVIDIA L40S": 1.10}
OVERHEAD_FACTOR = 1.3
NOISE = 0.08
MODELS = ["meta-llama/Meta-Llama-3-8B-Instruct", "meta-llama/Meta-Llama-3-70B-Instruct"]


def setup_django(tmp: str) -> None:
    os.environ.pop("DATABASE_URL", None)
    os.environ["BRIGHTRUN_VAR_DIR"] = tmp
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    import logging

    # No channel layer runs here: the websocket pushes fail quietly instead of logging tracebacks.
    logging.getLogger("core.broadcast").setLevel(logging.ERROR)
    logging.getLogger("training.services.datasets").setLevel(logging.WARNING)
    call_command("migrate", verbosity=0)


def summary(errors: list[float]) -> str:
    if not errors:
        return "no runs"
    mae = statistics.fmean(abs(e) for e in errors)
    w10 = sum(abs(e) <= 0.10 for e in errors) / len(errors)
    w15 = sum(abs(e) <= 0.15 for e in errors) / len(errors)
    bias = statistics.fmean(errors)
    return f"n={len(errors):3d}  mean |error| {mae:6.1%}  bias {bias:+6.1%}  within ±10% {w10:5.0%}  within ±15% {w15:5.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="billing-bench-") as tmp:
        setup_django(tmp)
        from django.db import transaction

        from accounts.services import organization_get_or_create
        from billing.models import JobCost
        from billing.selectors import estimate_accuracy
        from billing.services import job_admit, job_settle
        from billing.services.estimates import config_from_job, estimate
        from gpu_worker.presets import resolve_hyperparameters
        from training.models import JobEvent, TrainingJob
        from training.services.datasets import dataset_import

        org = organization_get_or_create(slug="bench")
        dataset = dataset_import(organization=org, source=(ROOT / "training/sample_data/brightrun-sample.json").read_bytes(),
                                 filename="sample.json").dataset
        t = datetime(2026, 3, 2, tzinfo=timezone.utc)
        errors, in_range = [], []
        for n in range(args.jobs):
            gpu = rnd.choice(list(HIDDEN_FACTOR))
            overrides = {"num_epochs": rnd.choice([1.0, 2.0, 3.0, 5.0]), "max_seq_len": rnd.choice([2048, 4096, 8192])}
            with transaction.atomic():
                job = TrainingJob.objects.create(
                    organization=org, dataset=dataset, base_model=rnd.choice(MODELS), preset="balanced",
                    overrides=overrides, hyperparameters=resolve_hyperparameters("balanced", overrides).to_dict(),
                    provider="runpod", gpu_type=gpu, cloud_type="SECURE")
                job_admit(job=job)
            table = estimate(config_from_job(job), calibrated=False)
            true_tps = table.breakdown["table_tokens_per_s"] * HIDDEN_FACTOR[gpu] * math.exp(rnd.gauss(0, NOISE))
            train_s = table.training_tokens / true_tps
            overhead_s = table.breakdown["table_overhead_s"] * OVERHEAD_FACTOR * math.exp(rnd.gauss(0, NOISE))
            actual = int(round(train_s + overhead_s))
            for i, (status, at) in enumerate([("provisioning", t), ("training", t + timedelta(seconds=overhead_s * 0.8)),
                                              ("completed", t + timedelta(seconds=actual))]):
                ev = JobEvent.objects.create(job=job, event_id=f"b{n}-{i}", source="system", type="transition",
                                             attempt=1, to_status=status)
                JobEvent.objects.filter(pk=ev.pk).update(created_at=at)
            TrainingJob.objects.filter(pk=job.pk).update(
                status="completed", launched_at=t, finished_at=t + timedelta(seconds=actual), attempt=1,
                result={"tokens_per_s": true_tps, "train_tokens": table.training_tokens, "train_seconds": train_s})
            job_settle(job_id=job.pk)
            cost = JobCost.objects.get(job=job)
            errors.append(cost.duration_error)
            in_range.append(cost.est_duration_low_s <= cost.actual_duration_s <= cost.est_duration_high_s)
            t += timedelta(hours=3)
        first, last = errors[:10], errors[-20:]
        print(f"Estimator error over {args.jobs} synthetic runs (seed {args.seed}); error = (estimate − actual) / actual")
        print(f"  first 10 runs (table only, then barely calibrated): {summary(first)}")
        print(f"  last 20 runs (calibrated from history):            {summary(last)}")
        print(f"  all runs:                                          {summary(errors)}")
        print(f"  actual inside the estimate's low–high range: first 10 {sum(in_range[:10])}/10, "
              f"last 20 {sum(in_range[-20:])}/20")
        report = estimate_accuracy(organization=org)
        print(f"  report (billing.selectors.estimate_accuracy): duration {report['duration']}, cost {report['cost']}")


if __name__ == "__main__":
    main()
