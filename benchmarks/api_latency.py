"""API latency and query counts, small data vs 1,000 jobs and 1,000,000 metric points.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/brightrun REDIS_URL=redis://127.0.0.1:6379/0 \\
      .venv/bin/python benchmarks/api_latency.py [--jobs 1000] [--points 1000000] [--requests 40]

In a dedicated PostgreSQL database (`brightrun_bench`, created, migrated and dropped here):
  small  an organization with 10 jobs, the longest with 1,000 metric points (one pod event per point)
  large  then, bulk-loaded with COPY: another organization with `--jobs` jobs and `--points` metric
         points, one of them long (`--long-share` of the points) and a pod event (JobEvent) per point
Each endpoint is called `--requests` times in this process through Django's test client (the whole
middleware, DRF and serialization stack; no HTTP server), token-authenticated; the table gives p50/p95
latency, the queries of one request, and the size of the answer.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _support as S  # noqa: E402

METRIC_KEYS = ("loss", "learning_rate", "grad_norm", "tokens_per_s", "epoch", "gpu_memory_mb", "eta_s", "total_steps")


def make_org(slug: str):
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from accounts.services import membership_grant, organization_get_or_create
    from training.services.datasets import dataset_import

    org = organization_get_or_create(slug=slug, name=slug.title())
    user = get_user_model().objects.create_user(f"{slug}-user", password="bench-pass-1")
    membership_grant(user=user, organization=org, role="admin")
    token = Token.objects.create(user=user)
    sample = S.ROOT / "training" / "sample_data" / "brightrun-sample.json"
    dataset = dataset_import(organization=org, source=sample.read_bytes(), filename="sample.json").dataset
    return org, user, dataset, token.key


def load(org, user, dataset, n_jobs: int, n_points: int, long_share: float, seed: int = 1) -> str:
    """Jobs with bulk_create, JobCost rows, then metric points and pod events with COPY. Returns the
    id of the longest job."""
    from django.db import connection

    from billing.models import JobCost
    from training.models import TrainingJob

    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    statuses = ["completed"] * 6 + ["failed", "cancelled", "training", "queued"]
    jobs = []
    for i in range(n_jobs):
        status = "training" if i == 0 else rng.choice(statuses)
        jobs.append(TrainingJob(
            organization=org, created_by=user, dataset=dataset, name=f"{org.slug}-job-{i}", client=f"client-{i % 7}",
            base_model="meta-llama/Meta-Llama-3-8B-Instruct", preset="balanced", hyperparameters={"num_epochs": 2},
            provider="runpod", gpu_type="NVIDIA H100 80GB HBM3", status=status, attempt=1,
            current_step=0, total_steps=0, last_loss=rng.random() * 3,
            launched_at=now - timedelta(hours=n_jobs - i), finished_at=None if status in ("training", "queued") else now))
    TrainingJob.objects.bulk_create(jobs, batch_size=500)
    # created_at is auto_now_add: spread it so ordering by it means something.
    JobCost.objects.bulk_create([JobCost(job=j, organization=org, client=j.client, created_by=user,
                                         month=now.date().replace(day=1), cost=rng.randint(0, 5000) / 100)
                                 for j in jobs], batch_size=500)
    long_n = max(1, int(n_points * long_share)) if n_jobs > 1 else n_points
    rest = n_points - long_n
    per_job = [long_n] + [rest // (n_jobs - 1) + (1 if k < rest % (n_jobs - 1) else 0) for k in range(n_jobs - 1)] \
        if n_jobs > 1 else [n_points]
    with connection.cursor() as cursor:
        raw = cursor.connection
        with raw.cursor() as cur:
            with cur.copy("COPY training_metricpoint (job_id, step, attempt, values, created_at) FROM STDIN") as copy:
                for job, n in zip(jobs, per_job):
                    for step in range(1, n + 1):
                        values = {"loss": round(2.5 * 0.9995 ** step + rng.random() * 0.05, 5), "learning_rate": 2e-4,
                                  "grad_norm": round(0.3 + rng.random() * 0.2, 4), "tokens_per_s": 4000.0 + rng.random() * 500,
                                  "epoch": step / max(1, n) * 2, "gpu_memory_mb": 11234.0, "eta_s": float(n - step),
                                  "total_steps": n}
                        copy.write_row((job.pk, step, 1, json.dumps(values), now))
            with cur.copy("COPY training_jobevent (job_id, event_id, source, type, attempt, seq, step, from_status, "
                          "to_status, message, data, pod_timestamp, created_at) FROM STDIN") as copy:
                for job, n in zip(jobs, per_job):
                    t0 = now - timedelta(seconds=n + 100)
                    seq = 0
                    for to in ("provisioning", "preprocessing", "model_loading", "training"):
                        seq += 1
                        copy.write_row((job.pk, f"transition-{job.pk.hex[:8]}-{seq}", "system", "transition", 1, 0, 0, "",
                                        to, "bench", "{}", None, t0 + timedelta(seconds=seq)))
                    for step in range(1, n + 1):
                        seq += 1
                        kind = "checkpoint_saved" if step % 100 == 0 else "metrics"
                        copy.write_row((job.pk, f"evt_{job.pk}_1_{seq}", "pod", kind, 1, seq, step, "", "", "",
                                        json.dumps({"step": step}), time.time(), t0 + timedelta(seconds=10 + step)))
    TrainingJob.objects.filter(pk=jobs[0].pk).update(current_step=per_job[0], total_steps=per_job[0] * 2)
    # COPY bypasses the pod-event path, which keeps the charts' rollups: build them as the backfill does.
    from training.services.metric_rollups import metric_rollups_rebuild

    t = time.perf_counter()
    for job in jobs:
        metric_rollups_rebuild(job_id=job.pk)
    print(f"rollups of {n_jobs} jobs, {n_points:,} points: {time.perf_counter() - t:.0f} s", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return str(jobs[0].pk)


def measure(token: str, job_id: str, n: int) -> list[list]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Token {token}")
    endpoints = [
        ("job list", "/api/v1/jobs/"),
        ("job list ?status=completed&ordering=-cost", "/api/v1/jobs/?status=completed&ordering=-cost"),
        ("job detail", f"/api/v1/jobs/{job_id}/"),
        ("metric series (4 keys, 500 pts)", f"/api/v1/jobs/{job_id}/metrics/series/"),
        ("metrics tail (?after_step)", None),
        ("events (first page)", f"/api/v1/jobs/{job_id}/events/"),
    ]
    from training.models import MetricPoint

    last = MetricPoint.objects.filter(job_id=job_id).order_by("-step").values_list("step", flat=True).first() or 0
    rows = []
    for name, url in endpoints:
        url = url or f"/api/v1/jobs/{job_id}/metrics/?after_step={max(0, last - 100)}"
        r = client.get(url)  # warm
        assert r.status_code == 200, (url, r.status_code, r.content[:300])
        with CaptureQueriesContext(connection) as q:
            r = client.get(url)
        n_queries = len(q.captured_queries)  # now: the next request resets the log
        body = r.content
        times = []
        for _ in range(n):
            t = time.perf_counter()
            client.get(url)
            times.append((time.perf_counter() - t) * 1000)
        size = ""
        if "series" in url:
            data = json.loads(body)
            size = f"{max(len(v) for v in data['series'].values())} pts/series"
        rows.append([name, n_queries, S.percentile(times, 50), S.percentile(times, 95), len(body), size])
    # The job page's data and the websocket's first message (selectors.job_snapshot): recent
    # events, checkpoints, the chart series, the cost.
    from training import selectors
    from training.models import TrainingJob

    job = TrainingJob.objects.get(pk=job_id)
    with CaptureQueriesContext(connection) as q:
        snapshot = selectors.job_snapshot(job=job)
    n_queries = len(q.captured_queries)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        selectors.job_snapshot(job=job)
        times.append((time.perf_counter() - t) * 1000)
    rows.append(["job snapshot (ws connect, job page)", n_queries, S.percentile(times, 50), S.percentile(times, 95),
                 len(json.dumps(snapshot)), f"{len(snapshot['events'])} events"])
    return rows


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--long-share", type=float, default=0.2, help="share of the points in one long job")
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--quick", action="store_true", help="100 jobs, 50,000 points, 10 requests")
    ap.add_argument("--keep-db", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.jobs, args.points, args.requests = 100, 50_000, 10
    S.database_recreate()
    rows = []
    try:
        S.django_setup()
        org, user, dataset, token = make_org("small")
        small_job = load(org, user, dataset, 10, 1_000 + 9 * 200, 1_000 / (1_000 + 9 * 200))
        for row in measure(token, small_job, args.requests):
            rows.append(["small", *row])
        org2, user2, dataset2, token2 = make_org("large")
        t = time.perf_counter()
        big_job = load(org2, user2, dataset2, args.jobs, args.points, args.long_share)
        load_s = time.perf_counter() - t
        for row in measure(token2, big_job, args.requests):
            rows.append([f"large ({args.jobs:,} jobs, {args.points:,} pts)", *row])
        for row in measure(token, small_job, args.requests):
            rows.append(["small, in the large database", *row])
    finally:
        if not args.keep_db:
            from django.db import connections

            connections.close_all()
            S.database_drop()
    me = "benchmarks/api_latency.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = S.table(f"API: p50/p95 of {args.requests} requests (in-process client), queries per request",
                  ["data", "endpoint", "queries", "p50 ms", "p95 ms", "bytes", "series size"], rows,
                  f".venv/bin/python {me.strip()}   (bulk load of the large data: {load_s:.0f} s)")
    print(out, flush=True)
    return out


if __name__ == "__main__":
    main()
