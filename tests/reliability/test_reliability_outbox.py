"""Issue 16 item 4: the follow-ups of a state move survive a broker outage at the moment of the
move. A private Redis (its own port, never the shared one) is the broker; it is stopped around
each move, and the follow-ups are counted in its queues once it is back and the relay loop ran."""
from __future__ import annotations

import json

import pytest

from tests.reliability.figures import record
from tests.reliability.servers import PrivateRedis, redis_binary

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow,
              pytest.mark.skipif(redis_binary() is None, reason="needs a redis-server binary")]

MOVES = [  # (from status, to status, the follow-up tasks the move must cause)
    ("training", "completed", {"training.tasks.job_terminate", "artifacts.tasks.job_artifacts_register",
                               "validation.tasks.job_validate", "training.tasks.job_notify"}),
    ("training", "cancelled", {"training.tasks.job_terminate"}),
    ("training", "failed", {"training.tasks.job_terminate", "training.tasks.job_notify"}),
    ("training", "interrupted", {"training.tasks.job_resume", "training.tasks.job_notify"}),
]


@pytest.fixture
def private_broker(tmp_path, monkeypatch):
    from config.celery import app

    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    monkeypatch.setitem(app.conf, "broker_url", redis.url)
    monkeypatch.setitem(app.conf, "broker_connection_retry", False)
    monkeypatch.setitem(app.conf, "broker_connection_timeout", 1)
    monkeypatch.setitem(app.conf, "task_default_queue", "outbox-test")

    def reset_pools():  # forget connections to the previous broker
        from kombu import pools

        pools.reset()
        app._pool = None
        app.amqp._producer_pool = None

    reset_pools()
    yield redis
    redis.stop()
    reset_pools()


def _queued(url: str) -> list[tuple[str, list]]:
    import redis as redis_client

    client = redis_client.Redis.from_url(url)
    out = []
    for queue in ("outbox-test", "outbox-test.pods"):
        for raw in client.lrange(queue, 0, -1):
            message = json.loads(raw)
            out.append((message["headers"]["task"], message["headers"]["argsrepr"]))
    return out


def test_no_follow_up_is_lost_when_the_broker_is_down_at_the_move(organization, private_broker):
    from tests.jobs.factories import make_running_job, move_locked
    from training.models import OutboxMessage, TrainingJob
    from training.services.outbox import outbox_relay

    expected, jobs = 0, []
    for from_status, to_status, followups in MOVES:
        job = make_running_job(organization, status=from_status)
        private_broker.stop()
        assert move_locked(job.pk, to_status, reason="outbox test")
        assert TrainingJob.objects.get(pk=job.pk).status == to_status
        assert set(OutboxMessage.objects.filter(job_id=job.pk, sent_at__isnull=True)
                   .values_list("task", flat=True)) == followups
        private_broker.start()
        jobs.append((job, followups))
        expected += len(followups)
    assert OutboxMessage.objects.filter(sent_at__isnull=True).count() == expected
    relayed = outbox_relay()  # what the beat loop (pods_reconcile) does once the broker answers
    queued = _queued(private_broker.url)
    for job, followups in jobs:
        assert {task for task, args in queued if str(job.pk) in args} == followups, queued
    lost = expected - len(queued)
    record("16.4 outbox", "follow-ups lost with the broker down at 4 moves", lost, target=f"0 of {expected}",
           size=f"{len(MOVES)} moves")
    assert relayed == expected and lost == 0
    assert outbox_relay() == 0 and len(_queued(private_broker.url)) == expected  # nothing sent twice
    # Pod control went to its own queue.
    import redis as redis_client

    pods = redis_client.Redis.from_url(private_broker.url).lrange("outbox-test.pods", 0, -1)
    assert {json.loads(raw)["headers"]["task"] for raw in pods} == {"training.tasks.job_terminate",
                                                                    "training.tasks.job_resume"}


def test_with_the_broker_up_follow_ups_are_sent_at_commit(organization, private_broker):
    from tests.jobs.factories import make_running_job, move_locked
    from training.models import OutboxMessage

    job = make_running_job(organization, status="training")
    move_locked(job.pk, "cancelled", reason="outbox test")
    assert not OutboxMessage.objects.filter(job_id=job.pk, sent_at__isnull=True).exists(), list(OutboxMessage.objects.values("last_error", "attempts"))
    assert [task for task, _ in _queued(private_broker.url)] == ["training.tasks.job_terminate"]
