"""Estimator accuracy as users see it: median and 90th percentile of |actual − estimate| ÷ actual
on completed jobs of the same kind, over scripted runs on the priced local provider.

    python benchmarks/billing_accuracy.py [--jobs 36] [--seed 5] [--rate 1.20]

Each run goes through the real billing code on the local provider priced at `--rate` $/h
(LOCAL_POD_RATE_PER_HOUR): created and admitted (the estimate it shows is stored), its pod
recorded as started and gone (the local provider's pod rate), moved through its states, settled
(actual cost from its pod segment, measured throughput recorded, calibration recomputed). The
runs are SCRIPTED: each kind (GPU label × model size) has a hidden "true" throughput factor
against the table and 8% log-normal run-to-run noise; the true overhead is 1.3× the table's.
After each run the figure the estimate API shows for that kind
(`billing.selectors.estimate_accuracy_for_kind`) is read; the report prints it after 1, 3 and
all completed jobs of each kind, and the error of the estimates made once 3 jobs of the kind had
completed (target: 90th percentile within 15%).

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
KINDS = [("NVIDIA H100 80GB HBM3", "meta-llama/Meta-Llama-3-8B-Instruct", 0.72),
         ("NVIDIA L40S", "meta-llama/Meta-Llama-3-8B-Instruct", 1.10),
         ("NVIDIA A100-SXM4-80GB", "meta-llama/Meta-Llama-3-70B-Instruct", 0.85)]
NOISE = 0.08
OVERHEAD_FACTOR = 1.3


def setup_django(tmp: str, rate: float) -> None:
    os.environ.pop("DATABASE_URL", None)
    os.environ["BRIGHTRUN_VAR_DIR"] = tmp
    os.environ["LOCAL_POD_RATE_PER_HOUR"] = str(rate)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    import logging

    logging.disable(logging.WARNING)
    call_command("migrate", verbosity=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=36)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--rate", type=float, default=1.20)
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="billing-accuracy-") as tmp:
        setup_django(tmp, args.rate)
        from django.db import transaction

        from accounts.services import organization_get_or_create
        from billing.models import JobCost
        from billing.selectors import estimate_accuracy_for_kind
        from billing.services import job_admit, job_settle
        from billing.services.estimates import config_from_job, estimate
        from gpu_worker.presets import resolve_hyperparameters
        from training.models import JobEvent, TrainingJob
        from training.services.datasets import dataset_import

        org = organization_get_or_create(slug="accuracy-bench")
        dataset = dataset_import(organization=org, source=(ROOT / "training/sample_data/brightrun-sample.json").read_bytes(),
                                 filename="sample.json").dataset
        t = datetime(2026, 3, 2, tzinfo=timezone.utc)
        shown: dict[tuple, list[dict]] = {}
        late_errors: dict[tuple, list[float]] = {}
        for n in range(args.jobs):
            gpu, model, factor = KINDS[n % len(KINDS)]
            overrides = {"num_epochs": rnd.choice([1.0, 2.0, 3.0]), "max_seq_len": rnd.choice([2048, 4096])}
            with transaction.atomic():
                job = TrainingJob.objects.create(
                    organization=org, dataset=dataset, base_model=model, preset="balanced", overrides=overrides,
                    hyperparameters=resolve_hyperparameters("balanced", overrides).to_dict(),
                    provider="local", gpu_type=gpu, cloud_type="SECURE")
                job_admit(job=job)
            completed_before = len(shown.get((gpu, model), []))
            table = estimate(config_from_job(job), calibrated=False)
            true_tps = table.breakdown["table_tokens_per_s"] * factor * math.exp(rnd.gauss(0, NOISE))
            train_s = table.training_tokens / true_tps
            overhead_s = table.breakdown["table_overhead_s"] * OVERHEAD_FACTOR * math.exp(rnd.gauss(0, NOISE))
            actual = int(round(train_s + overhead_s))
            pod = f"local-{n}"
            rows = [("transition", "provisioning", t, {}),
                    ("pod_launched", "", t, {"pod_id": pod, "pod_name": f"brightrun-{job.pk}-1", "cost_per_hr": args.rate,
                                             "started_at": t.timestamp(), "gpu_type": gpu, "cloud_type": "SECURE",
                                             "spot": False}),
                    ("transition", "training", t + timedelta(seconds=overhead_s * 0.8), {}),
                    ("transition", "completed", t + timedelta(seconds=actual), {}),
                    ("pod_gone", "", t + timedelta(seconds=actual),
                     {"pod_id": pod, "ended_at": (t + timedelta(seconds=actual)).timestamp(), "how": "exited"})]
            for i, (kind, to, at, data) in enumerate(rows):
                ev = JobEvent.objects.create(job=job, event_id=f"a{n}-{i}", source="system", type=kind, attempt=1,
                                             to_status=to, data=data)
                JobEvent.objects.filter(pk=ev.pk).update(created_at=at)
            TrainingJob.objects.filter(pk=job.pk).update(
                status="completed", launched_at=t, finished_at=t + timedelta(seconds=actual), attempt=1,
                result={"tokens_per_s": true_tps, "train_tokens": table.training_tokens, "train_seconds": train_s})
            job_settle(job_id=job.pk, now=t + timedelta(seconds=actual + 1))
            cost = JobCost.objects.get(job=job)
            # On duration, as the API does for jobs under $1: the sample dataset's runs cost cents.
            error = abs(cost.actual_duration_s - cost.est_duration_s) / cost.actual_duration_s
            if completed_before >= 3:
                late_errors.setdefault((gpu, model), []).append(error)
            shown.setdefault((gpu, model), []).append(
                estimate_accuracy_for_kind(organization=org, gpu_type=gpu, base_model=model, provider="local"))
            t += timedelta(hours=3)

        print(f"Estimator accuracy on the priced local provider (${args.rate:.2f}/h), {args.jobs} scripted runs "
              f"(seed {args.seed}); error = |actual − estimate| ÷ actual (on duration: these runs cost cents, "
              "and at one rate the cost error is the duration error)")
        print(f"{'kind':48s} {'after 1':>15s} {'after 3':>15s} {'after all':>19s} {'estimates made after ≥3 done':>30s}")
        everything = []
        for (gpu, model), reports in shown.items():
            def cell(r):
                return f"{r['median']:.0%} / {r['p90']:.0%}" if r["completed_jobs"] else "-"
            late = late_errors.get((gpu, model), [])
            everything += late
            late_text = (f"n={len(late)} med {statistics.median(late):.1%} p90 "
                         f"{sorted(late)[max(0, math.ceil(0.9 * len(late)) - 1)]:.1%}") if late else "-"
            size = reports[-1]["kind"]["size_class"]
            print(f"{gpu + ' / ' + size:48s} {cell(reports[0]):>15s} {cell(reports[min(2, len(reports) - 1)]):>15s} "
                  f"{cell(reports[-1]) + f' (n={len(reports)})':>19s} {late_text:>30s}")
        if everything:
            p90 = sorted(everything)[max(0, math.ceil(0.9 * len(everything)) - 1)]
            print(f"all kinds, estimates made after ≥3 completed jobs of their kind: n={len(everything)}, median "
                  f"{statistics.median(everything):.1%}, p90 {p90:.1%} (target p90 ≤ 15%)")
        print("columns 'after k': median / 90th percentile as the estimate API shows them after k completed jobs")
        print(f"command: python benchmarks/billing_accuracy.py --jobs {args.jobs} --seed {args.seed} --rate {args.rate}")


if __name__ == "__main__":
    main()
