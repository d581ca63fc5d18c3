"""Downsampling on write (training.services.metric_rollups): the rollups the pod-event path keeps
equal a recompute from the stored points whatever arrives (duplicates, replays, steps out of order,
steps re-reported with other values); the chart series answered from them equal the rule computed
from the points; the query count does not grow with the job. PostgreSQL here, SQLite (the embedded
default) in a subprocess."""
from __future__ import annotations

import itertools
import json
import math
import random
import subprocess
import sys
import textwrap

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.conftest import REPO_ROOT
from tests.jobs.factories import make_running_job, pod_event
from tests.training.rollup_oracle import expected_rollups, expected_series, rollups_match, stored_rollups
from training import selectors
from training.models import JobEvent, MetricPoint, MetricRollup
from training.services.metric_rollups import ROLLUP_KEYS, metric_rollups_rebuild
from training.services.pod_events import pod_event_ingest

pytestmark = pytest.mark.django_db

KEYS = (*ROLLUP_KEYS, "epoch")
SEQ = itertools.count(1)

value = st.one_of(st.sampled_from([0, 1, 1.5, -2.0, 3.0]),  # ties: the earliest step must win
                  st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False))
values = st.dictionaries(st.sampled_from(KEYS), value, max_size=len(KEYS))
step = st.one_of(st.integers(0, 40), st.integers(0, 20_000))
# One event: a single step or a batch of distinct steps (the pod's `points`).
batch = st.lists(st.tuples(step, values), min_size=1, max_size=50, unique_by=lambda p: p[0])


def _points(job) -> dict[int, dict]:
    return dict(MetricPoint.objects.filter(job=job).values_list("step", "values"))


def _ingest(job, rows, replay=False):
    seq = next(SEQ)
    if len(rows) == 1:
        event = pod_event(job, seq, "metrics", rows[0][0], dict(rows[0][1]))
    else:
        event = pod_event(job, seq, "metrics", max(s for s, _ in rows), {"points": [{"step": s, **v} for s, v in rows]})
    assert pod_event_ingest(job_id=job.pk, event=event, publish=False).stored
    if replay:  # the same event again: stored once, changes nothing
        assert not pod_event_ingest(job_id=job.pk, event=event, publish=False).stored


@pytest.fixture
def job(organization):
    return make_running_job(organization)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@pytest.mark.slow
@given(events=st.lists(st.tuples(batch, st.booleans()), min_size=1, max_size=8))
def test_rollups_equal_a_recompute_from_the_points(job, events):
    MetricPoint.objects.filter(job=job).delete()
    MetricRollup.objects.filter(job=job).delete()
    JobEvent.objects.filter(job=job).delete()
    for rows, replay in events:
        _ingest(job, rows, replay)
    assert rollups_match(stored_rollups(job.pk), expected_rollups(_points(job)))


def test_rerun_steps_with_other_values_replace_the_old_ones(job):
    _ingest(job, [(s, {"loss": 1.0}) for s in range(1, 41)])
    _ingest(job, [(20, {"loss": 99.0})])  # a spike
    _ingest(job, [(20, {"loss": 0.5}), (21, {"grad_norm": 2.0})])  # a resumed attempt re-runs them
    stored = stored_rollups(job.pk)
    assert rollups_match(stored, expected_rollups(_points(job)))
    assert stored[("loss", 16, 1)][4:6] == (1.0, 16)  # the spike is gone from the block's max
    assert stored[("loss", 16, 1)][2:4] == (0.5, 20)
    assert ("loss", 16, 1) in stored and stored[("loss", 16, 1)][0] == 15  # step 21 has no loss any more


def _long_job(job, n, seed=7):
    """n points with gaps in the steps, ties, spikes, a series missing on some steps."""
    rng = random.Random(seed)
    steps = sorted(rng.sample(range(1, 3 * n), n))
    rows = []
    for i, s in enumerate(steps):
        vals = {"loss": round(3 * math.exp(-i / n) + rng.random() * 0.1, 2), "learning_rate": 2e-4,
                "tokens_per_s": rng.choice([900, 950.5, 1000]), "epoch": i / n * 2}
        if rng.random() < 0.001:
            vals["loss"] = 50.0 + rng.random()
        if i % 3:
            vals["grad_norm"] = rng.random()
        rows.append(MetricPoint(job=job, step=s, attempt=1, values=vals))
    MetricPoint.objects.bulk_create(rows, batch_size=5000)
    metric_rollups_rebuild(job_id=job.pk)
    return {r.step: r.values for r in rows}


@pytest.mark.slow
def test_series_from_rollups_equals_the_rule_over_the_points(job):
    points = _long_job(job, 30_000)
    assert rollups_match(stored_rollups(job.pk), expected_rollups(points))  # the backfill/rebuild
    steps = sorted(points)
    cases = [(500, None, selectors.SERIES_KEYS), (200, None, KEYS), (5000, None, ("loss",)), (4, None, ("loss",)),
             (500, steps[7777], selectors.SERIES_KEYS), (300, steps[-3000], ("loss", "epoch")),
             (500, steps[-800], ("loss",))]  # the last: too short a range for blocks, single steps
    for max_points, after_step, keys in cases:
        with CaptureQueriesContext(connection) as ctx:
            got = selectors.metric_series(job=job, keys=keys, max_points=max_points, after_step=after_step)
        assert got["downsampled"], (max_points, after_step)
        assert got["series"] == expected_series(points, keys, max_points, after_step), (max_points, after_step, keys)
        assert all(len(v) <= max_points for v in got["series"].values())
        used_rollups = any("training_metricrollup" in q["sql"] for q in ctx.captured_queries)
        assert used_rollups == (max_points != 500 or after_step != steps[-800])
    spike = max(points, key=lambda s: points[s]["loss"])
    assert [spike, points[spike]["loss"]] in selectors.metric_series(job=job, keys=["loss"])["series"]["loss"]


@pytest.mark.slow
def test_series_api_answer_and_query_count_do_not_grow_with_the_job(api_client, make_user, organization):
    from rest_framework.authtoken.models import Token

    eng = api_client
    eng.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=make_user('eng', organization)).key}")
    short, long = make_running_job(organization), make_running_job(organization)
    short_points, long_points = _long_job(short, 5_000, seed=1), _long_job(long, 60_000, seed=2)
    for query in ("", "&after_step=3001"):
        counts = []
        for job, points in ((short, short_points), (long, long_points)):
            with CaptureQueriesContext(connection) as ctx:
                body = eng.get(f"/api/v1/jobs/{job.pk}/metrics/series/?max_points=500{query}").json()
            counts.append(len(ctx))
            assert body["downsampled"]
            after = 3001 if query else None
            assert body["series"] == expected_series(points, selectors.SERIES_KEYS, 500, after)
        assert counts[0] == counts[1], (query, counts)


SQLITE_SCRIPT = textwrap.dedent("""
    import json, os, random, django
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.core.management import call_command
    from django.db import connection
    assert connection.vendor == "sqlite", connection.vendor
    call_command("migrate", verbosity=0)
    from accounts.services import organization_get_or_create
    from tests.jobs.factories import make_running_job, pod_event
    from tests.training.rollup_oracle import expected_rollups, expected_series, rollups_match, stored_rollups
    from training import selectors
    from training.models import MetricPoint
    from training.services.pod_events import pod_event_ingest

    job = make_running_job(organization_get_or_create(slug="acme", name="Acme"))
    rng = random.Random(3)
    seq = 0
    def send(rows):
        global seq
        seq += 1
        pts = [{"step": s, "loss": v, "grad_norm": v / 2, "epoch": s / 10} for s, v in rows]
        assert pod_event_ingest(job_id=job.pk, event=pod_event(job, seq, "metrics", rows[-1][0], {"points": pts}),
                                publish=False).stored
    steps = list(range(1, 3001))
    for i in range(0, len(steps), 50):
        send([(s, rng.choice([1.0, 2.0, rng.random()])) for s in steps[i:i + 50]])
    send([(s, 7.0) for s in rng.sample(steps, 40)])  # re-run steps, out of order
    send([(123, 99.0)])
    points = dict(MetricPoint.objects.filter(job=job).values_list("step", "values"))
    ok = rollups_match(stored_rollups(job.pk), expected_rollups(points))
    same = all(
        selectors.metric_series(job=job, keys=keys, max_points=mp, after_step=after)["series"]
        == expected_series(points, keys, mp, after)
        for keys, mp, after in [(("loss", "grad_norm"), 50, None), (("loss", "epoch"), 60, 1000), (("loss",), 500, None)])
    print(json.dumps({"rollups": ok, "series": same}))
""")


@pytest.mark.slow
def test_sqlite_embedded_default_keeps_the_same_rollups(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CHANNEL_LAYER_URL", "STORAGE_BACKEND",
                        "DJANGO_SETTINGS_MODULE"}}
    env["BRIGHTRUN_VAR_DIR"] = str(tmp_path / "var")
    proc = subprocess.run([sys.executable, "-c", SQLITE_SCRIPT], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"rollups": True, "series": True}
