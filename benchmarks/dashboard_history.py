"""The history & analysis page with 1,000 jobs: server time and queries of one request.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/brightrun REDIS_URL=redis://127.0.0.1:6379/0 \\
      .venv/bin/python benchmarks/dashboard_history.py [--jobs 1000] [--requests 10]

In a dedicated PostgreSQL database (`brightrun_bench`, created, migrated and dropped here): one
organization with `--jobs` jobs (bulk-created), a JobCost row each, and a completed validation run
for 70% of them whose metrics JSON has the size of a real run's (several metrics with intervals and
per-metric details), so reading only the primary endpoint and the gates out of it is measured.
GET /history/, /history/?sort=-quality and /history.csv go through Django's test client (the whole
middleware and template stack, no HTTP server) as a signed-in member; the target is under 1 s.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _support as S

TARGET_S = 1.0


def _metric(key, rng, n=48):
    value = rng.random()
    est = {"value": value, "low": max(0.0, value - 0.1), "high": min(1.0, value + 0.1), "n": n, "confidence": 0.95}
    return {"key": key, "title": key.replace("_", " "), "computed": True, "value": est, "base": est, "adapted": est,
            "difference": {"value": 0.1, "low": -0.02, "high": 0.2}, "notes": ["bench"],
            # what makes real runs heavy: per-item details the page must not read
            "extra": {"per_turn": [{"turn": i, "score": rng.random(), "text": "x" * 80} for i in range(n)]}}


def load(org, user, dataset, n_jobs: int, seed: int = 1) -> None:
    from billing.models import JobCost
    from training.models import TrainingJob
    from validation.models import ValidationRun

    rng = random.Random(seed)
    now = datetime.now(UTC)
    statuses = ["completed"] * 7 + ["failed", "cancelled", "training"]
    jobs = []
    for i in range(n_jobs):
        status = rng.choice(statuses)
        jobs.append(TrainingJob(
            organization=org, created_by=user, dataset=dataset, name=f"history-job-{i}", client=f"client-{i % 7}",
            base_model="meta-llama/Meta-Llama-3-8B-Instruct", preset=rng.choice(["balanced", "conservative", "aggressive"]),
            hyperparameters={"num_epochs": 2.0, "learning_rate": 2e-4, "lora_r": 16, "max_seq_len": 4096},
            provider="runpod", gpu_type="NVIDIA H100 80GB HBM3", status=status, attempt=1, last_loss=rng.random() * 2,
            result={"final_metrics": {"loss": 0.9, "valid_loss": 1.0 + rng.random()}},
            launched_at=now - timedelta(hours=n_jobs - i, minutes=40), finished_at=now - timedelta(hours=n_jobs - i)))
    TrainingJob.objects.bulk_create(jobs, batch_size=500)
    JobCost.objects.bulk_create([JobCost(job=j, organization=org, client=j.client, created_by=user,
                                         month=now.date().replace(day=1), cost=rng.randint(0, 5000) / 100)
                                 for j in jobs], batch_size=500)
    keys = ["pairwise_win_rate", "brand_voice_rate", "relevance", "diversity", "forgetting", "perplexity_ratio"]
    runs = []
    for j in jobs:
        if j.status != "completed" or rng.random() > 0.8:
            continue
        gates = [{"gate": g, "verdict": rng.choice(["pass", "fail", "inconclusive"]), "value": rng.random(), "n": 48,
                  "ci": [0.4, 0.8], "checks": [{"check": "floor", "verdict": "pass", "value": 0.7, "threshold": 0.5}]}
                 for g in ("brand_voice", "forgetting")]
        verdict = rng.choice(["pass", "fail", "inconclusive"])
        runs.append(ValidationRun(job=j, organization=org, status="completed", verdict=verdict,
                                  metrics={k: _metric(k, rng) for k in keys},
                                  summary={"verdict": verdict, "gates": gates, "controls": gates}))
    ValidationRun.objects.bulk_create(runs, batch_size=200)
    return len(runs)


def measure(client, url: str, requests: int) -> list:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times = []
    for _ in range(requests):
        t = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - t)
        assert response.status_code == 200, response.status_code
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    p50, p95 = S.percentile(times, 50), S.percentile(times, 95)
    return [url, len(queries), p50 * 1000, p95 * 1000, len(response.content),
            "yes" if p95 < TARGET_S else "NO"]


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="100 jobs, 3 requests")
    ap.add_argument("--keep-db", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.jobs, args.requests = 100, 3
    S.database_recreate()
    rows = []
    try:
        S.django_setup()
        from django.test import Client

        from benchmarks.api_latency import make_org

        org, user, dataset, _token = make_org("history")
        t = time.perf_counter()
        n_runs = load(org, user, dataset, args.jobs)
        load_s = time.perf_counter() - t
        client = Client()
        client.force_login(user)
        for url in ("/history/", "/history/?sort=-quality", "/history/?preset=balanced", "/history.csv"):
            rows.append(measure(client, url, args.requests))
    finally:
        if not args.keep_db:
            from django.db import connections

            connections.close_all()
            S.database_drop()
    me = "benchmarks/dashboard_history.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = S.table(f"History page: {args.jobs:,} jobs, {n_runs:,} validation runs; p50/p95 of {args.requests} "
                  f"requests (in-process client), queries of one request",
                  ["page", "queries", "p50 ms", "p95 ms", "bytes", f"p95 < {TARGET_S:g} s"], rows,
                  f".venv/bin/python {me.strip()}   (load: {load_s:.1f} s)")
    print(out, flush=True)
    return out


if __name__ == "__main__":
    main()
