"""A pod event's live updates, the ones sent on commit included (a move's status, billing's cost),
come back from `pod_event_ingest(publish=False)` for the webhook to publish from its event loop:
none is published from the request's thread (where each publish started a thread, an event loop
and a Redis connection)."""
import pytest

from billing.services.jobs import job_cost_create
from tests.jobs.factories import make_running_job, pod_event
from core import broadcast
from training import states
from training.services.pod_events import pod_event_ingest

# Committed rows: the updates sent on commit are collected only when this call commits.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def no_thread_publish(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("published from the request's thread")

    monkeypatch.setattr(broadcast, "async_to_sync", refuse)


def test_a_move_and_its_metering_come_back_in_order(organization, no_thread_publish):
    job = make_running_job(organization, status=states.PROVISIONING)
    job_cost_create(job=job)
    result = pod_event_ingest(job_id=job.pk, event=pod_event(job, 1, "stage_changed", data={"stage": "training"}),
                              publish=False)
    kinds = [p.get("kind") or next(iter(p)) for p in result.live]
    # As before, what went out on commit (status, cost) goes first, then the event's own updates.
    assert kinds == ["status", "cost", "stage"], kinds
    assert result.live[0]["status"] == states.TRAINING and result.live[0]["from"] == states.PROVISIONING


def test_metrics_come_back_with_their_progress(organization, no_thread_publish):
    job = make_running_job(organization, status=states.TRAINING)
    result = pod_event_ingest(job_id=job.pk, event=pod_event(job, 1, "metrics", step=3, data={"loss": 1.5}),
                              publish=False)
    metrics = [p for p in result.live if p.get("kind") == "metrics"]
    assert metrics[0]["points"] == [{"step": 3, "loss": 1.5}]
    assert metrics[0]["progress"]["step"] == 3


def test_outside_the_webhook_updates_are_still_published_on_commit(organization, monkeypatch):
    sent = []

    async def record(job_id, payloads, organization_id=None):
        sent.extend(payloads)

    monkeypatch.setattr(broadcast, "publish_job_updates", record)
    job = make_running_job(organization, status=states.PROVISIONING)
    result = pod_event_ingest(job_id=job.pk, event=pod_event(job, 1, "stage_changed", data={"stage": "training"}))
    assert result.live == ()
    assert {"kind": "status", "status": states.TRAINING, "from": states.PROVISIONING,
            "reason": "pod reports training"} in sent
