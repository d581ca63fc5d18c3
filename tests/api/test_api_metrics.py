"""Metrics: paginated points, downsampled series (bounded size, spikes kept, query count
independent of the job's length), CSV and JSON export."""
import csv
import io
import json
import math

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.jobs.factories import make_running_job
from training import states
from training.models import MetricPoint
from training.services.metric_rollups import metric_rollups_rebuild

pytestmark = pytest.mark.django_db


def _points(job, n, spike_at=None):
    rows = []
    for step in range(1, n + 1):
        loss = 3.0 * math.exp(-step / (n / 3)) + 0.5
        if step == spike_at:
            loss = 50.0
        rows.append(MetricPoint(job=job, step=step, attempt=1,
                                values={"loss": loss, "learning_rate": 2e-4 * (1 - step / n), "grad_norm": 1.0,
                                        "tokens_per_s": 900.0, "total_steps": n}))
    MetricPoint.objects.bulk_create(rows, batch_size=2000)
    metric_rollups_rebuild(job_id=job.pk)  # written around the pod-event path: rebuild its rollups


def test_series_short_job_is_exact(client_as, organization, finished_job):
    eng = client_as("eng", organization)
    body = eng.get(f"/api/v1/jobs/{finished_job.pk}/metrics/series/").json()
    assert body["downsampled"] is False
    assert [s for s, _ in body["series"]["loss"]] == [1, 2, 3, 4, 5, 6]
    assert body["series"]["loss"][0][1] == pytest.approx(2.9)


@pytest.mark.slow
def test_series_downsampled_bounded_keeps_spike_and_ends(client_as, organization):
    eng = client_as("eng", organization)
    job = make_running_job(organization)
    _points(job, 20000, spike_at=12345)
    body = eng.get(f"/api/v1/jobs/{job.pk}/metrics/series/?max_points=200&keys=loss,learning_rate").json()
    assert body["downsampled"] is True and set(body["series"]) == {"loss", "learning_rate"}
    loss = body["series"]["loss"]
    assert 100 <= len(loss) <= 200 and len(body["series"]["learning_rate"]) <= 200
    steps = [s for s, _ in loss]
    assert steps == sorted(steps) and steps[0] == 1 and steps[-1] == 20000
    assert [12345, 50.0] in loss  # a one-step spike survives downsampling
    assert eng.get(f"/api/v1/jobs/{job.pk}/metrics/series/?keys=password").status_code == 400


@pytest.mark.slow
def test_series_query_count_independent_of_length(client_as, organization):
    eng = client_as("eng", organization)
    short, long = make_running_job(organization), make_running_job(organization)
    _points(short, 600)
    _points(long, 30000)
    counts = []
    for job in (short, long):
        with CaptureQueriesContext(connection) as ctx:
            body = eng.get(f"/api/v1/jobs/{job.pk}/metrics/series/?max_points=500").json()
        assert body["downsampled"] and all(len(v) <= 500 for v in body["series"].values())
        counts.append(len(ctx))
    assert counts[0] == counts[1], counts
    print(f"\nseries: {counts[0]} queries for 600 and for 30000 points (4 series)")


def test_metric_points_paginated_and_after_step(client_as, organization):
    eng = client_as("eng", organization)
    job = make_running_job(organization)
    _points(job, 1200)
    first = eng.get(f"/api/v1/jobs/{job.pk}/metrics/").json()
    assert first["count"] == 1200 and len(first["results"]) == 500 and first["results"][0]["step"] == 1
    assert first["next"]
    newer = eng.get(f"/api/v1/jobs/{job.pk}/metrics/?after_step=1190&page_size=100").json()
    assert [r["step"] for r in newer["results"]] == list(range(1191, 1201))


def test_export_csv_and_json(client_as, organization, finished_job):
    eng = client_as("eng", organization)
    response = eng.get(f"/api/v1/jobs/{finished_job.pk}/metrics/export/csv/")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert f"metrics-{finished_job.pk}.csv" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "learning_rate", "grad_norm", "tokens_per_s", "epoch"} <= set(rows[0])
    assert float(rows[0]["loss"]) == pytest.approx(2.9)

    response = eng.get(f"/api/v1/jobs/{finished_job.pk}/metrics/export/json/")
    body = json.loads(b"".join(response.streaming_content))
    assert body["job"]["id"] == str(finished_job.pk) and len(body["metrics"]) == 6
    assert body["evaluation"] == {"base_perplexity": 9.0, "adapted_perplexity": 7.0}
    assert eng.get(f"/api/v1/jobs/{finished_job.pk}/metrics/export/xml/").status_code == 404


def test_validation_loss_reaches_points_series_checkpoints_and_export(client, client_as, organization):
    from tests.jobs.factories import make_running_job, pod_event, signed_post
    from training.models import Checkpoint, MetricPoint

    job = make_running_job(organization, status=states.TRAINING)
    from training.selectors import metric_series

    events = [
        pod_event(job, 1, "stage_changed", data={"stage": "training"}),
        pod_event(job, 2, "metrics", step=1, data={"step": 1, "loss": 2.5, "train_mean_token_accuracy": 0.31}),
        pod_event(job, 3, "metrics", step=2, data={"step": 2, "loss": 2.1, "valid_loss": 2.4,
                                                   "valid_mean_token_accuracy": 0.35, "train_mean_token_accuracy": 0.4}),
        pod_event(job, 4, "checkpoint_saved", step=2, data={"step": 2, "uri": "file:///x/step-2", "bytes": 10,
                                                            "valid_loss": 2.4}),
        pod_event(job, 5, "checkpoint_saved", step=3, data={"step": 3, "uri": "file:///x/step-3", "valid_loss": "NaN"}),
    ]
    for ev in events:
        assert signed_post(client, ev, job.webhook_secret).status_code == 200
    values = MetricPoint.objects.get(job=job, step=2).values
    assert values["valid_loss"] == 2.4 and values["valid_mean_token_accuracy"] == 0.35
    series = metric_series(job=job)["series"]
    assert series["valid_loss"] == [[2, 2.4]] and [s for s, _ in series["loss"]] == [1, 2]
    assert Checkpoint.objects.get(job=job, step=2).valid_loss == 2.4
    assert Checkpoint.objects.get(job=job, step=3).valid_loss is None  # not a number: not stored as one
    eng = client_as("eng-v", organization)
    listed = eng.get(f"/api/v1/jobs/{job.pk}/checkpoints/").json()
    rows = listed if isinstance(listed, list) else listed.get("results", listed)
    assert {r["step"]: r["valid_loss"] for r in rows}[2] == 2.4
    exported = eng.get(f"/api/v1/jobs/{job.pk}/metrics/export/csv/")
    assert exported.status_code == 200, exported.content[:300]
    text = b"".join(exported.streaming_content).decode() if hasattr(exported, "streaming_content") else exported.content.decode()
    assert "valid_loss" in text.splitlines()[0] and "2.4" in text
