"""A pod's batched metrics request (gpu_worker.events.metrics_batch) through POST /api/v1/pod-events/:
every point stored once, a retried batch deduplicated, a point sent again upserted, never doubled."""
import pytest

from gpu_worker.events import metrics_batch, next_request
from tests.jobs.factories import make_running_job, pod_event, signed_post
from training import states
from training.models import JobEvent, MetricPoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(organization):
    return make_running_job(organization, status=states.TRAINING)


def _metrics(job, first_seq, steps):
    return [pod_event(job, first_seq + i, "metrics", step, {"step": step, "loss": 2.0 - step / 100, "total_steps": 500})
            for i, step in enumerate(steps)]


def _losses(job):
    return dict(MetricPoint.objects.filter(job=job).order_by("step").values_list("step", "values__loss"))


def test_a_batch_stores_every_point_and_its_retry_is_a_duplicate(job, client):
    batch = metrics_batch(_metrics(job, 1, range(1, 41)))
    first = signed_post(client, batch, job.webhook_secret)
    assert first.status_code == 200 and first.json()["stored"] is True
    again = signed_post(client, batch, job.webhook_secret)  # the pod's retry after a lost answer
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert _losses(job) == {s: 2.0 - s / 100 for s in range(1, 41)}
    assert JobEvent.objects.filter(job=job, type="metrics").count() == 1
    job.refresh_from_db()
    assert job.current_step == 40 and job.total_steps == 500 and job.last_loss == pytest.approx(1.6)


def test_a_point_sent_again_in_another_request_is_upserted_not_doubled(job, client):
    # Not what the sender does (a failed request is retried unchanged), but if the same step ever
    # arrives under two ids (a resumed attempt re-running steps), MetricPoint's one row per
    # (job, step) keeps one point, the later values.
    assert signed_post(client, metrics_batch(_metrics(job, 1, range(1, 11))), job.webhook_secret).status_code == 200
    redo = [pod_event(job, 11 + i, "metrics", s, {"step": s, "loss": 9.0}) for i, s in enumerate(range(8, 13))]
    assert signed_post(client, metrics_batch(redo), job.webhook_secret).status_code == 200
    losses = _losses(job)
    assert sorted(losses) == list(range(1, 13))
    assert [losses[s] for s in (7, 8, 12)] == [pytest.approx(1.93), 9.0, 9.0]


def test_the_senders_batches_of_a_mixed_backlog_apply_in_order(job, client):
    import collections

    events = [*_metrics(job, 1, range(1, 6)),
              pod_event(job, 6, "checkpoint_saved", 5, {"step": 5, "uri": "s3://b/c/step-5"}),
              *_metrics(job, 7, range(6, 9))]
    queue = collections.deque(events)
    sent = []
    while queue:
        request, _carried = next_request(queue)
        sent.append(request)
        assert signed_post(client, request, job.webhook_secret).status_code == 200
    assert [(e.type, e.seq) for e in sent] == [("metrics", 5), ("checkpoint_saved", 6), ("metrics", 9)]
    assert sorted(_losses(job)) == list(range(1, 9))
    assert job.checkpoints.filter(step=5).exists()
    job.refresh_from_db()
    assert job.current_step == 8
